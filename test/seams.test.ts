import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Redis } from 'ioredis'
import { MemoryLocker } from '@tus/server'
import type { Locker } from '@tus/utils'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectRedis, ready } from '../src/seams/redis-client.js'
import { RedisLocker } from '../src/seams/tus-lock/redis.js'
import type { Bus } from '../src/seams/bus/index.js'
import { LocalBus } from '../src/seams/bus/local.js'
import type { Leases } from '../src/seams/leases/index.js'
import { LocalLeases } from '../src/seams/leases/local.js'
import { LocalStore } from '../src/seams/records/local.js'
import type { UploadRecord, UploadStatus } from '../src/uploads/record.js'
import { FencedError, type RecordStore } from '../src/seams/records/index.js'
import { RedisBus } from '../src/seams/bus/redis.js'
import { RedisLeases } from '../src/seams/leases/redis.js'
import { RedisStore } from '../src/seams/records/redis.js'
import { startRedis, type TestRedis } from './support/redis.js'

/**
 * Each seam the upload service talks to has two implementations, the embedded default and Redis. One
 * contract per seam, run against both: what the service relies on holds for either.
 */
let redis: TestRedis
const connections: Redis[] = []
const scratch: string[] = []
beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  for (const connection of connections) connection.disconnect()
  await redis.stop()
  for (const dir of scratch) await rm(dir, { recursive: true, force: true })
})

let prefixes = 0
async function connection(): Promise<Redis> {
  const client = connectRedis(redis.url, `test-${connections.length}`)
  connections.push(client)
  await ready(client, redis.url)
  return client
}

const at = (second: number) => new Date(Date.UTC(2026, 11, 1, 10, 0, second)).toISOString()
const hex = (n: number) => n.toString(16).padStart(64, '0')
const record = (
  n: number,
  status: UploadStatus = 'COMPLETED',
  extra: Partial<UploadRecord> = {},
): UploadRecord => {
  const id = `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`
  return {
    id,
    filename: `file ${n}.bin`,
    storedName: `${id}_file ${n}.bin`,
    status,
    receivedSize: 100,
    source: 'multipart',
    expiresAt: null,
    receivedAt: at(n),
    uploadedSize: status === 'COMPLETED' ? 100 : 10,
    totalSize: 100,
    targetSpeed: 1000,
    sha256: hex(n),
    error: status === 'FAILED' ? 'it broke' : null,
    createdAt: at(n),
    updatedAt: at(n),
    completedAt: status === 'COMPLETED' ? at(n) : null,
    ...extra,
  }
}

/** A tus upload still arriving: 40 of its 100 bytes in, no hash yet, expiring unless more come. */
const receiving = (n: number): UploadRecord =>
  record(n, 'RECEIVING', {
    source: 'tus',
    receivedSize: 40,
    uploadedSize: 0,
    sha256: '',
    receivedAt: null,
    expiresAt: at(n + 30),
  })

const stores: [string, () => Promise<{ store: RecordStore; shared: boolean }>][] = [
  [
    'embedded (lowdb + journal)',
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'seam-store-'))
      scratch.push(dir)
      return { store: await LocalStore.open(join(dir, 'state.json')), shared: false }
    },
  ],
  ['Redis', async () => ({ store: new RedisStore(await connection(), `seam${++prefixes}`), shared: true })],
]

