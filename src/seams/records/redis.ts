import type { Redis } from 'ioredis'
import { isFinal, UPLOAD_STATUSES, type UploadRecord, type UploadStatus } from '../../model/record.js'
import type { HookEvent } from '../outbox/index.js'
import { ADD_EVENT_LUA, eventArgs } from '../outbox/redis.js'
import { asUnavailable } from '../redis-client.js'
import { FencedError, type Page, type PageQuery, type Progress, type RecordStore } from './index.js'
import { decodeCursor, encodeCursor, idOf, sortKey } from './order.js'
import { recordProblem, withDefaults } from './stored.js'

/**
 * Upload records in Redis, shared by every instance:
 *
 *   {p}:u:{id}       a hash: the record's fields (null ones absent)
 *   {p}:all          a sorted set of `{createdAt}|{id}`, all scored 0: lexical order is creation order
 *   {p}:s:{STATUS}   the same, for the uploads in one state (lists by state, counts by ZCARD)
 *   {p}:o:{owner}    the same, for one owner's uploads (a token's `sub`): the owner index, so an owner's lists
 *                    and usage read theirs alone
 *   {p}:o-built      set once the owner index holds every record (see start: records from before it)
 *   {p}:lease:{id}   the upload's lease (seams/leases/redis.ts), which fenced writes compare
 *
 * Each write is one Lua script, so a record and its indexes never disagree, and a write under a lease
 * that is no longer current is refused inside Redis, atomically. Durability is Redis's: run it with
 * `appendonly yes` (and `appendfsync always` for the embedded store's every-change guarantee).
 */
/**
 * ARGV[5] is how many notifications (issue 23) the change causes, six arguments each, after it: they are
 * queued by the outbox's own Lua (seams/outbox/redis.ts) in the same script, after the fence check, so a
 * refused write queues nothing and an accepted one cannot lose them.
 */
const EVENTS = `${ADD_EVENT_LUA}
local function addEvents()
  local n = tonumber(ARGV[5])
  for i = 6, 5 + n * 6, 6 do addEvent(ARGV[1], ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]) end
  return 6 + n * 6
end
`
/** KEYS[4] is the new owner's index, or '' for a record with no owner. */
const PUT = `${EVENTS}
if ARGV[2] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[2] then return redis.error_reply('FENCED') end
local fields = addEvents()
local old = redis.call('HMGET', KEYS[1], 'status', 'owner')
if old[1] and old[1] ~= ARGV[4] then redis.call('ZREM', ARGV[1] .. ':s:' .. old[1], ARGV[3]) end
if old[2] and ARGV[1] .. ':o:' .. old[2] ~= KEYS[4] then redis.call('ZREM', ARGV[1] .. ':o:' .. old[2], ARGV[3]) end
if KEYS[4] ~= '' then redis.call('ZADD', KEYS[4], 0, ARGV[3]) end
redis.call('ZADD', ARGV[1] .. ':s:' .. ARGV[4], 0, ARGV[3])
redis.call('ZADD', KEYS[2], 0, ARGV[3])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, fields))
return 1
`
const REMOVE = `${EVENTS}
if ARGV[2] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[2] then return redis.error_reply('FENCED') end
addEvents()
local fields = redis.call('HMGET', KEYS[1], 'status', 'createdAt', 'owner')
if not fields[1] then return 0 end
local key = fields[2] .. '|' .. ARGV[3]
redis.call('ZREM', KEYS[2], key)
redis.call('ZREM', ARGV[1] .. ':s:' .. fields[1], key)
if fields[3] then redis.call('ZREM', ARGV[1] .. ':o:' .. fields[3], key) end
redis.call('DEL', KEYS[1])
return 1
`
/**
 * Files records from before the owner index in it: each owner read inside the script, so a record changed
 * meanwhile is filed as it is now. ARGV: the prefix, then sort keys.
 */
const INDEX_OWNERS = `
for i = 2, #ARGV do
  local key = ARGV[i]
  local owner = redis.call('HGET', ARGV[1] .. ':u:' .. string.sub(key, string.find(key, '|', 1, true) + 1), 'owner')
  if owner then redis.call('ZADD', ARGV[1] .. ':o:' .. owner, 0, key) end
end
return 1
`
/** Records filed per INDEX_OWNERS call while the index is built. */
const INDEX_CHUNK = 500

/** The floor's unfinished statuses, spelled in Lua from the one list (no second copy to drift). */
const UNFINISHED_LUA = UPLOAD_STATUSES.filter((status) => !isFinal(status))
  .map((status) => `status == '${status}'`)
  .join(' or ')

