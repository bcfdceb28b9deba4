import { memoryLocker } from '../src/seams/tus-lock/memory.js'
import { RedisLocker } from '../src/seams/tus-lock/redis.js'
import { tusLockContract } from './contracts/tus-lock.js'
import { redisForSeams } from './support/seams.js'

const redis = redisForSeams()

tusLockContract('in one process (@tus/server’s MemoryLocker)', async () => {
  const locker = await memoryLocker()
  return [locker, locker]
})

tusLockContract('Redis (two instances)', async () => {
  const prefix = redis.prefix('lk')
  const instance = async () => {
    const locker = new RedisLocker(await redis.connection(), await redis.connection(), prefix)
    await locker.start()
    return locker
  }
  return [await instance(), await instance()]
})