describe.each(stores)('RecordStore: %s', (_, make) => {
  let store: RecordStore
  let shared: boolean
  beforeAll(async () => {
    ;({ store, shared } = await make())
    // Out of creation order on purpose: lists come back in creation order whatever the writing order.
    for (const n of [3, 1, 2, 5, 4]) await store.put(record(n, n % 2 ? 'COMPLETED' : 'IN_PROGRESS'))
    await store.put(record(6, 'PAUSED'))
    await store.put(record(7, 'FAILED'))
    await store.put(receiving(8))
  })
  afterAll(() => store.close())

  it('gives back what was put, whole, nulls included; nothing for an unknown id', async () => {
    expect(await store.get(record(7).id)).toEqual(record(7, 'FAILED'))
    expect(await store.get(record(2).id)).toEqual(record(2, 'IN_PROGRESS'))
    expect(await store.get(record(8).id)).toEqual(receiving(8))
    expect(await store.get('nope')).toBeUndefined()
    expect(await store.get('__proto__')).toBeUndefined()
  })

  it('pages in creation order, resuming after a cursor, filtered by status', async () => {
    const first = await store.page({ first: 3 })
    expect(first.records.map((r) => r.filename)).toEqual(['file 1.bin', 'file 2.bin', 'file 3.bin'])
    expect(first.hasNextPage).toBe(true)
    const rest = await store.page({ first: 10, after: first.endCursor! })
    expect(rest.records.map((r) => r.filename)).toEqual([
      'file 4.bin',
      'file 5.bin',
      'file 6.bin',
      'file 7.bin',
      'file 8.bin',
    ])
    expect(rest.hasNextPage).toBe(false)
    const active = await store.page({ first: 10, status: ['IN_PROGRESS', 'PAUSED'] })
    expect(active.records.map((r) => r.filename)).toEqual(['file 2.bin', 'file 4.bin', 'file 6.bin'])
    const arriving = await store.page({ first: 10, status: ['RECEIVING', 'FAILED'] })
    expect(arriving.records.map((r) => r.filename)).toEqual(['file 7.bin', 'file 8.bin'])
    const one = await store.page({ first: 1, status: ['PAUSED', 'RECEIVING'] })
    expect([one.records.map((r) => r.filename), one.hasNextPage]).toEqual([['file 6.bin'], true])
    expect(await store.page({ first: 10, status: [] })).toEqual({
      records: [],
      hasNextPage: false,
      endCursor: null,
    })
    const none = await store.page({ first: 10, status: ['CANCELED'] })
    expect(none).toEqual({ records: [], hasNextPage: false, endCursor: null })
  })

  it('counts every status (none is 0), and lists the unfinished, still arriving included, oldest first', async () => {
    expect(await store.countByStatus()).toEqual({
      RECEIVING: 1,
      IN_PROGRESS: 2,
      PAUSED: 1,
      COMPLETED: 3,
      CANCELED: 0,
      FAILED: 1,
    })
    expect((await store.unfinished()).map((r) => r.filename)).toEqual([
      'file 2.bin',
      'file 4.bin',
      'file 6.bin',
      'file 8.bin',
    ])
  })

  it('a new state moves a record between lists, and keeps its place in creation order', async () => {
    await store.put({ ...record(2, 'PAUSED'), updatedAt: at(50) })
    const paused = await store.page({ first: 10, status: ['PAUSED'] })
    expect(paused.records.map((r) => r.filename)).toEqual(['file 2.bin', 'file 6.bin'])
    expect((await store.page({ first: 10, status: ['IN_PROGRESS'] })).records.map((r) => r.filename)).toEqual(
      ['file 4.bin'],
    )
    expect((await store.page({ first: 2 })).records.map((r) => r.filename)).toEqual([
      'file 1.bin',
      'file 2.bin',
    ])
    // Every byte arrived: it leaves the list of those still arriving.
    await store.put(receiving(9))
    await store.put(record(9, 'IN_PROGRESS'))
    const arriving = await store.page({ first: 10, status: ['RECEIVING'] })
    expect(arriving.records.map((r) => r.filename)).toEqual(['file 8.bin'])
    expect(await store.countByStatus()).toMatchObject({ RECEIVING: 1, IN_PROGRESS: 2 })
  })

  it('byte counts reach unfinished records only (still arriving included), and never past the size', async () => {
    await store.progress([
      { id: record(4).id, uploadedSize: 77, updatedAt: at(51) },
      { id: record(1).id, uploadedSize: 5, updatedAt: at(51) },
      { id: record(6).id, uploadedSize: 101, updatedAt: at(51) },
      { id: record(8).id, uploadedSize: 3, updatedAt: at(51) },
      { id: 'never-there', uploadedSize: 3, updatedAt: at(51) },
    ])
    expect(await store.get(record(4).id)).toMatchObject({ uploadedSize: 77, updatedAt: at(51) })
    expect(await store.get(record(1).id)).toMatchObject({ uploadedSize: 100 })
    expect(await store.get(record(6).id)).toMatchObject({ uploadedSize: 10, updatedAt: at(6) })
    expect(await store.get(record(8).id)).toMatchObject({ uploadedSize: 3, updatedAt: at(51) })
    expect(await store.get('never-there')).toBeUndefined()
  })

  it('removes a record from every list', async () => {
    await store.remove(record(3).id)
    expect(await store.get(record(3).id)).toBeUndefined()
    expect((await store.page({ first: 10 })).records.map((r) => r.filename)).not.toContain('file 3.bin')
    expect((await store.countByStatus()).COMPLETED).toBe(2)
    await store.remove(record(8).id)
    expect((await store.page({ first: 10, status: ['RECEIVING'] })).records).toEqual([])
    expect((await store.countByStatus()).RECEIVING).toBe(0)
    expect((await store.unfinished()).map((r) => r.filename)).not.toContain('file 8.bin')
    await store.remove('never-there')
  })

  it('a write under a lease that is no longer current is refused, when the store is shared', async () => {
    if (!shared) return // one process: every lease is its own, always current
    const r = record(20, 'IN_PROGRESS')
    await store.put(r)
    await expect(store.put({ ...r, status: 'PAUSED' }, 'someone:1')).rejects.toBeInstanceOf(FencedError)
    expect((await store.get(r.id))?.status).toBe('IN_PROGRESS')
  })
})

