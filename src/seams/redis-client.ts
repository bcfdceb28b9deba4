import { Redis } from 'ioredis'
import { ServiceError } from '../errors.js'
import { log } from '../log.js'

/** A Redis command that gets no answer in this long fails (the request it serves gets 503). */
const COMMAND_TIMEOUT_MS = 2000

/**
 * A connection to the Redis that instances share. A command sent while Redis is away fails at once, never
 * queued (`enableOfflineQueue: false`): the request it serves answers 503 within moments instead of
 * hanging, and transfers carry on. Reconnecting goes on forever, a second apart at most.
 */
export function connectRedis(url: string, name: string): Redis {
  const redis = new Redis(url, {
    connectionName: name,
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: COMMAND_TIMEOUT_MS,
    retryStrategy: (attempt) => Math.min(100 * attempt, 1000),
  })
  let down = false
  // Without a listener ioredis prints each failed reconnect; one line when it goes, one when it is back.
  redis.on('error', (error: Error) => {
    if (down) return
    down = true
    log('error', 'redis.unreachable', { connection: name, error: error.message })
  })
  redis.on('ready', () => {
    if (!down) return
    down = false
    log('info', 'redis.reachable', { connection: name })
  })
  return redis
}

/** Connects within `timeoutMs`, or says why not in a line an operator can act on. */
export async function ready(redis: Redis, url: string, timeoutMs = 10_000): Promise<void> {
  const safe = url.replace(/\/\/[^@/]*@/, '//***@') // no password in a message
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([
      redis.connect(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer in ${timeoutMs / 1000} s`)), timeoutMs)
      }),
    ])
  } catch (error) {
    redis.disconnect()
    throw new RedisUnreachableError(`REDIS_URL ${safe} is not reachable: ${(error as Error).message}`)
  } finally {
    clearTimeout(timer)
  }
}

export class RedisUnreachableError extends Error {
  override readonly name = 'RedisUnreachableError'
}

/** A failure to talk to Redis, as clients should see it: the server cannot do it now (503), try again. */
export function asUnavailable(error: unknown): unknown {
  if (error instanceof ServiceError) return error
  const message = error instanceof Error ? error.message : String(error)
  return new ServiceError(
    'UNAVAILABLE',
    `The shared state (Redis) cannot be reached now: ${message}; try again`,
  )
}
