import type { Redis } from 'ioredis'
import { log } from '../log.js'
import { RedisBus } from './bus/redis.js'
import { RedisLeases } from './leases/redis.js'
import { RedisOutbox } from './outbox/redis.js'
import { RedisStore } from './records/redis.js'
import { connectRedis, ready } from './redis-client.js'
import { RedisLocker } from './tus-lock/redis.js'

const PING_TIMEOUT_MS = 1000

/**
 * The seams of one instance among several, over the Redis they share: records, leases, the bus and tus's
 * lock (the folder and its storage are opened by openSeams, see index.ts). Loaded only in this mode, so an
 * embedded server never loads Redis's client.
 */
export async function joinShared(url: string, instance: string) {
  const redis = connectRedis(url, `uploads:${instance}`)
  // Pub/sub needs a connection of its own (one that subscribes can do nothing else).
  const subscriber: Redis = connectRedis(url, `uploads:${instance}:sub`)
  await ready(redis, url)
  await ready(subscriber, url)
  const records = new RedisStore(redis)
  const leases = new RedisLeases(redis, instance)
  const bus = new RedisBus(redis, subscriber, instance, () => leases.heldIds())
  const locker = new RedisLocker(redis, subscriber)
  await records.start()
  await leases.start()
  await bus.start()
  await locker.start()
  return {
    mode: 'shared' as const,
    records,
    outbox: new RedisOutbox(redis, instance),
    leases,
    bus,
    tusLocker: async () => locker,
    unhealthy: () => unhealthy(redis),
    async close() {
      await records.close()
      await leases.close()
      await bus.close()
      await redis.quit().catch(() => redis.disconnect())
    },
  }
}

async function unhealthy(redis: Redis): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([
      redis.ping(),
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('no answer')), PING_TIMEOUT_MS))),
    ])
    return undefined
  } catch (error) {
    // Said to anyone who asks /readyz: not Redis's address (the log has the error).
    log('warn', 'redis.ping_failed', { error })
    return 'Redis is unreachable'
  } finally {
    clearTimeout(timer)
  }
}
