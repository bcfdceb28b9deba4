import type { Redis } from 'ioredis'
import type { Locker } from '@tus/utils'
import { log } from './log.js'
import { connectRedis, ready } from './redis.js'
import { RedisLocker } from './tus/redis-locker.js'
import type { Bus } from './uploads/bus.js'
import type { Leases } from './uploads/lease.js'
import { RedisBus } from './uploads/redis-bus.js'
import { RedisLeases } from './uploads/redis-lease.js'
import { RedisStore } from './uploads/redis-store.js'
import type { RecordStore } from './uploads/records.js'

/** The three shared seams of one instance among several, over one Redis (see DESIGN in README). */
export interface Cluster {
  instance: string
  store: RecordStore
  leases: Leases
  bus: Bus
  /** tus: one request at a time writes an upload, whichever instance it reached. */
  locker: Locker
  /** Why this instance cannot serve now (Redis unreachable), or undefined. */
  unhealthy(): Promise<string | undefined>
  close(): Promise<void>
}

const PING_TIMEOUT_MS = 1000

export async function joinCluster(url: string, instance: string): Promise<Cluster> {
  const redis = connectRedis(url, `uploads:${instance}`)
  // Pub/sub needs a connection of its own (one that subscribes can do nothing else).
  const subscriber: Redis = connectRedis(url, `uploads:${instance}:sub`)
  await ready(redis, url)
  await ready(subscriber, url)
  const leases = new RedisLeases(redis, instance)
  const bus = new RedisBus(redis, subscriber, instance, () => leases.heldIds())
  const locker = new RedisLocker(redis, subscriber)
  await leases.start()
  await bus.start()
  await locker.start()
  return {
    instance,
    store: new RedisStore(redis),
    leases,
    bus,
    locker,
    async unhealthy() {
      let timer: NodeJS.Timeout | undefined
      try {
        await Promise.race([
          redis.ping(),
          new Promise(
            (_, reject) => (timer = setTimeout(() => reject(new Error('no answer')), PING_TIMEOUT_MS)),
          ),
        ])
        return undefined
      } catch (error) {
        // Said to anyone who asks /readyz: not Redis's address (the log has the error).
        log('warn', 'redis.ping_failed', { error })
        return 'Redis is unreachable'
      } finally {
        clearTimeout(timer)
      }
    },
    async close() {
      await leases.close()
      await bus.close()
      await redis.quit().catch(() => redis.disconnect())
    },
  }
}
