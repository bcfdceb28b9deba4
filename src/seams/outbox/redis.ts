import { randomUUID } from 'node:crypto'
import type { Redis } from 'ioredis'
import { NOTIFICATIONS, type Notification } from '../../hooks/config.js'
import { asUnavailable } from '../redis-client.js'
import type { DeadLetter, HookEvent, Outbox, OutboxStats, PendingEvent } from './index.js'

/**
 * The outbox in Redis, shared by every instance:
 *
 *   {p}:hook:e:{eventId}     a hash: the event and its delivery state
 *   {p}:hook:q:{uploadId}    a list of eventIds: the upload's queue, in order (only its head is ever sent)
 *   {p}:hook:due             a sorted set of uploadIds, scored by when their head may be sent next
 *   {p}:hook:claim:{upload}  the claim on an upload's head: `{token}|{eventId}`, expiring after the lease
 *   {p}:hook:age             a sorted set of pending eventIds by queuedAt (count, oldest)
 *   {p}:hook:dead            a sorted set of dead-lettered eventIds by when they died (their hashes kept)
 *
 * Claiming moves an upload's score to the claim's end: no one else looks at it meanwhile, and if its
 * claimant dies the score comes due again just as the claim lapses, so another instance takes it over.
 * Each change is one script, so a queue, its score and the counts never disagree. `ADD_EVENT_LUA` below is
 * run by the records store's writes too (records/redis.ts), so an event lands in the same script as the
 * record change that causes it.
 */
export const ADD_EVENT_LUA = `
local function addEvent(p, id, up, ty, body, at, rid)
  -- Queued once: a change written again (its answer lost) carries the same eventId.
  if redis.call('EXISTS', p .. ':hook:e:' .. id) == 1 then return end
  redis.call('HSET', p .. ':hook:e:' .. id, 'eventId', id, 'uploadId', up, 'type', ty, 'body', body,
    'createdAt', at, 'requestId', rid, 'attempts', 0, 'nextAt', at, 'queuedAt', at, 'lastError', '')
  if redis.call('RPUSH', p .. ':hook:q:' .. up, id) == 1 then redis.call('ZADD', p .. ':hook:due', at, up) end
  redis.call('ZADD', p .. ':hook:age', at, id)
end
`
const ADD = `${ADD_EVENT_LUA}
for i = 2, #ARGV, 6 do addEvent(ARGV[1], ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]) end
return 1
`
const CLAIM = `
local p, now, limit, lease, token = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local out = {}
for _, up in ipairs(redis.call('ZRANGEBYSCORE', p .. ':hook:due', '-inf', now, 'LIMIT', 0, limit)) do
  local claim = p .. ':hook:claim:' .. up
  local id = redis.call('LINDEX', p .. ':hook:q:' .. up, 0)
  if not id then
    redis.call('ZREM', p .. ':hook:due', up)
  elseif redis.call('SET', claim, token .. '|' .. id, 'NX', 'PX', lease) then
    redis.call('ZADD', p .. ':hook:due', now + lease, up)
    table.insert(out, redis.call('HGETALL', p .. ':hook:e:' .. id))
  end
end
return out
`
/**
 * Shared head of ack, retry and dead: nothing happens unless `id` is still its upload's head. A claim names
 * its claimant and the event it is on (`token|eventId`): one left on an event that is no longer the head
 * (it was taken over and acknowledged by another instance first) guards nothing, and is dropped, or the
 * upload's next event would wait out its lease while the upload took a claim slot at every poll.
 */
const HEAD = `
local p, up, id, token = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local q, claim, event = p .. ':hook:q:' .. up, p .. ':hook:claim:' .. up, p .. ':hook:e:' .. id
local held = redis.call('GET', claim)
local onThis = held and string.sub(held, -(#id + 1)) == '|' .. id
if redis.call('LINDEX', q, 0) ~= id then
  if onThis then redis.call('DEL', claim) end
  return 0
end
if held == token .. '|' .. id then redis.call('DEL', claim) end
local function advance()
  -- Whoever's claim is on this event, it is over: the head moves on.
  if onThis then redis.call('DEL', claim) end
  redis.call('LPOP', q)
  redis.call('ZREM', p .. ':hook:age', id)
  local nextId = redis.call('LINDEX', q, 0)
  if nextId then redis.call('ZADD', p .. ':hook:due', redis.call('HGET', p .. ':hook:e:' .. nextId, 'nextAt'), up)
  else redis.call('ZREM', p .. ':hook:due', up) end
end
`
const ACK = `${HEAD}
advance()
redis.call('DEL', event)
return 1
`
const RETRY = `${HEAD}
redis.call('HINCRBY', event, 'attempts', 1)
redis.call('HSET', event, 'nextAt', ARGV[5], 'lastError', ARGV[6])
redis.call('ZADD', p .. ':hook:due', ARGV[5], up)
return 1
`
const DEAD = `${HEAD}
advance()
redis.call('HINCRBY', event, 'attempts', 1)
redis.call('HSET', event, 'lastError', ARGV[5], 'deadAt', ARGV[6])
redis.call('ZADD', p .. ':hook:dead', ARGV[6], id)
return 1
`
const REQUEUE = `
local p, id, at = ARGV[1], ARGV[2], ARGV[3]
local event = p .. ':hook:e:' .. id
if not redis.call('ZSCORE', p .. ':hook:dead', id) then return {} end
redis.call('ZREM', p .. ':hook:dead', id)
redis.call('HDEL', event, 'deadAt')
redis.call('HSET', event, 'nextAt', at, 'queuedAt', at)
local up = redis.call('HGET', event, 'uploadId')
redis.call('ZADD', p .. ':hook:age', at, id)
if redis.call('RPUSH', p .. ':hook:q:' .. up, id) == 1 then redis.call('ZADD', p .. ':hook:due', at, up) end
return redis.call('HGETALL', event)
`

