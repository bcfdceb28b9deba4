import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Redis } from 'ioredis'
import { afterAll, beforeAll } from 'vitest'
import { connectRedis, ready } from '../../src/seams/redis-client.js'
import { startRedis, type TestRedis } from './redis.js'

/**
 * A real redis-server for a test file of seams, started before its tests and stopped after them, with the
 * server's own connections to it (connectRedis: as an instance connects) and a fresh key prefix for each
 * seam made, so no two share state unless a test means them to.
 */
export function redisForSeams() {
  let redis: TestRedis | undefined
  const connections: Redis[] = []
  let prefixes = 0
  beforeAll(async () => {
    redis = await startRedis()
  })
  afterAll(async () => {
    for (const connection of connections.splice(0)) connection.disconnect()
    await redis?.stop()
  })
  return {
    async connection(): Promise<Redis> {
      if (!redis) throw new Error('redis-server has not started')
      const client = connectRedis(redis.url, `test-${connections.length}`)
      connections.push(client)
      await ready(client, redis.url)
      return client
    },
    prefix: (name: string) => `${name}${++prefixes}`,
  }
}

/** A scratch folder per call, removed after the file's tests. */
export function scratchFolders() {
  const dirs: string[] = []
  afterAll(async () => {
    for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true })
  })
  return async (name: string): Promise<string> => {
    const dir = await mkdtemp(join(tmpdir(), `${name}-`))
    dirs.push(dir)
    return dir
  }
}
