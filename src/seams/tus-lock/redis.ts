import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Redis } from 'ioredis'
import { ERRORS } from '@tus/utils'
import { log } from '../../log.js'
import type { Lock, Locker, RequestRelease } from './index.js'

/** A lock not renewed for this long is free again (its instance died mid-request). */
const LOCK_MS = 10_000
const RENEW_EVERY_MS = 3_000
/** How long a request waits for another to let go of an upload before it gives up (@tus/server's default). */
const ACQUIRE_TIMEOUT_MS = 30_000
const RETRY_MS = 50

const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`

type Scripted = Redis & {
  tusLockRenew(key: string, value: string, ms: number): Promise<number>
  tusLockRelease(key: string, value: string): Promise<number>
}

/**
 * @tus/server's Locker over the Redis that instances share: one request at a time writes an upload,
 * whichever instance it reached. A request that wants a lock someone holds asks the holder to let go
 * (a message every instance hears; the one holding it calls its request's release), then waits for it.
 * A lock is renewed while held and runs out if its instance dies, so a dead instance blocks no one for long.
 */
export class RedisLocker implements Locker {
  private readonly redis: Scripted
  /** Locks held by requests in this process: who to ask when another request wants one. */
  readonly held = new Map<string, { value: string; release: RequestRelease }>()

  constructor(
    redis: Redis,
    private readonly subscriber: Redis,
    private readonly prefix = 'uploads',
  ) {
    redis.defineCommand('tusLockRenew', { numberOfKeys: 1, lua: RENEW })
    redis.defineCommand('tusLockRelease', { numberOfKeys: 1, lua: RELEASE })
    this.redis = redis as Scripted
    subscriber.on('message', (channel: string, id: string) => {
      if (channel !== this.channel) return
      const lock = this.held.get(id)
      if (lock) void Promise.resolve(lock.release()).catch(() => undefined)
    })
  }

  get channel(): string {
    return `${this.prefix}:tus-release`
  }

  key(id: string): string {
    return `${this.prefix}:tus-lock:${id}`
  }

  async start(): Promise<void> {
    await this.subscriber.subscribe(this.channel)
  }

  newLock(id: string): Lock {
    return new RedisLock(this, this.redis, id)
  }
}

class RedisLock implements Lock {
  private readonly value = randomBytes(12).toString('base64url')
  /** Renews this lock while it is held: its own timer, which no other lock's bookkeeping can orphan. */
  private renewing: NodeJS.Timeout | undefined

  constructor(
    private readonly locker: RedisLocker,
    private readonly redis: Scripted,
    private readonly id: string,
  ) {}

  async lock(signal: AbortSignal, requestRelease: RequestRelease): Promise<void> {
    const key = this.locker.key(this.id)
    const deadline = performance.now() + ACQUIRE_TIMEOUT_MS
    let asked = false
    while (!signal.aborted && performance.now() < deadline) {
      const taken = await this.redis.set(key, this.value, 'PX', LOCK_MS, 'NX')
      if (taken === 'OK') {
        this.renewing = setInterval(() => {
          this.redis
            .tusLockRenew(key, this.value, LOCK_MS)
            .catch((error: unknown) =>
              log('warn', 'tus.lock_renew_failed', { id: this.id, error: (error as Error).message }),
            )
        }, RENEW_EVERY_MS).unref()
        this.locker.held.set(this.id, { value: this.value, release: requestRelease })
        return
      }
      // Held: ask its holder (wherever it is) to let go, once, then wait for it.
      if (!asked) {
        asked = true
        await this.redis.publish(this.locker.channel, this.id)
      }
      await sleep(RETRY_MS, undefined, { signal }).catch(() => undefined)
    }
    throw ERRORS.ERR_LOCK_TIMEOUT
  }

  async unlock(): Promise<void> {
    clearInterval(this.renewing)
    this.renewing = undefined
    if (this.locker.held.get(this.id)?.value === this.value) this.locker.held.delete(this.id)
    // If Redis is away the lock runs out by itself.
    await this.redis.tusLockRelease(this.locker.key(this.id), this.value).catch(() => undefined)
  }
}