/**
 * Byte counts of running uploads: only to unfinished records (as the embedded store: RECEIVING too), never
 * past their size, and only under each one's current lease.
 */
const PROGRESS = `
local p = ARGV[1]
for i = 2, #ARGV, 4 do
  local id, size, at, fence = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local key = p .. ':u:' .. id
  local fields = redis.call('HMGET', key, 'status', 'totalSize')
  local status = fields[1]
  local unfinished = ${UNFINISHED_LUA}
  if unfinished and tonumber(size) <= tonumber(fields[2]) and (fence == '' or redis.call('GET', p .. ':lease:' .. id) == fence) then
    redis.call('HSET', key, 'uploadedSize', size, 'updatedAt', at)
  end
end
return 1
`

type Scripted = Redis & {
  uploadPut(...args: (string | number)[]): Promise<number>
  uploadRemove(...args: (string | number)[]): Promise<number>
  uploadProgress(...args: (string | number)[]): Promise<number>
  uploadIndexOwners(...args: string[]): Promise<number>
}

const NUMBERS = new Set(['uploadedSize', 'totalSize', 'targetSpeed', 'receivedSize', 'claimedSize'])
const NULLABLE = ['error', 'completedAt', 'expiresAt', 'receivedAt'] as const

function toFields(record: UploadRecord): string[] {
  const fields: string[] = []
  for (const [name, value] of Object.entries(record))
    if (value !== null && value !== undefined)
      fields.push(name, typeof value === 'object' ? JSON.stringify(value) : String(value))
  return fields
}

/** An object field, kept as JSON; anything else is left for recordProblem to name. */
function parseObject(value: string): unknown {
  try {
    return JSON.parse(value)
  } catch {
    return value
  }
}

function fromFields(fields: Record<string, string>): UploadRecord | undefined {
  if (Object.keys(fields).length === 0) return undefined
  const record: Record<string, unknown> = {}
  for (const [name, value] of Object.entries(fields))
    record[name] = NUMBERS.has(name) ? Number(value) : name === 'metadata' ? parseObject(value) : value
  // A record written before uploads could arrive over time reads as one that arrived whole, as on disk.
  const upgraded = withDefaults(record) as Record<string, unknown>
  for (const name of NULLABLE) upgraded[name] ??= null
  const problem = recordProblem(upgraded)
  if (problem) throw new Error(`upload ${JSON.stringify(fields.id)} in Redis ${problem}`)
  return upgraded as unknown as UploadRecord
}

const UNFINISHED = UPLOAD_STATUSES.filter((status) => !isFinal(status))

export class RedisStore implements RecordStore {
  private readonly redis: Scripted

  constructor(
    redis: Redis,
    private readonly prefix = 'uploads',
  ) {
    redis.defineCommand('uploadPut', { numberOfKeys: 4, lua: PUT })
    redis.defineCommand('uploadIndexOwners', { numberOfKeys: 0, lua: INDEX_OWNERS })
    redis.defineCommand('uploadRemove', { numberOfKeys: 3, lua: REMOVE })
    redis.defineCommand('uploadProgress', { numberOfKeys: 0, lua: PROGRESS })
    this.redis = redis as Scripted
  }

  private key(kind: string, id?: string): string {
    return id === undefined ? `${this.prefix}:${kind}` : `${this.prefix}:${kind}:${id}`
  }

