import { describe, expect, it } from 'vitest'
import type { Quotas } from '../src/auth/config.js'
import { grantFor, grantOpens, readLink, signLink } from '../src/auth/links.js'
import { OPERATOR, type Principal } from '../src/auth/principal.js'
import { admit, speedFor, speedRefusal } from '../src/auth/quotas.js'
import { inList, listFilter, mayControl, mayRead, reachable } from '../src/auth/rules.js'
import { httpStatusOf, ServiceError } from '../src/errors.js'

const NONE: Quotas = { bytes: 0, running: 0, speed: 0 }
const user = (
  sub: string,
  scopes: Partial<Principal['scopes']> = { read: true, write: true },
): Principal => ({
  sub,
  scopes: { read: false, write: false, admin: false, ...scopes },
  quotas: NONE,
})
const alice = user('alice')
const bob = user('bob')
const admin = user('root', { admin: true })
const aliceUpload = { id: 'u-alice', owner: 'alice' }
const operatorUpload = { id: 'u-op', owner: null }
const legacyUpload = { id: 'u-legacy' }

/** What a call answers: its value, or its error's code, message and HTTP status. */
function answer(call: () => unknown): unknown {
  try {
    return { value: call() }
  } catch (error) {
    if (!(error instanceof ServiceError)) throw error
    return { code: error.code, message: error.message, status: httpStatusOf(error.code) }
  }
}

describe('ownership', () => {
  it('lets a user read and control their own uploads only; an admin and the operator reach all', () => {
    expect([mayRead(alice, aliceUpload), mayControl(alice, aliceUpload)]).toEqual([true, true])
    expect([mayRead(bob, aliceUpload), mayControl(bob, aliceUpload)]).toEqual([false, false])
    for (const record of [aliceUpload, operatorUpload, legacyUpload]) {
      expect([mayRead(admin, record), mayControl(admin, record), mayRead(OPERATOR, record)]).toEqual([
        true,
        true,
        true,
      ])
    }
  })

  it("never lets a user reach the operator's uploads, or those made before auth (no owner)", () => {
    for (const record of [operatorUpload, legacyUpload]) {
      expect([mayRead(alice, record), mayControl(alice, record)]).toEqual([false, false])
    }
  })

  it('needs uploads:read to see and uploads:write to control, even on your own upload', () => {
    const readOnly = user('alice', { read: true })
    const writeOnly = user('alice', { write: true })
    expect([mayRead(readOnly, aliceUpload), mayControl(readOnly, aliceUpload)]).toEqual([true, false])
    expect([mayRead(writeOnly, aliceUpload), mayControl(writeOnly, aliceUpload)]).toEqual([false, true])
  })

  it("answers another user's upload exactly as a missing one, for reading and for control", () => {
    for (const need of ['read', 'write'] as const) {
      const missing = answer(() => reachable(bob, need, aliceUpload.id, undefined))
      expect(missing).toEqual({ code: 'NOT_FOUND', message: 'Upload "u-alice" not found', status: 404 })
      expect(answer(() => reachable(bob, need, aliceUpload.id, aliceUpload))).toEqual(missing)
      expect(answer(() => reachable(alice, need, aliceUpload.id, aliceUpload))).toEqual({
        value: aliceUpload,
      })
    }
  })

  it("refuses a token without the scope before looking: the same FORBIDDEN for one's own, another's and no upload", () => {
    const writeOnly = user('alice', { write: true })
    const answers = [aliceUpload, { id: 'u-alice', owner: 'bob' }, undefined].map((record) =>
      answer(() => reachable(writeOnly, 'read', 'u-alice', record)),
    )
    expect(answers[0]).toEqual({
      code: 'FORBIDDEN',
      message: 'This token lacks the uploads:read scope',
      status: 403,
    })
    expect(new Set(answers.map((item) => JSON.stringify(item))).size).toBe(1)
  })

  it('lists a user their own; an admin everyone, or one owner; a user naming another owner is refused', () => {
    const records = [aliceUpload, { id: 'u-bob', owner: 'bob' }, operatorUpload, legacyUpload]
    const listed = (principal: Principal, owner?: string) =>
      records.filter((record) => inList(listFilter(principal, owner), record)).map((record) => record.id)
    expect(listed(alice)).toEqual(['u-alice'])
    expect(listed(alice, 'alice')).toEqual(['u-alice'])
    expect(listed(admin)).toEqual(['u-alice', 'u-bob', 'u-op', 'u-legacy'])
    expect(listed(admin, 'bob')).toEqual(['u-bob'])
    expect(listed(OPERATOR)).toHaveLength(4)
    expect(answer(() => listFilter(alice, 'bob'))).toMatchObject({ code: 'FORBIDDEN', status: 403 })
  })
})

