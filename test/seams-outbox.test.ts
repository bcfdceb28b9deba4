import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LocalStore } from '../src/seams/records/local.js'
import { RedisOutbox } from '../src/seams/outbox/redis.js'
import { event, LEASE_MS, outboxContract, type OutboxFixture } from './contracts/outbox.js'
import { startRedis, type TestRedis } from './support/redis.js'

describe('the embedded outbox (lines of the records journal)', () => {
  const dirs = new Map<OutboxFixture, string>()
  const stores = new Map<OutboxFixture, LocalStore>()
  outboxContract(
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'outbox-'))
      const file = join(dir, 'state.json')
      const store = await LocalStore.open(file)
      const fixture: OutboxFixture = {
        outbox: store.outbox(),
        // A restart: the store closes, and opens again on its files.
        async reopen() {
          await stores.get(fixture)?.close()
          const again = await LocalStore.open(file)
          stores.set(fixture, again)
          return again.outbox()
        },
      }
      dirs.set(fixture, dir)
      stores.set(fixture, store)
      return fixture
    },
    async (fixture) => {
      await stores.get(fixture)?.close()
      await rm(dirs.get(fixture)!, { recursive: true, force: true })
    },
    { shared: false },
  )

  it('keeps what is pending through a compaction (the snapshot holds it) and the journal after it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'outbox-'))
    const file = join(dir, 'state.json')
    try {
      const store = await LocalStore.open(file)
      const outbox = store.outbox()
      const now = Date.now()
      const keep = event('Z', 'deleted', now + 3_600_000)
      const retried = event('Y', 'completed', now)
      await outbox.add([keep, retried])
      const [first] = await outbox.claim(now, 1, LEASE_MS)
      await outbox.retry(first!, now + 60_000, 'down')
      for (let i = 0; i < 20; i++) {
        await outbox.add([event(`U${i}`, 'completed', now + 1)])
        const [claimed] = await outbox.claim(now + 1, 1, LEASE_MS)
        await outbox.ack(claimed!)
      }
      await store.compactNow()
      const after = event('X', 'received', now + 2)
      await outbox.add([after])
      await store.close()
      expect(JSON.parse(await readFile(file, 'utf8'))).toMatchObject({
        outbox: { pending: expect.arrayContaining([expect.objectContaining({ eventId: keep.eventId })]) },
      })
      const again = await LocalStore.open(file)
      const pending = await again.outbox().pending(10)
      expect(pending.map((e) => e.eventId).sort()).toEqual(
        [keep.eventId, retried.eventId, after.eventId].sort(),
      )
      // The retry's count and time came through the snapshot unchanged (not replayed twice).
      expect(pending.find((e) => e.eventId === retried.eventId)).toMatchObject({
        attempts: 1,
        nextAt: now + 60_000,
      })
      await again.close()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('writes a snapshot without an outbox when nothing is pending (as without hooks)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'outbox-'))
    const file = join(dir, 'state.json')
    try {
      const store = await LocalStore.open(file)
      const outbox = store.outbox()
      await outbox.add([event('A', 'completed', 0)])
      const [claimed] = await outbox.claim(Date.now(), 1, LEASE_MS)
      await outbox.ack(claimed!)
      await store.compactNow()
      await store.close()
      expect(JSON.parse(await readFile(file, 'utf8'))).not.toHaveProperty('outbox')
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