/** The six arguments of addEvent (ADD_EVENT_LUA) per event. */
export const eventArgs = (events: readonly HookEvent[]): (string | number)[] =>
  events.flatMap((e) => [e.eventId, e.uploadId, e.type, e.body, e.createdAt, e.requestId ?? ''])

type Scripted = Redis & {
  hookAdd(...args: (string | number)[]): Promise<number>
  hookClaim(...args: (string | number)[]): Promise<string[][]>
  hookAck(...args: (string | number)[]): Promise<number>
  hookRetry(...args: (string | number)[]): Promise<number>
  hookDead(...args: (string | number)[]): Promise<number>
  hookRequeue(...args: (string | number)[]): Promise<string[]>
}

function fromFields(flat: readonly string[]): DeadLetter | PendingEvent {
  const f: Record<string, string> = {}
  for (let i = 0; i + 1 < flat.length; i += 2) f[flat[i] as string] = flat[i + 1] as string
  const type = f.type as Notification
  if (!NOTIFICATIONS.includes(type) || !f.eventId || !f.uploadId || f.body === undefined)
    throw new Error(`hook event ${JSON.stringify(f.eventId)} in Redis is not whole`)
  return {
    eventId: f.eventId,
    uploadId: f.uploadId,
    type,
    body: f.body,
    createdAt: Number(f.createdAt),
    ...(f.requestId ? { requestId: f.requestId } : {}),
    attempts: Number(f.attempts),
    nextAt: Number(f.nextAt),
    queuedAt: Number(f.queuedAt),
    lastError: f.lastError || null,
    ...(f.deadAt === undefined ? {} : { deadAt: Number(f.deadAt) }),
  }
}

export class RedisOutbox implements Outbox {
  private readonly redis: Scripted
  /** This instance's claims: `{instance}:{random}`, so a restarted instance is a stranger to its old ones. */
  private readonly token: string

  constructor(
    redis: Redis,
    instance: string,
    private readonly prefix = 'uploads',
  ) {
    for (const [name, lua] of Object.entries({
      hookAdd: ADD,
      hookClaim: CLAIM,
      hookAck: ACK,
      hookRetry: RETRY,
      hookDead: DEAD,
      hookRequeue: REQUEUE,
    }))
      redis.defineCommand(name, { numberOfKeys: 0, lua })
    this.redis = redis as Scripted
    this.token = `${instance}:${randomUUID()}`
  }

  private key(kind: string): string {
    return `${this.prefix}:hook:${kind}`
  }

  /** A Redis that cannot be reached is a 503 to whoever asked, as for the records. */
  private async call<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work()
    } catch (error) {
      throw asUnavailable(error)
    }
  }

  add(events: readonly HookEvent[]): Promise<void> {
    if (events.length === 0) return Promise.resolve()
    return this.call(async () => void (await this.redis.hookAdd(this.prefix, ...eventArgs(events))))
  }

  claim(now: number, limit: number, leaseMs: number): Promise<PendingEvent[]> {
    return this.call(async () => {
      const rows = await this.redis.hookClaim(this.prefix, now, limit, leaseMs, this.token)
      return rows.map(fromFields)
    })
  }

  ack(event: PendingEvent): Promise<void> {
    return this.call(
      async () => void (await this.redis.hookAck(this.prefix, event.uploadId, event.eventId, this.token)),
    )
  }

  retry(event: PendingEvent, nextAt: number, error: string): Promise<void> {
    return this.call(
      async () =>
        void (await this.redis.hookRetry(
          this.prefix,
          event.uploadId,
          event.eventId,
          this.token,
          nextAt,
          error,
        )),
    )
  }

  deadLetter(event: PendingEvent, error: string, now: number): Promise<void> {
    return this.call(
      async () =>
        void (await this.redis.hookDead(this.prefix, event.uploadId, event.eventId, this.token, error, now)),
    )
  }

  stats(): Promise<OutboxStats> {
    return this.call(async () => {
      const [pending, oldest, dead] = await Promise.all([
        this.redis.zcard(this.key('age')),
        this.redis.zrange(this.key('age'), 0, 0, 'WITHSCORES'),
        this.redis.zcard(this.key('dead')),
      ])
      return { pending, oldestQueuedAt: oldest[1] === undefined ? null : Number(oldest[1]), dead }
    })
  }

  private async events(ids: readonly string[]): Promise<(PendingEvent | DeadLetter)[]> {
    if (ids.length === 0) return []
    const pipeline = this.redis.pipeline()
    for (const id of ids) pipeline.hgetall(this.key(`e:${id}`))
    const results = (await pipeline.exec()) ?? []
    const events: (PendingEvent | DeadLetter)[] = []
    for (const [error, fields] of results) {
      if (error) throw error
      const flat = Object.entries(fields as Record<string, string>).flat()
      if (flat.length > 0) events.push(fromFields(flat)) // delivered between the two reads
    }
    return events
  }

  pending(limit: number): Promise<PendingEvent[]> {
    return this.call(async () => this.events(await this.redis.zrange(this.key('age'), 0, limit - 1)))
  }

  deadLetters(limit: number): Promise<DeadLetter[]> {
    return this.call(
      async () =>
        (await this.events(await this.redis.zrange(this.key('dead'), 0, limit - 1))) as DeadLetter[],
    )
  }

  requeue(eventId: string, now: number): Promise<PendingEvent | undefined> {
    return this.call(async () => {
      const fields = await this.redis.hookRequeue(this.prefix, eventId, now)
      return fields.length === 0 ? undefined : fromFields(fields)
    })
  }

  async close(): Promise<void> {}
}
