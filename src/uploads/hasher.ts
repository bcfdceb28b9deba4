import { randomUUID } from 'node:crypto'
import { Worker } from 'node:worker_threads'

/**
 * sha256 on the second core. Ingest would otherwise parse multipart and hash (~1 s per GiB here) on the
 * same thread, one after the other. One worker serves every stream; blocks are moved to it, not copied.
 */
const WORKER = `
const { parentPort } = require('node:worker_threads')
const { createHash } = require('node:crypto')
const hashes = new Map()
parentPort.on('message', ({ id, block, length, done }) => {
  if (done === 'drop') return void hashes.delete(id)
  let hash = hashes.get(id)
  if (!hash) hashes.set(id, (hash = createHash('sha256')))
  if (length > 0) hash.update(new Uint8Array(block, 0, length))
  if (done === 'digest') {
    hashes.delete(id)
    parentPort.postMessage({ id, digest: hash.digest('hex') })
  } else parentPort.postMessage({ id, hashed: length, block }, [block])
})
`

/** Bytes one stream may have in flight to the worker before `update` makes its caller wait. */
const MAX_IN_FLIGHT = 4 * 1024 * 1024
const BLOCK = 1024 * 1024

interface Pending {
  inFlight: number
  drained?: () => void
  digested?: (hex: string) => void
}

let worker: Worker | undefined
const streams = new Map<string, Pending>()
/** Blocks the worker has handed back, for reuse: allocating a fresh 1 MiB per block doubles peak memory. */
const spare: ArrayBuffer[] = []
const MAX_SPARE = 8

const takeBlock = () => new Uint8Array(spare.pop() ?? new ArrayBuffer(BLOCK))

function shared(): Worker {
  if (worker) return worker
  const started = new Worker(WORKER, { eval: true })
  started.unref()
  started.on('message', (message: { id: string; hashed?: number; digest?: string; block?: ArrayBuffer }) => {
    if (message.block && spare.length < MAX_SPARE) spare.push(message.block)
    const pending = streams.get(message.id)
    if (!pending) return
    if (message.digest !== undefined) {
      streams.delete(message.id)
      pending.digested?.(message.digest)
    } else {
      pending.inFlight -= message.hashed ?? 0
      if (pending.inFlight <= MAX_IN_FLIGHT / 2) pending.drained?.()
    }
  })
  // A worker that dies takes its streams with it: their digests will never come, so their uploads must fail.
  started.on('error', () => undefined)
  started.on('exit', () => {
    worker = undefined
    for (const [id, pending] of streams) {
      streams.delete(id)
      pending.digested?.('')
      pending.drained?.()
    }
  })
  worker = started
  return started
}

/** A running sha256 computed off the main thread. */
export class OffThreadHash {
  private readonly id = randomUUID()
  private readonly pending: Pending = { inFlight: 0 }
  private block = takeBlock()
  private used = 0

  constructor() {
    streams.set(this.id, this.pending)
  }

  /** Adds bytes; resolves at once unless too many are still waiting for the worker. */
  async update(bytes: Uint8Array): Promise<void> {
    let at = 0
    while (at < bytes.length) {
      const n = Math.min(BLOCK - this.used, bytes.length - at)
      this.block.set(bytes.subarray(at, at + n), this.used)
      this.used += n
      at += n
      if (this.used === BLOCK) this.send()
    }
    if (this.pending.inFlight > MAX_IN_FLIGHT) {
      await new Promise<void>((resolve) => (this.pending.drained = resolve))
      this.pending.drained = undefined
    }
  }

  /** The hex digest of everything added; an empty string if the worker died. */
  digest(): Promise<string> {
    const done = new Promise<string>((resolve) => (this.pending.digested = resolve))
    this.send('digest')
    return done
  }

  /** Forgets the stream (a failed upload). */
  drop(): void {
    streams.delete(this.id)
    shared().postMessage({ id: this.id, done: 'drop' })
  }

  /** Moves the block to the worker (no copy) and starts a new one. */
  private send(done?: 'digest'): void {
    const block = this.block.buffer
    this.pending.inFlight += this.used
    shared().postMessage({ id: this.id, block, length: this.used, done }, [block])
    this.block = done ? new Uint8Array(0) : takeBlock()
    this.used = 0
  }
}
