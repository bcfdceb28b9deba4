import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LocalStorage } from '../src/seams/storage/local.js'
import { storageContract } from './contracts/storage.js'
import { motoForTests } from './support/moto.js'

/** The storage seam's contract over each implementation: a local folder, and an S3 bucket (moto). */
storageContract('local folder', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'storage-contract-'))
  return {
    open: async () => new LocalStorage(dir, 'contract'),
    dispose: () => rm(dir, { recursive: true, force: true }),
  }
})

// One moto for the file (it takes seconds to start); each backing is a bucket of its own in it.
const moto = motoForTests()

storageContract('S3 bucket (moto)', async () => {
  const bucket = await moto().createBucket()
  return {
    // Closed when moto stops, after the file's tests.
    open: async () => moto().storage(bucket, 'contract/', {}, { instance: 'contract' }),
    dispose: async () => undefined,
  }
})
