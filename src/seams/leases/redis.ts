import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Redis } from 'ioredis'
import { unavailable } from '../../errors.js'
import { log } from '../../log.js'
import { asUnavailable } from '../redis-client.js'
import { EXCLUSIVE_WAIT_MS, LocalQueue, type ExclusiveWait, type Fence, type Leases } from './index.js'

/** A lease not renewed for this long is free for another instance to take (an instance that died). */
export const LEASE_MS = 5000
/** Leases are renewed this often, each renewal with the instance's heartbeat. */
const RENEW_EVERY_MS = 1000
/**
 * A holder stops writing this long before its lease could run out in Redis, counted from before the
 * renewal it last got an answer to: so by the time another instance can take the lease, this one has
 * stopped, even if its clock or its renewals lag.
 */
const SAFETY_MS = 1500

/** Takes a free lease, with a token one higher than any before it for this upload: `{instance}:{token}`. */
const ACQUIRE = `
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
local value = ARGV[1] .. ':' .. token
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return value
`
/** Renews each lease that is still ours; answers with the indexes (1-based) of those that are not. */
const RENEW = `
local lost = {}
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i + 1] then redis.call('PEXPIRE', KEYS[i], ARGV[1])
  else table.insert(lost, i) end
end
return lost
`
/**
 * An exclusive lock (see Leases.exclusive) that is not renewed for this long is free again: its instance
 * died, or stalled longer than this. It is renewed while its task runs, so a slow task keeps it.
 */
