import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LocalStorage } from '../src/seams/storage/local.js'
import { storageContract } from './contracts/storage.js'

/** The storage seam's contract over each implementation (S3 joins it with issue 21). */
storageContract('local folder', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'storage-contract-'))
  return {
    open: async () => new LocalStorage(dir, 'contract'),
    dispose: () => rm(dir, { recursive: true, force: true }),
  }
})
