import { describe, expect, it } from 'vitest'
import { LocalBus } from '../src/seams/bus/local.js'
import { RedisBus } from '../src/seams/bus/redis.js'
import { busContract, view } from './contracts/bus.js'
import { redisForSeams } from './support/seams.js'

const redis = redisForSeams()

busContract('in process', async () => {
  const bus = new LocalBus()
  return { one: bus, two: bus, twoIs: 'local' }
})

busContract('Redis', async () => {
  const prefix = redis.prefix('bus')
  const one = new RedisBus(await redis.connection(), await redis.connection(), 'one', () => [], prefix)
  const two = new RedisBus(await redis.connection(), await redis.connection(), 'two', () => ['u1'], prefix)
  await one.start()
  await two.start()
  return { one, two, twoIs: 'two' }
})

describe('Bus (Redis): a lost message does not strand a command', () => {
  it('the owner finds the wanted change at its next look, and the requester finds the outcome', async () => {
    const client = await redis.connection()
    const prefix = redis.prefix('lost')
    const requester = new RedisBus(client, await redis.connection(), 'requester', () => [], prefix)
    // An owner that is not subscribed to its command channel: every message to it is lost.
    const owner = new RedisBus(
      await redis.connection(),
      await redis.connection(),
      'owner',
      () => ['u9'],
      prefix,
    )
    owner.onCommand(async (command) => ({ ok: view(command.id, 9) }))
    await requester.start()
    try {
      const started = performance.now()
      expect(await requester.request('owner', { op: 'pause', id: 'u9' })).toEqual({ ok: view('u9', 9) })
      expect(performance.now() - started).toBeLessThan(3000)
      // Taken, so no longer wanted.
      expect(await client.exists(`${prefix}:want:u9`)).toBe(0)
    } finally {
      await requester.close()
      await owner.close()
    }
  })
})

describe('Bus (Redis): the answer to a command nobody answered in time is true', () => {
  it('an owner that never takes it: the command is withdrawn, the 503 says nothing changed, and it never runs', async () => {
    const client = await redis.connection()
    const prefix = redis.prefix('gone')
    const requester = new RedisBus(client, await redis.connection(), 'requester', () => [], prefix)
    await requester.start()
    // The owner is gone (SIGKILLed): nobody takes the command while the requester waits.
    let held: string[] = []
    const ran: string[] = []
    const adopter = new RedisBus(
      await redis.connection(),
      await redis.connection(),
      'adopter',
      () => held,
      prefix,
    )
    adopter.onCommand(async (command) => {
      ran.push(command.op)
      return { ok: view(command.id, 1) }
    })
    try {
      await expect(requester.request('dead', { op: 'cancel', id: 'u5' })).rejects.toMatchObject({
        code: 'UNAVAILABLE',
        message: expect.stringMatching(/did not answer; nothing was changed, try again$/),
      })
      // Nothing is left for whoever takes the upload over next: its sweeps find no command to run.
      expect(await client.exists(`${prefix}:want:u5`)).toBe(0)
      // Another instance takes the upload over, and a new command for it is sent: its sweep finds that one
      // (the message went to the dead owner) and runs it, and only that one.
      held = ['u5']
      expect(await requester.request('dead', { op: 'pause', id: 'u5' })).toEqual({ ok: view('u5', 1) })
      expect(ran).toEqual(['pause'])
    } finally {
      await requester.close()
      await adopter.close()
    }
  })

  it('an owner that took it but answers late: the requester waits for its outcome instead of a 503', async () => {
    const prefix = redis.prefix('late')
    const requester = new RedisBus(
      await redis.connection(),
      await redis.connection(),
      'requester',
      () => [],
      prefix,
    )
    const owner = new RedisBus(
      await redis.connection(),
      await redis.connection(),
      'owner',
      () => ['u6'],
      prefix,
    )
    // Longer than the requester waits for a command to be taken (a lock held by a slow write, say).
    owner.onCommand(async (command) => {
      await new Promise((resolve) => setTimeout(resolve, 6500))
      return { ok: view(command.id, 6) }
    })
    await requester.start()
    await owner.start()
    try {
      expect(await requester.request('owner', { op: 'pause', id: 'u6' })).toEqual({ ok: view('u6', 6) })
    } finally {
      await requester.close()
      await owner.close()
    }
  })
})