describe('RecordStore (embedded) after a restart', () => {
  it('reads back every change, through a compaction and the journal after it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'seam-restart-'))
    scratch.push(dir)
    const file = join(dir, 'state.json')
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

describe('Leases', () => {
  it('embedded: this process holds every lease, with no deadline', async () => {
    const leases: Leases = new LocalLeases()
    expect(await leases.acquire('a')).toMatchObject({ id: 'a', deadline: Infinity })
    expect(leases.held('anything')).toBeDefined()
    expect(await leases.holder('a')).toBe(leases.instance)
  })

  it('Redis: one holder at a time, a higher token each time, free again once released', async () => {
    const a = new RedisLeases(await connection(), 'instance-a', 'leases1')
    const b = new RedisLeases(await connection(), 'instance-b', 'leases1')
    try {
      const first = await a.acquire('u1')
      expect(first?.value).toMatch(/^instance-a:\d+$/)
      expect(a.held('u1')).toEqual(first)
      expect(await b.acquire('u1')).toBeUndefined()
      expect(b.held('u1')).toBeUndefined()
      expect(await b.holder('u1')).toBe('instance-a')
      expect(await b.holders(['u1', 'u2'])).toEqual(['instance-a', undefined])
      await a.release('u1')
      const second = await b.acquire('u1')
      expect(Number(second!.value.split(':')[1])).toBeGreaterThan(Number(first!.value.split(':')[1]))
      expect(a.held('u1')).toBeUndefined()
      await a.start()
      await b.start()
      expect(await a.liveInstances()).toEqual(new Set(['instance-a', 'instance-b']))
    } finally {
      await a.close()
      await b.close()
    }
  })

  it('Redis: a holder whose lease was taken over hears it at its next renewal, and stops holding it', async () => {
    const client = await connection()
    const a = new RedisLeases(client, 'instance-a', 'leases2')
    const lost: string[] = []
    a.onLost((id) => lost.push(id))
    try {
      await a.acquire('u1')
      await client.set('leases2:lease:u1', 'instance-b:99') // as if it had expired and been taken
      const deadline = Date.now() + 3000
      while (lost.length === 0 && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 50))
      expect(lost).toEqual(['u1'])
      expect(a.held('u1')).toBeUndefined()
    } finally {
      await a.close()
    }
  })
})

const view = (id: string, uploadedSize: number) => ({
  ...record(1, 'IN_PROGRESS'),
  id,
  uploadedSize,
  currentSpeed: 5,
})

const buses: [string, () => Promise<[Bus, Bus]>][] = [
  [
    'in process',
    async () => {
      const bus = new LocalBus()
      return [bus, bus]
    },
  ],
  [
    'Redis',
    async () => {
      const prefix = `bus${++prefixes}`
      const one = new RedisBus(await connection(), await connection(), 'one', () => [], prefix)
      const two = new RedisBus(await connection(), await connection(), 'two', () => ['u1'], prefix)
      await one.start()
      await two.start()
      return [one, two]
    },
  ],
]

describe.each(buses)('Bus: %s', (_, make) => {
  let one: Bus
  let two: Bus
  beforeAll(async () => {
    ;[one, two] = await make()
  })
  afterAll(async () => {
    await one.close()
    await two.close()
  })

  it('a published state reaches listeners here (local) and on the other side', async () => {
    const here: [string, boolean][] = []
    const there: [string, boolean][] = []
    one.onState((v, local) => here.push([v.id, local]))
    const arrived = new Promise<void>((resolve) =>
      two.onState((v, local) => {
        there.push([v.id, local])
        if (v.id === 'b') resolve()
      }),
    )
    one.publish(view('a', 1))
    one.publish(view('b', 2))
    await arrived
    expect(here).toEqual([
      ['a', true],
      ['b', true],
    ])
    expect(there.map(([id]) => id)).toEqual(['a', 'b'])
  })

  it('a command reaches its owner, and its outcome (or its error) comes back', async () => {
    two.onCommand(async (command) =>
      command.op === 'pause'
        ? { ok: view(command.id, 7) }
        : { error: { code: 'INVALID_STATE', message: 'no' } },
    )
    expect(await one.request('two', { op: 'pause', id: 'u1' })).toEqual({ ok: view('u1', 7) })
    expect(await one.request('two', { op: 'cancel', id: 'u1' })).toEqual({
      error: { code: 'INVALID_STATE', message: 'no' },
    })
  })
})

describe('Bus (Redis): a lost message does not strand a command', () => {
  it('the owner finds the wanted change at its next look, and the requester finds the outcome', async () => {
    const client = await connection()
    const prefix = `lost${++prefixes}`
    const requester = new RedisBus(client, await connection(), 'requester', () => [], prefix)
    // An owner that is not subscribed to its command channel: every message to it is lost.
    const owner = new RedisBus(await connection(), await connection(), 'owner', () => ['u9'], prefix)
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
    const client = await connection()
    const prefix = `gone${++prefixes}`
    const requester = new RedisBus(client, await connection(), 'requester', () => [], prefix)
    await requester.start()
    // The owner is gone (SIGKILLed): nobody takes the command while the requester waits.
    let held: string[] = []
    const ran: string[] = []
    const adopter = new RedisBus(await connection(), await connection(), 'adopter', () => held, prefix)
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
    const prefix = `late${++prefixes}`
    const requester = new RedisBus(await connection(), await connection(), 'requester', () => [], prefix)
    const owner = new RedisBus(await connection(), await connection(), 'owner', () => ['u6'], prefix)
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

// tus's Locker: one request at a time writes an upload. In one process @tus/server's MemoryLocker; over
// Redis, RedisLocker, whichever instance each request reached.
/** Two lockers that guard the same uploads: one process's requests, or two instances over one Redis. */
const lockers: [string, () => Promise<[Locker, Locker]>][] = [
  [
    'in one process',
    async () => {
      const locker = new MemoryLocker({ acquireLockTimeout: 2000 })
      return [locker, locker]
    },
  ],
  [
    'Redis',
    async () => {
      const prefix = `lk${++prefixes}`
      const instance = async () => {
        const locker = new RedisLocker(await connection(), await connection(), prefix)
        await locker.start()
        return locker
      }
      return [await instance(), await instance()]
    },
  ],
]

describe.each(lockers)('Locker: %s', (_, make) => {
  it('holds one request at a time, asks the holder to let go, and hands it over once it has', async () => {
    const [locker, other] = await make()
    const first = locker.newLock('u1')
    let asked = 0
    await first.lock(new AbortController().signal, () => {
      asked++
      void first.unlock()
    })
    const second = other.newLock('u1')
    const took = performance.now()
    await second.lock(new AbortController().signal, () => undefined)
    expect(asked).toBe(1)
    expect(performance.now() - took).toBeLessThan(1500)
    // A different upload is never held up by it.
    const unrelated = locker.newLock('u2')
    await unrelated.lock(new AbortController().signal, () => undefined)
    await unrelated.unlock()
    await second.unlock()
  })

  it('a request that gives up waiting (its signal) is refused, and the holder keeps the lock', async () => {
    const [locker] = await make()
    const holder = locker.newLock('u3')
    await holder.lock(new AbortController().signal, () => undefined) // never lets go
    const waiting = new AbortController()
    const refused = locker.newLock('u3').lock(waiting.signal, () => undefined)
    setTimeout(() => waiting.abort(), 200)
    await expect(refused).rejects.toMatchObject({ status_code: 500 })
    await holder.unlock()
    const after = locker.newLock('u3')
    await after.lock(new AbortController().signal, () => undefined)
    await after.unlock()
  })
})

describe('RecordStore (Redis): records written before uploads could arrive over time', () => {
  it('read as ones that arrived whole, as they do from the embedded store’s files', async () => {
    const client = await connection()
    const prefix = `old${++prefixes}`
    const store = new RedisStore(client, prefix)
    const { receivedSize, source, expiresAt, receivedAt, ...old } = record(7)
    void [receivedSize, source, expiresAt, receivedAt]
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
    })
  })
})
