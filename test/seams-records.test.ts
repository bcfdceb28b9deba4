import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { LocalStore } from '../src/seams/records/local.js'
import { RedisOutbox } from '../src/seams/outbox/redis.js'
import { RedisStore } from '../src/seams/records/redis.js'
import { at, record, recordStoreContract } from './contracts/records.js'
import { redisForSeams, scratchFolders } from './support/seams.js'

const redis = redisForSeams()
const scratch = scratchFolders()

recordStoreContract('embedded (lowdb snapshot + journal)', async () => {
  const file = join(await scratch('seam-store'), 'state.json')
  let store = await LocalStore.open(file)
  return {
    store,
    async reopen() {
      await store.close()
      return (store = await LocalStore.open(file))
    },
    outbox: () => store.outbox(),
  }
})

recordStoreContract('Redis', async () => {
  const prefix = redis.prefix('seam')
  const client = await redis.connection()
  const outbox = new RedisOutbox(client, 'test', prefix)
  return {
    store: new RedisStore(client, prefix),
    outbox: () => outbox,
    reopen: async () => new RedisStore(await redis.connection(), prefix),
    lease: async (id, value) => void (await client.set(`${prefix}:lease:${id}`, value)),
  }
})

describe('RecordStore (embedded) after a restart', () => {
  it('its owner index is rebuilt from what it reads back, through a compaction and the journal after it', async () => {
    const file = join(await scratch('seam-owners'), 'state.json')
    const store = await LocalStore.open(file)
    for (let n = 1; n <= 6; n++) await store.put(record(n, 'COMPLETED', { owner: n % 2 ? 'ann' : 'bob' }))
    await store.compactNow()
    await store.put(record(3, 'COMPLETED', { owner: 'bob' }))
    await store.remove(record(5).id)
    await store.put(record(7, 'IN_PROGRESS', { owner: 'ann' }))
    await store.close()
    const again = await LocalStore.open(file)
    const of = async (owner: string) =>
      (await again.page({ owner, first: 10 })).records.map((r) => r.filename)
    expect(await of('ann')).toEqual(['file 1.bin', 'file 7.bin'])
    expect(await of('bob')).toEqual(['file 2.bin', 'file 3.bin', 'file 4.bin', 'file 6.bin'])
    await again.close()
  })

  it('reads back every change, through a compaction and the journal after it', async () => {
    const file = join(await scratch('seam-restart'), 'state.json')
    const store = await LocalStore.open(file)
    for (let n = 1; n <= 5; n++) await store.put(record(n, 'IN_PROGRESS'))
    await store.compactNow()
    await store.put(record(2, 'COMPLETED'))
    await store.remove(record(3).id)
    await store.progress([{ id: record(4).id, uploadedSize: 42, updatedAt: at(40) }])
    await store.close()
    const again = await LocalStore.open(file)
    expect(
      (await again.page({ first: 10 })).records.map((r) => [r.filename, r.status, r.uploadedSize]),
    ).toEqual([
      ['file 1.bin', 'IN_PROGRESS', 10],
      ['file 2.bin', 'COMPLETED', 100],
      ['file 4.bin', 'IN_PROGRESS', 42],
      ['file 5.bin', 'IN_PROGRESS', 10],
    ])
    await again.close()
  })
})

describe('RecordStore (Redis): records written before the owner index', () => {
  it('are filed in it when an instance starts, once', async () => {
    const client = await redis.connection()
    const prefix = redis.prefix('pre-index')
    const store = new RedisStore(client, prefix)
    for (let n = 1; n <= 4; n++) await store.put(record(n, 'COMPLETED', { owner: n % 2 ? 'ann' : 'bob' }))
    // As a server before the index left them: no owner sets, no mark that they were built.
    await client.del(`${prefix}:o:ann`, `${prefix}:o:bob`)
    const of = async (owner: string) =>
      (await store.page({ owner, first: 10 })).records.map((r) => r.filename)
    expect(await of('ann')).toEqual([])
    await store.start()
    expect(await of('ann')).toEqual(['file 1.bin', 'file 3.bin'])
    expect(await of('bob')).toEqual(['file 2.bin', 'file 4.bin'])
    expect(await client.get(`${prefix}:o-built`)).toBe('1')
  })
})

describe('RecordStore (Redis): records written before uploads could arrive over time', () => {
  it('read as ones that arrived whole, as they do from the embedded store’s files', async () => {
    const client = await redis.connection()
    const prefix = redis.prefix('old')
    const store = new RedisStore(client, prefix)
    // Nor metadata, which came later still (pre-create hooks).
    const { receivedSize, source, expiresAt, receivedAt, metadata, ...old } = record(7)
    void [receivedSize, source, expiresAt, receivedAt, metadata]
    const fields = Object.entries(old).flatMap(([name, value]) =>
      value === null ? [] : [name, String(value)],
    )
    await client.hset(`${prefix}:u:${old.id}`, ...fields)
    expect(await store.get(old.id)).toEqual({
      ...old,
      receivedSize: old.totalSize,
      source: 'multipart',
      expiresAt: null,
      receivedAt: old.createdAt,
      metadata: {},
    })
  })
})