  /** Every call goes through here: a Redis that cannot be reached is the server's 503, a fence refusal typed. */
  private async call<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work()
    } catch (error) {
      if (error instanceof Error && /FENCED/.test(error.message)) throw new FencedError(error.message)
      throw asUnavailable(error)
    }
  }

  /**
   * Builds the owner index once, over records written before it existed (every write since keeps it). Done
   * before this instance serves anyone; instances starting together may each do it: filing is idempotent.
   */
  start(): Promise<void> {
    return this.call(async () => {
      if ((await this.redis.exists(this.key('o-built'))) === 1) return
      let from = '-'
      for (;;) {
        const keys = await this.redis.zrange(this.key('all'), from, '+', 'BYLEX', 'LIMIT', 0, INDEX_CHUNK)
        if (keys.length > 0) await this.redis.uploadIndexOwners(this.prefix, ...keys)
        if (keys.length < INDEX_CHUNK) break
        from = `(${keys.at(-1)}`
      }
      await this.redis.set(this.key('o-built'), '1')
    })
  }

  get(id: string): Promise<UploadRecord | undefined> {
    return this.call(async () => fromFields(await this.redis.hgetall(this.key('u', id))))
  }

  private async records(keys: readonly string[]): Promise<UploadRecord[]> {
    if (keys.length === 0) return []
    const pipeline = this.redis.pipeline()
    for (const key of keys) pipeline.hgetall(this.key('u', idOf(key)))
    const results = (await pipeline.exec()) ?? []
    const records: UploadRecord[] = []
    for (const [error, fields] of results) {
      if (error) throw error
      // Removed between the index read and this one: it is simply not on the page.
      const record = fromFields(fields as Record<string, string>)
      if (record) records.push(record)
    }
    return records
  }

  page({ status, after, first, owner }: PageQuery): Promise<Page> {
    return this.call(async () => {
      const from = after === undefined ? '-' : `(${decodeCursor(after) ?? '\uffff'}`
      if (owner !== undefined) return this.ownerPage(owner, status, from, first)
      const sets =
        status === undefined ? [this.key('all')] : [...new Set(status)].map((s) => this.key('s', s))
      const want = Math.min(first, 1_000_000) + 1
      const ranges = await Promise.all(
        sets.map((set) => this.redis.zrange(set, from, '+', 'BYLEX', 'LIMIT', 0, want)),
      )
      const keys = ranges.flat().sort().slice(0, want)
      const hasNextPage = keys.length > first
      const records = await this.records(keys.slice(0, first))
      const end = records.at(-1)
      return { records, hasNextPage, endCursor: end ? encodeCursor(sortKey(end)) : null }
    })
  }

  /**
   * A page of one owner's uploads, from their index: by state, it reads on through their records until the
   * page is full (what it reads grows with this owner's uploads, never with everyone's).
   */
  private async ownerPage(
    owner: string,
    status: readonly UploadStatus[] | undefined,
    from: string,
    first: number,
  ): Promise<Page> {
    const wanted = status === undefined ? undefined : new Set(status)
    const found: UploadRecord[] = []
    const chunk = Math.min(Math.max(first + 1, 100), 1000)
    for (let cursor = from; ;) {
      const keys = await this.redis.zrange(this.key('o', owner), cursor, '+', 'BYLEX', 'LIMIT', 0, chunk)
      for (const record of await this.records(keys))
        if (!wanted || wanted.has(record.status)) found.push(record)
      if (found.length > first || keys.length < chunk) break
      cursor = `(${keys.at(-1)}`
    }
    const records = found.slice(0, first)
    const end = records.at(-1)
    return {
      records,
      hasNextPage: found.length > first,
      endCursor: end ? encodeCursor(sortKey(end)) : null,
    }
  }

  unfinished(): Promise<UploadRecord[]> {
    return this.call(async () => {
      const keys = await Promise.all(UNFINISHED.map((s) => this.redis.zrange(this.key('s', s), 0, -1)))
      return this.records(keys.flat().sort())
    })
  }

  countByStatus(): Promise<Record<UploadStatus, number>> {
    return this.call(async () => {
      const counts = await Promise.all(UPLOAD_STATUSES.map((s) => this.redis.zcard(this.key('s', s))))
      return Object.fromEntries(UPLOAD_STATUSES.map((s, i) => [s, counts[i] ?? 0])) as Record<
        UploadStatus,
        number
      >
    })
  }

  put(record: UploadRecord, fence = '', events: readonly HookEvent[] = []): Promise<void> {
    return this.call(async () => {
      await this.redis.uploadPut(
        this.key('u', record.id),
        this.key('all'),
        this.key('lease', record.id),
        record.owner ? this.key('o', record.owner) : '',
        this.prefix,
        fence,
        sortKey(record),
        record.status,
        events.length,
        ...eventArgs(events),
        ...toFields(record),
      )
    })
  }

  remove(id: string, fence = '', events: readonly HookEvent[] = []): Promise<void> {
    return this.call(async () => {
      await this.redis.uploadRemove(
        this.key('u', id),
        this.key('all'),
        this.key('lease', id),
        this.prefix,
        fence,
        id,
        '',
        events.length,
        ...eventArgs(events),
      )
    })
  }

  progress(entries: readonly Progress[]): Promise<void> {
    if (entries.length === 0) return Promise.resolve()
    return this.call(async () => {
      const args = entries.flatMap((e) => [e.id, e.uploadedSize, e.updatedAt, e.fence ?? ''])
      await this.redis.uploadProgress(this.prefix, ...args)
    })
  }

  async close(): Promise<void> {}
}
