import { createHash, type Hash } from 'node:crypto'
import { Worker } from 'node:worker_threads'
import type { FromWorker, ToWorker } from './hash-worker.js'
import { streamedBytes } from '../../collect.js'

/**
 * sha256 on the second core. Ingest and transfers would otherwise parse multipart, copy and hash (~1 s per
 * GiB here) on the same thread, one after the other. One worker serves every stream; blocks are moved to
 * it, not copied. It starts with the first block a stream hands it and stops when none has been open for a
 * while, so an idle server runs no helper thread. A stream that ends within INLINE_MAX never reaches it:
 * hashing a few KiB here costs less than the round trip, and a server that only ever takes small files
 * never starts it.
 */

/** Bytes one stream may have in flight to the worker before `update` makes its caller wait. */
const MAX_IN_FLIGHT = 4 * 1024 * 1024
const BLOCK = 1024 * 1024
const IDLE_STOP_MS = 10_000
/** A stream whose whole length is at most this is hashed on this thread when it ends (~0.15 ms at most). */
const INLINE_MAX = 64 * 1024
/** A small stream's first block: one socket read's worth, so most small bodies need no second. */
const SMALL_BLOCK = 16 * 1024
/** What a hash let go fails with: one error for all, not a stack trace taken per upload. */
const LET_GO = new Error('This hash was let go')

interface Stream {
  inFlight: number
  drained?: () => void
  digested?: (hex: string) => void
  /** Set when the worker died under this stream: every later call rejects with it. */
  failed?: Error
  failedWaiter?: (error: Error) => void
}

let worker: Worker | undefined
let idleTimer: NodeJS.Timeout | undefined
let nextId = 1
const streams = new Map<number, Stream>()
/** Blocks the worker has handed back, for reuse: allocating a fresh 1 MiB per block doubles peak memory. */
const spare: ArrayBuffer[] = []
const MAX_SPARE = 8

// A fresh block is not zero-filled (every byte of it that is hashed is written first).
const takeBlock = () => new Uint8Array(spare.pop() ?? (Buffer.allocUnsafeSlow(BLOCK).buffer as ArrayBuffer))

/** Kept for reuse if it is a whole block (a stream's small first block is not) and few are kept. */
function giveBack(block: ArrayBufferLike): void {
  if (block.byteLength === BLOCK && spare.length < MAX_SPARE) spare.push(block as ArrayBuffer)
}

/**
 * Built, the worker is plain .js. From source (tsx, vitest) it is a .ts file: the worker registers tsx's
 * loader itself first (a worker's `--import` in execArgv does not reach its module loader on Node 20).
 */
function spawn(): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./hash-worker.js', import.meta.url))
  // An eval'd worker resolves bare names from the working folder: the checkout, when running from source.
  const file = new URL('./hash-worker.ts', import.meta.url).href
  const boot = `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(file)}) })`
  return new Worker(boot, { eval: true })
}

function shared(): Worker {
  clearTimeout(idleTimer)
  if (worker) return worker
  const started = spawn()
  started.unref()
  started.on('message', (message: FromWorker) => {
    if ('block' in message) giveBack(message.block)
    const stream = streams.get(message.id)
    if (!stream) return
    if ('digest' in message) {
      streams.delete(message.id)
      stream.digested?.(message.digest)
    } else {
      stream.inFlight -= message.hashed
      if (stream.inFlight <= MAX_IN_FLIGHT / 2) stream.drained?.()
    }
    if (streams.size === 0) scheduleStop()
  })
  const died = (reason: string) => {
    if (worker !== started) return
    worker = undefined
    spare.length = 0
    // Its streams' hashes died with it: they can never be finished, so their uploads must fail, loudly.
    const error = new HashWorkerStopped(`The hashing worker stopped (${reason}); send the file again`)
    for (const [id, stream] of streams) {
      streams.delete(id)
      stream.failed = error
      stream.failedWaiter?.(error)
    }
  }
  started.on('error', (error) => died(error.message))
  started.on('exit', (code) => died(`exit code ${code}`))
  worker = started
  return started
}

