import { readFileSync } from 'node:fs'
import { buildSchema, GraphQLEnumType } from 'graphql'
import { describe, expect, it } from 'vitest'
import { ServiceError } from '../src/errors.js'
import { refusal, targetOf, TRANSITIONS, type MachineCommand } from '../src/core/machine.js'
import { UPLOAD_STATUSES, type UploadStatus } from '../src/model/record.js'

const ID = 'a1b2c3d4-0000-4000-8000-000000000000'
const RECEIVING_HINT =
  'it is still being received, and its sender controls that: it pauses by not sending, and goes on by sending again'

/**
 * Every (status, command) pair as the service answered before the machine had a table of its own (read from
 * round 2's expect() calls and the tests): where it goes, or the exact INVALID_STATE message it is refused with.
 * `{status}` stays in the message: each API names the status in its own words.
 */
const TODAY: Record<
  MachineCommand,
  Partial<Record<UploadStatus, UploadStatus | 'removed'>> & { refused: (s: UploadStatus) => string }
> = {
  pause: {
    IN_PROGRESS: 'PAUSED',
    refused: (s) => `Upload ${ID} cannot be paused: ${s === 'RECEIVING' ? RECEIVING_HINT : 'it is {status}'}`,
  },
  resume: {
    PAUSED: 'IN_PROGRESS',
    refused: (s) =>
      `Upload ${ID} cannot be resumed: ${s === 'RECEIVING' ? RECEIVING_HINT : 'it is {status}'}`,
  },
  setSpeed: {
    RECEIVING: 'RECEIVING',
    IN_PROGRESS: 'IN_PROGRESS',
    PAUSED: 'PAUSED',
    refused: () => `Upload ${ID} cannot be given a new speed: it is {status}`,
  },
  cancel: {
    RECEIVING: 'CANCELED',
    IN_PROGRESS: 'CANCELED',
    PAUSED: 'CANCELED',
    refused: () => `Upload ${ID} cannot be canceled: it is {status}`,
  },
  delete: {
    COMPLETED: 'removed',
    CANCELED: 'removed',
    FAILED: 'removed',
    refused: () => `Upload ${ID} cannot be deleted: cancel it first`,
  },
  receive: {
    RECEIVING: 'RECEIVING',
    refused: () => `Upload ${ID} cannot be sent more bytes: it is {status}`,
  },
  arrive: {
    RECEIVING: 'IN_PROGRESS',
    refused: () => `Upload ${ID} cannot be stored: it was {status} while it arrived`,
  },
  forget: { RECEIVING: 'removed', refused: () => `Upload ${ID} cannot be forgotten: it is {status}` },
  complete: {
    IN_PROGRESS: 'COMPLETED',
    PAUSED: 'COMPLETED',
    refused: () => `Upload ${ID} cannot be completed: it is {status}`,
  },
  fail: {
    RECEIVING: 'FAILED',
    IN_PROGRESS: 'FAILED',
    PAUSED: 'FAILED',
    refused: () => `Upload ${ID} cannot be failed: it is {status}`,
  },
  expire: { RECEIVING: 'FAILED', refused: () => `Upload ${ID} cannot be expired: it is {status}` },
}

describe('the upload state machine', () => {
  const commands = Object.keys(TRANSITIONS) as MachineCommand[]

  it('has an answer of today for every command in its table, and no command it does not answer', () => {
    expect(commands.sort()).toEqual(Object.keys(TODAY).sort())
  })

  for (const command of commands) {
    for (const status of UPLOAD_STATUSES) {
      const expected = TODAY[command][status]
      if (expected !== undefined) {
        it(`${command} from ${status} goes to ${expected}`, () => {
          expect(refusal(command, { id: ID, status })).toBeUndefined()
          expect(targetOf(command, status)).toBe(expected)
        })
      } else {
        it(`${command} from ${status} is refused with INVALID_STATE and today's message`, () => {
          const error = refusal(command, { id: ID, status })
          expect(error).toBeInstanceOf(ServiceError)
          // The template, as it travels between instances; each API fills in {status} in its own words.
          expect(error?.toData()).toEqual({
            code: 'INVALID_STATE',
            message: TODAY[command].refused(status),
            status,
          })
          expect(targetOf(command, status)).toBeUndefined()
        })
      }
    }
  }

  it('takes more bytes only of a tus upload: a multipart one still arriving is refused as it stands', () => {
    const error = refusal('receive', { id: ID, status: 'RECEIVING', source: 'multipart' })
    expect(error?.toData()).toEqual({
      code: 'INVALID_STATE',
      message: `Upload ${ID} cannot be sent more bytes: it is {status}`,
      status: 'RECEIVING',
    })
    expect(refusal('receive', { id: ID, status: 'RECEIVING', source: 'tus' })).toBeUndefined()
  })

  it('knows the same statuses as the GraphQL schema', () => {
    const schema = buildSchema(readFileSync('schema/schema.graphql', 'utf8'))
    const type = schema.getType('UploadStatus')
    expect(type).toBeInstanceOf(GraphQLEnumType)
    const names = (type as GraphQLEnumType).getValues().map((value) => value.name)
    expect([...names].sort()).toEqual([...UPLOAD_STATUSES].sort())
  })
})
