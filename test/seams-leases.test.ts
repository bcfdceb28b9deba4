import { describe, expect, it } from 'vitest'
import type { Leases } from '../src/seams/leases/index.js'
import { LocalLeases } from '../src/seams/leases/local.js'
import { RedisLeases } from '../src/seams/leases/redis.js'
import { leasesContract } from './contracts/leases.js'
import { redisForSeams } from './support/seams.js'

const redis = redisForSeams()

leasesContract('embedded (this process owns every lease)', async () => ({ leases: new LocalLeases() }))

leasesContract('Redis', async () => {
  const prefix = redis.prefix('leases')
  const client = await redis.connection()
  const instance = async (name: string) => {
    const leases = new RedisLeases(await redis.connection(), name, prefix)
    await leases.start()
    return leases
  }
  return {
    leases: await instance('instance-a'),
    other: await instance('instance-b'),
    // As if its lease had run out and another instance had taken it.
    takeOver: async (id) => void (await client.set(`${prefix}:lease:${id}`, 'instance-b:99')),
  }
})

describe('Leases (embedded)', () => {
  it('this process holds every lease, asked or not, with no deadline', async () => {
    const leases: Leases = new LocalLeases()
    expect(await leases.acquire('a')).toMatchObject({ id: 'a', deadline: Infinity })
    expect(leases.held('anything')).toBeDefined()
    expect(await leases.holder('a')).toBe(leases.instance)
  })
})