function scheduleStop(): void {
  clearTimeout(idleTimer)
  idleTimer = setTimeout(() => {
    if (streams.size > 0 || !worker) return
    // Forgotten before it is told to end: a stream that starts while it ends gets a new worker, not this
    // dying one (whose exit fails only the streams it had, and it has none).
    const idle = worker
    worker = undefined
    spare.length = 0
    void idle.terminate()
  }, IDLE_STOP_MS).unref()
}

/** Stops the worker now (shutdown, or an idle server). Streams still open fail. */
export async function stopHashWorker(): Promise<void> {
  clearTimeout(idleTimer)
  await worker?.terminate()
}

/**
 * The hash for a transfer at `speed` bytes a second (0: unlimited). On the worker when its block fills within
 * a second: unlimited, the copy would otherwise wait for the hash on this thread. Slower, the hash is a small
 * share of this thread (about 1 % of a core at 1 MiB/s), and the worker's block (1 MiB of memory per
 * transfer, for as long as it runs) would cost more than it saves with a thousand at once.
 */
export const transferHash = (speed: number): RunningHash =>
  speed === 0 || speed >= BLOCK ? new OffThreadHash() : new InlineHash()

/** The worker died under a stream: its hash is lost (what it hashed must be hashed again to go on). */
export class HashWorkerStopped extends Error {
  override readonly name = 'HashWorkerStopped'
}

/** A running sha256 that a transfer carries across its runs (see PartHash): on the worker, or on this thread. */
export interface RunningHash {
  /** Adds bytes. They are taken before it returns: the caller may reuse its buffer at once. */
  update(bytes: Uint8Array): Promise<void>
  /** A second hash that goes on from here on its own (a part store's hash at a part's end). */
  copy(): RunningHash
  /** The hex digest of everything added; the hash is used up. */
  digest(): Promise<string>
  /** Waiting between runs, maybe for hours: holds as little here as it can. */
  park(): void
  /** Not needed any more: whatever it holds is let go. */
  drop(): void
}

/**
 * A node Hash as a RunningHash, on this thread: for a hash that already exists as one (storage's
 * verifiedPrefix after a restart or a recheck), whose state cannot be moved to the worker.
 */
export class InlineHash implements RunningHash {
  constructor(private readonly hash: Hash = createHash('sha256')) {}
  update(bytes: Uint8Array): Promise<void> {
    this.hash.update(bytes)
    return Promise.resolve()
  }
  copy(): InlineHash {
    return new InlineHash(this.hash.copy())
  }
  digest(): Promise<string> {
    return Promise.resolve(this.hash.digest('hex'))
  }
  park(): void {}
  drop(): void {}
}

/** A running sha256 computed off the main thread. Bytes given to `update` are copied at once. */
export class OffThreadHash implements RunningHash {
  private readonly id = nextId++
  private readonly stream: Stream = { inFlight: 0 }
  /**
   * The bytes not sent yet. While the stream is within INLINE_MAX it is a small block of its own, grown as
   * bytes come: a whole 1 MiB block for each of a thousand small uploads' hashes (three each: arrival,
   * transfer, check) was most of their garbage.
   */
  private block = new Uint8Array(0)
  private used = 0
  /** Bytes added so far. */
  size = 0

  /** False once its worker has died under it: nothing more can be added, and it must not be kept. */
  get usable(): boolean {
    return this.stream.failed === undefined
  }

  constructor() {
    streams.set(this.id, this.stream)
    // No worker yet: the first block sent starts it (see INLINE_MAX). A worker idling towards its stop stays.
    clearTimeout(idleTimer)
  }