const EXCLUSIVE_MS = 10_000
/** Between attempts at a lock held elsewhere: short, as what holds it takes milliseconds. */
const EXCLUSIVE_RETRY_MS = [5, 10, 20, 40]
const RENEW_EXCLUSIVE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`

type Scripted = Redis & {
  leaseAcquire(...args: (string | number)[]): Promise<string | null>
  leaseRenew(count: number, ...args: (string | number)[]): Promise<number[]>
  leaseRelease(...args: (string | number)[]): Promise<number>
  exclusiveRenew(key: string, value: string, ms: number): Promise<number>
}

export class RedisLeases implements Leases {
  private readonly redis: Scripted
  private readonly fences = new Map<string, Fence>()
  private readonly lostListeners: ((id: string) => void)[] = []
  private readonly timer: NodeJS.Timeout
  private renewing = false
  private readonly queue = new LocalQueue()

  constructor(
    redis: Redis,
    readonly instance: string,
    private readonly prefix = 'uploads',
  ) {
    redis.defineCommand('leaseAcquire', { numberOfKeys: 2, lua: ACQUIRE })
    redis.defineCommand('leaseRenew', { lua: RENEW })
    redis.defineCommand('leaseRelease', { numberOfKeys: 1, lua: RELEASE })
    redis.defineCommand('exclusiveRenew', { numberOfKeys: 1, lua: RENEW_EXCLUSIVE })
    this.redis = redis as Scripted
    this.timer = setInterval(() => void this.renew(), RENEW_EVERY_MS).unref()
  }

  private key(id: string): string {
    return `${this.prefix}:lease:${id}`
  }

  private get instancesKey(): string {
    return `${this.prefix}:instances`
  }

  /** Starts this instance's heartbeat (liveInstances) before it serves anyone. */
  async start(): Promise<void> {
    await this.redis.zadd(this.instancesKey, Date.now(), this.instance)
  }

  heldIds(): Iterable<string> {
    return this.fences.keys()
  }

  held(id: string): Fence | undefined {
    const fence = this.fences.get(id)
    return fence && fence.deadline > performance.now() ? fence : undefined
  }

  async acquire(id: string): Promise<Fence | undefined> {
    const asked = performance.now()
    let value: string | null
    try {
      value = await this.redis.leaseAcquire(
        this.key(id),
        `${this.prefix}:fence:${id}`,
        this.instance,
        LEASE_MS,
      )
    } catch (error) {
      throw asUnavailable(error)
    }
    if (value === null) return undefined
    const fence = { id, value, deadline: asked + LEASE_MS - SAFETY_MS }
    this.fences.set(id, fence)
    return fence
  }

  async holder(id: string): Promise<string | undefined> {
    const [holder] = await this.holders([id])
    return holder
  }

  async holders(ids: readonly string[]): Promise<(string | undefined)[]> {
    if (ids.length === 0) return []
    try {
      const values = await this.redis.mget(ids.map((id) => this.key(id)))
      return values.map((value) => (value === null ? undefined : value.slice(0, value.lastIndexOf(':'))))
    } catch (error) {
      throw asUnavailable(error)
    }
  }

  async liveInstances(): Promise<Set<string>> {
    try {
      return new Set(await this.redis.zrangebyscore(this.instancesKey, Date.now() - LEASE_MS, '+inf'))
    } catch (error) {
      throw asUnavailable(error)
    }
  }

  async release(id: string): Promise<void> {
    const fence = this.fences.get(id)
    if (!fence) return
    this.fences.delete(id)
    await this.redis.leaseRelease(this.key(id), fence.value).catch(() => undefined) // it expires anyway
  }

  /**
   * Callers in this process queue in it first, so only one of them at a time asks Redis; the wait in the
   * queue counts towards `waitMs`. The lock is a key set only if absent, with an expiry, renewed while the
   * task runs and deleted after it only if it is still this caller's.
   */
  exclusive<T>(name: string, task: () => Promise<T>, wait: ExclusiveWait = {}): Promise<T> {
    const ms = wait.ms ?? EXCLUSIVE_WAIT_MS
    const deadline = performance.now() + ms
    const busy = () => unavailable(wait.busy ?? 'Busy at another instance; nothing was done, try again')
    return this.queue.run(
      name,
      async () => {
        const key = `${this.prefix}:x:${name}`
        const value = `${this.instance}:${randomBytes(9).toString('base64url')}`
        for (let attempt = 0; ; attempt++) {
          let taken: string | null
          try {
            taken = await this.redis.set(key, value, 'PX', EXCLUSIVE_MS, 'NX')
          } catch (error) {
            throw asUnavailable(error)
          }
          if (taken === 'OK') break
          if (performance.now() >= deadline) throw busy()
          await sleep(EXCLUSIVE_RETRY_MS[Math.min(attempt, EXCLUSIVE_RETRY_MS.length - 1)])
        }
        const renewing = setInterval(() => {
          this.redis.exclusiveRenew(key, value, EXCLUSIVE_MS).catch((error: unknown) => {
            log('warn', 'exclusive.renew_failed', { name, error: (error as Error).message })
          })
        }, EXCLUSIVE_MS / 3).unref()
        try {
          return await task()
        } finally {
          clearInterval(renewing)
          // If Redis is away the lock runs out by itself.
          await this.redis.leaseRelease(key, value).catch(() => undefined)
        }
      },
      { ms, timedOut: busy },
    )
  }

  onLost(listener: (id: string) => void): void {
    this.lostListeners.push(listener)
  }

  /** Renews every lease held, and the heartbeat; those no longer ours (or past their deadline) are lost. */
  private async renew(): Promise<void> {
    if (this.renewing) return
    this.renewing = true
    const asked = performance.now()
    const held = [...this.fences.values()]
    try {
      const pipeline = this.redis.pipeline()
      pipeline.zadd(this.instancesKey, Date.now(), this.instance)
      pipeline.zremrangebyscore(this.instancesKey, '-inf', Date.now() - 60 * LEASE_MS)
      const results = await pipeline.exec()
      const failed = results?.find(([error]) => error)
      if (failed?.[0]) throw failed[0]
      if (held.length > 0) {
        const lost = new Set(
          await this.redis.leaseRenew(
            held.length,
            ...held.map((f) => this.key(f.id)),
            LEASE_MS,
            ...held.map((f) => f.value),
          ),
        )
        for (const [i, fence] of held.entries()) {
          if (this.fences.get(fence.id) !== fence) continue // released meanwhile
          if (lost.has(i + 1)) this.lose(fence.id, 'taken over')
          else this.fences.set(fence.id, { ...fence, deadline: asked + LEASE_MS - SAFETY_MS })
        }
      }
    } catch (error) {
      // Redis away: leases stay held until their deadlines, so a short outage interrupts nothing.
      log('warn', 'lease.renew_failed', { held: held.length, error: (error as Error).message })
      for (const fence of held)
        if (fence.deadline <= performance.now()) this.lose(fence.id, 'not renewed in time')
    } finally {
      this.renewing = false
    }
  }

  private lose(id: string, why: string): void {
    this.fences.delete(id)
    log('warn', 'lease.lost', { id, instance: this.instance, why })
    for (const listener of this.lostListeners) listener(id)
  }

  async close(): Promise<void> {
    clearInterval(this.timer)
    await Promise.all([...this.fences.keys()].map((id) => this.release(id)))
    await this.redis.zrem(this.instancesKey, this.instance).catch(() => undefined)
  }
}
