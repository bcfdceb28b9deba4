/**
 * The hashing worker (see hasher.ts): sha256 of ingest streams on the second core. Messages carry whole
 * blocks, moved (not copied) in and handed back for reuse.
 */
import { createHash, type Hash } from 'node:crypto'
import { parentPort } from 'node:worker_threads'

export type ToWorker =
  | { id: number; block: ArrayBuffer; length: number; done?: 'digest' }
  | { id: number; done: 'drop' }
  | { id: number; copyTo: number }

export type FromWorker = { id: number; hashed: number; block: ArrayBuffer } | { id: number; digest: string }

const port = parentPort
if (!port) throw new Error('hash-worker.ts runs as a worker thread')

const hashes = new Map<number, Hash>()
port.on('message', (message: ToWorker) => {
  if ('copyTo' in message) {
    // A stream that has sent nothing yet has no hash here: its copy starts empty too.
    return void hashes.set(message.copyTo, hashes.get(message.id)?.copy() ?? createHash('sha256'))
  }
  if (message.done === 'drop') return void hashes.delete(message.id)
  const { id, block, length, done } = message
  let hash = hashes.get(id)
  if (!hash) hashes.set(id, (hash = createHash('sha256')))
  if (length > 0) hash.update(new Uint8Array(block, 0, length))
  if (done === 'digest') {
    hashes.delete(id)
    port.postMessage({ id, digest: hash.digest('hex') } satisfies FromWorker)
  } else port.postMessage({ id, hashed: length, block } satisfies FromWorker, [block])
})