  /** Adds bytes; resolves at once unless too many are still waiting for the worker. */
  async update(bytes: Uint8Array): Promise<void> {
    this.check()
    this.size += bytes.length
    let at = 0
    while (at < bytes.length) {
      if (this.used === this.block.length) this.grow(bytes.length - at)
      const n = Math.min(this.block.length - this.used, bytes.length - at)
      this.block.set(bytes.subarray(at, at + n), this.used)
      this.used += n
      at += n
      if (this.used === BLOCK) this.send()
    }
    if (this.stream.inFlight > MAX_IN_FLIGHT) await this.wait((done) => (this.stream.drained = done))
  }

  /** Room for `more` bytes: a bigger small block while the stream is within INLINE_MAX, else a whole one. */
  private grow(more: number): void {
    const want = this.used + more
    const next =
      this.size <= INLINE_MAX
        ? new Uint8Array(Math.min(INLINE_MAX, Math.max(want, 2 * this.block.length, SMALL_BLOCK)))
        : takeBlock()
    next.set(this.block.subarray(0, this.used))
    this.block = next
  }

  /** A second hash that goes on from here on its own; the worker copies its state, in order with the blocks. */
  copy(): OffThreadHash {
    this.check()
    // Bytes still in the block are part of the state copied: they go first.
    if (this.used > 0) this.send()
    const twin = new OffThreadHash()
    twin.size = this.size
    // Nothing added yet means nothing on the worker: the twin is simply empty too.
    if (this.size > 0) shared().postMessage({ id: this.id, copyTo: twin.id } satisfies ToWorker)
    return twin
  }

  /** The hex digest of everything added. */
  digest(): Promise<string> {
    this.check()
    if (this.size === this.used && this.size <= INLINE_MAX) {
      // Everything is still in the block: nothing was sent, so the worker knows nothing of this stream.
      const hex = createHash('sha256').update(this.block.subarray(0, this.used)).digest('hex')
      this.forget()
      return Promise.resolve(hex)
    }
    const done = this.wait<string>((resolve) => (this.stream.digested = resolve))
    this.send('digest')
    return done
  }

  /**
   * Between two requests of a resumable upload, which may be hours apart: what is buffered goes to the
   * worker and the block is given back, so a waiting hash holds a few hundred bytes there, not 1 MiB here.
   */
  park(): void {
    // Let go already (or its worker died): there is nothing left to keep.
    if (this.stream.failed) return
    if (this.used > 0) this.send()
    giveBack(this.block.buffer)
    this.block = new Uint8Array(0)
  }

  /** Forgets the stream (a failed upload, a transfer whose hash is not needed any more). */
  drop(): void {
    // Nothing more is taken; a caller waiting for room goes on (to find it let go), never waits forever:
    // the worker's answers for a stream it forgot reach nobody.
    this.stream.failed ??= LET_GO
    const waiting = this.stream.drained
    this.stream.drained = undefined
    waiting?.()
    giveBack(this.block.buffer)
    this.block = new Uint8Array(0)
    if (!streams.delete(this.id)) return
    worker?.postMessage({ id: this.id, done: 'drop' } satisfies ToWorker)
    if (streams.size === 0 && worker) scheduleStop()
  }

  /** Digested here: its block is given back, and the stream is done. */
  private forget(): void {
    giveBack(this.block.buffer)
    this.block = new Uint8Array(0)
    this.used = 0
    streams.delete(this.id)
    if (streams.size === 0 && worker) scheduleStop()
  }

  private check(): void {
    if (this.stream.failed) throw this.stream.failed
  }

  /** Waits for the worker, or rejects at once if it dies meanwhile. */
  private wait<T = void>(arm: (resolve: (value: T) => void) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.stream.failedWaiter = reject
      arm((value) => {
        this.stream.failedWaiter = undefined
        resolve(value)
      })
    })
  }

  /** Moves the block to the worker (no copy) and starts a new one. */
  private send(done?: 'digest'): void {
    this.check()
    const block = this.block.buffer as ArrayBuffer
    this.stream.inFlight += this.used
    streamedBytes(this.used)
    shared().postMessage({ id: this.id, block, length: this.used, done } satisfies ToWorker, [block])
    // The next is taken when bytes come for it (update).
    this.block = new Uint8Array(0)
    this.used = 0
  }
}
