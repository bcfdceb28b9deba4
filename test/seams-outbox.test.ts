import { mkdtemp, readFile, rm, stat, writeFile, appendFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LocalOutbox } from '../src/seams/outbox/local.js'
import { RedisOutbox } from '../src/seams/outbox/redis.js'
import { event, LEASE_MS, outboxContract, type OutboxFixture } from './contracts/outbox.js'
import { startRedis, type TestRedis } from './support/redis.js'

describe('the embedded outbox (a journal on disk)', () => {
  const dirs = new Map<OutboxFixture, string>()
  outboxContract(
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'outbox-'))
      const file = join(dir, '.hooks.outbox')
      const fixture: OutboxFixture = {
        outbox: await LocalOutbox.open(file),
        reopen: () => LocalOutbox.open(file),
      }
      dirs.set(fixture, dir)
      return fixture
    },
    async (fixture) => {
      await fixture.outbox.close()
      await rm(dirs.get(fixture)!, { recursive: true, force: true })
    },
    { shared: false },
  )

  it('drops a torn last line (a crash mid-write, never acknowledged) and keeps the rest', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'outbox-'))
    const file = join(dir, '.hooks.outbox')
    try {
      const outbox = await LocalOutbox.open(file)
      const kept = event('A', 'completed', Date.now())
      await outbox.add([kept])
      await outbox.close()
      await appendFile(file, '{"add":[{"eventId":"torn"')
      const reopened = await LocalOutbox.open(file)
      expect((await reopened.pending(10)).map((e) => e.eventId)).toEqual([kept.eventId])
      // And what is written next follows a whole line.
      await reopened.add([event('B', 'received', Date.now())])
      await reopened.close()
      expect((await (await LocalOutbox.open(file)).stats()).pending).toBe(2)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('stops with a message naming the file when a whole line is not JSON', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'outbox-'))
    const file = join(dir, '.hooks.outbox')
    try {
      await writeFile(file, 'not json\n')
      await expect(LocalOutbox.open(file)).rejects.toThrow(`${file} line 1 is not valid JSON`)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('compacts its file to what is still pending once it grows, and reads back the same', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'outbox-'))
    const file = join(dir, '.hooks.outbox')
    try {
      const outbox = await LocalOutbox.open(file)
      const now = Date.now()
      // Not due before the test ends: it stays pending throughout.
      const keep = event('Z', 'deleted', now + 3_600_000)
      await outbox.add([keep])
      // 1.6 MB of events go in and out, one by one, as a steady stream of deliveries would.
      const padding = 'x'.repeat(8 * 1024)
      for (let i = 0; i < 200; i++) {
        await outbox.add([{ ...event(`U${i}`, 'completed', now), body: padding }])
        const [claimed] = await outbox.claim(now, 1, LEASE_MS)
        await outbox.ack(claimed!)
      }
      await outbox.close()
      // Once the file passed 1 MiB (and four times what was pending) it was rewritten as one image of it.
      expect((await stat(file)).size).toBeLessThan(1024 * 1024)
      const lines = (await readFile(file, 'utf8')).split('\n').filter(Boolean)
      expect(lines.some((line) => line.startsWith('{"image":'))).toBe(true)
      const reopened = await LocalOutbox.open(file)
      expect((await reopened.pending(10)).map((e) => e.eventId)).toEqual([keep.eventId])
      await reopened.close()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('the Redis outbox (shared by instances)', () => {
  let redis: TestRedis
  let prefix = 0
  const clients = new Map<OutboxFixture, Redis[]>()
  beforeAll(async () => {
    redis = await startRedis()
  })
  afterAll(() => redis.stop())

  outboxContract(
    async () => {
      const name = `t${++prefix}`
      const opened: Redis[] = []
      const open = (instance: string) => {
        const client = redis.client()
        opened.push(client)
        return new RedisOutbox(client, instance, name)
      }
      let n = 0
      const fixture: OutboxFixture = {
        outbox: open('node-a'),
        reopen: async () => open(`node-${++n}`),
      }
      clients.set(fixture, opened)
      return fixture
    },
    async (fixture) => {
      for (const client of clients.get(fixture) ?? []) client.disconnect()
    },
    { shared: true },
  )
})
