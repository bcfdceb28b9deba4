import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll } from 'vitest'
import { LocalStorage } from '../src/seams/storage/local.js'
import { S3Storage } from '../src/seams/storage/s3.js'
import { storageContract } from './contracts/storage.js'
import { MOTO_CREDENTIALS, MOTO_REGION, startMoto, type TestMoto } from './support/moto.js'

/** The storage seam's contract over each implementation: a local folder, and an S3 bucket (moto). */
storageContract('local folder', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'storage-contract-'))
  return {
    open: async () => new LocalStorage(dir, 'contract'),
    dispose: () => rm(dir, { recursive: true, force: true }),
  }
})

// One moto for the file (it takes seconds to start); each backing is a bucket of its own in it.
let moto: TestMoto | undefined
beforeAll(async () => {
  // The SDK's default chain reads these, as it would in production.
  process.env.AWS_ACCESS_KEY_ID = MOTO_CREDENTIALS.accessKeyId
  process.env.AWS_SECRET_ACCESS_KEY = MOTO_CREDENTIALS.secretAccessKey
  moto = await startMoto()
}, 30_000)
afterAll(async () => {
  await moto?.stop()
})

storageContract('S3 bucket (moto)', async () => {
  if (!moto) throw new Error('moto did not start')
  const bucket = await moto.createBucket()
  const opened: S3Storage[] = []
  return {
    open: async () => {
      const storage = new S3Storage(
        {
          bucket,
          endpoint: moto!.endpoint,
          region: MOTO_REGION,
          prefix: 'contract/',
          forcePathStyle: true,
          timeoutMs: 10_000,
          presignMs: undefined,
        },
        { instance: 'contract' },
      )
      opened.push(storage)
      return storage
    },
    dispose: async () => {
      for (const storage of opened) storage.close()
    },
  }
})