describe('quotas, checked before any byte is stored', () => {
  const quotas: Quotas = { bytes: 1000, running: 2, speed: 500 }

  it('takes an upload that fits exactly, and refuses one byte over the stored-bytes quota with a 413', () => {
    expect(admit(quotas, { bytesStored: 400, running: 0 }, { size: 600 })).toBeUndefined()
    const refused = answer(() => {
      throw admit(quotas, { bytesStored: 400, running: 0 }, { size: 601 })
    })
    expect(refused).toEqual({
      code: 'PAYLOAD_TOO_LARGE',
      status: 413,
      message: 'This upload of 601 bytes would take your stored bytes to 1001, over your quota of 1000',
    })
  })

  it('refuses one upload over the running quota with a 429', () => {
    expect(admit(quotas, { bytesStored: 0, running: 1 }, { size: 1 })).toBeUndefined()
    expect(
      answer(() => {
        throw admit(quotas, { bytesStored: 0, running: 2 }, { size: 1 })
      }),
    ).toMatchObject({ code: 'TOO_MANY_UPLOADS', status: 429 })
  })

  it('refuses a speed over the cap, or unlimited, with a 422; a caller naming none gets the default held to the cap', () => {
    expect(speedRefusal(quotas, 500)).toBeUndefined()
    for (const speed of [501, 0]) {
      expect(
        answer(() => {
          throw admit(quotas, { bytesStored: 0, running: 0 }, { size: 1, speed })
        }),
      ).toMatchObject({ code: 'BAD_USER_INPUT', status: 422 })
    }
    expect(admit(quotas, { bytesStored: 0, running: 0 }, { size: 1 })).toBeUndefined()
    expect([
      speedFor(quotas, undefined, 1_048_576),
      speedFor(quotas, undefined, 0),
      speedFor(quotas, 200, 0),
    ]).toEqual([500, 500, 200])
    expect(speedFor(NONE, undefined, 0)).toBe(0)
  })

  it('limits nothing where a quota is 0', () => {
    expect(
      admit(NONE, { bytesStored: 2 ** 50, running: 10_000 }, { size: 2 ** 40, speed: 0 }),
    ).toBeUndefined()
  })
})

describe('signed download links', () => {
  const key = new TextEncoder().encode('k'.repeat(32))
  const now = Date.UTC(2030, 0, 1)

  it("opens its own upload while it is still its owner's, until it expires", () => {
    const link = signLink(grantFor('u-alice', 'alice', now, 60), key)
    const grant = readLink(link, key, now + 59_000)
    expect(grant).toEqual({ id: 'u-alice', owner: 'alice', exp: now / 1000 + 60 })
    expect(grant && grantOpens(grant, aliceUpload)).toBe(true)
    expect(readLink(link, key, now + 60_000)).toBeUndefined()
  })

  it('opens no other upload, nor the same id under another owner', () => {
    const grant = readLink(signLink(grantFor('u-alice', 'alice', now), key), key, now)
    expect(grant && grantOpens(grant, { id: 'u-bob', owner: 'alice' })).toBe(false)
    expect(grant && grantOpens(grant, { id: 'u-alice', owner: 'bob' })).toBe(false)
    const operatorGrant = readLink(signLink(grantFor('u-op', null, now), key), key, now)
    expect(operatorGrant && grantOpens(operatorGrant, operatorUpload)).toBe(true)
  })

  it('is refused when changed in any way, or signed with another key', () => {
    const link = signLink(grantFor('u-alice', 'alice', now), key)
    const [payload, mac] = link.split('.') as [string, string]
    const forged = Buffer.from(JSON.stringify(['u-alice', 'bob', now / 1000 + 3600])).toString('base64url')
    for (const changed of [
      `${forged}.${mac}`,
      `${payload}.${mac.slice(0, -1)}${mac.endsWith('A') ? 'B' : 'A'}`,
      `${payload}.`,
      payload,
      `${link}.x`,
      signLink(grantFor('u-alice', 'alice', now), new TextEncoder().encode('j'.repeat(32))),
    ]) {
      expect(readLink(changed, key, now)).toBeUndefined()
    }
  })
})
