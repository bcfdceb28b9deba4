import { setTimeout as sleep } from 'node:timers/promises'
import { InternalFault } from '../../errors.js'
import { log } from '../../log.js'
import {
  StorageUnavailable,
  TargetChangedError,
  type StagedReader,
  type Storage,
  type TransferMark,
  type TransferSink,
  type TransferTarget,
} from '../../seams/storage/index.js'
import { transferHash, type RunningHash } from './hasher.js'
import type { Flow, Scheduler } from './scheduler.js'

export interface TransferJob {
  /** Where the staged bytes are read from and the transfer's bytes go. */
  storage: Storage
  upload: TransferTarget
  /** Bytes before it are in storage already. */
  offset: number
  /**
   * How storage was left with the bytes before `offset` (by the last run, or as they were verified). It must
   * still be exactly that when the run opens it, or the run writes nothing (TargetChangedError).
   */
  expected?: TransferMark
  /** Bytes per second; 0 means unlimited. */
  speed: number
  /** Paces this transfer among every other (and under the server-wide cap). */
  scheduler: Scheduler
  /**
   * sha256 of the bytes in storage before `offset`. Every chunk written is added, so at the end it is the
   * hash of exactly the bytes written, in order. A run that rejects leaves it unusable.
   */
  hash: RunningHash
  /** Aborting stops the copy after the chunk in flight; `done` then resolves with the offset kept. */
  signal: AbortSignal
  /** Called after every chunk with the bytes written. Runs on the hot path: keep it cheap. */
  onProgress: (written: number) => void
  /** Asked last before every write; false stops the copy at once with a LeaseLostError (see lease.ts). */
  mayWrite?: () => boolean
  /** How the run left storage when it stopped without error (paused, or whole): for the next run. */
  onStop?: (stop: Stopped) => void
}

/** Where a run that stopped without error left its transfer. */
export interface Stopped {
  /** Bytes storage acknowledged (see TransferSink): the next run goes on from here. */
  acknowledged: number
  /** How storage was left, for the next run's `expected`. */
  mark?: TransferMark
  /**
   * sha256 of the first `acknowledged` bytes: the job's hash when every byte written was acknowledged, a copy
   * taken at the last part's end otherwise; none when the run cannot say (the next run verifies again).
   */
  hash?: RunningHash
}

/** The transfer's owner may no longer write (its lease ran out): stopped before the next write. */
export class LeaseLostError extends Error {
  override readonly name = 'LeaseLostError'
}

export { TargetChangedError }

const isAbort = (error: unknown) => error instanceof Error && error.name === 'AbortError'

/**
 * One run of a transfer, from a start or resume to its end, pause, cancel or failure: the paced copy from
 * storage's staged bytes into its transfer sink. It knows nothing of files or objects: storage checks and
 * makes durable what it writes (see TransferSink), this paces, hashes and counts.
 */
export class Transfer {
  /** Resolves with the bytes acknowledged: `total` when done (then durable in storage), less when stopped. */
  readonly done: Promise<number>
  private readonly flow: Flow

  constructor(private readonly job: TransferJob) {
    this.flow = job.scheduler.flow(job.speed)
    this.done = this.run().finally(() => this.flow.close())
  }

  /** Takes effect at once: a chunk waiting for its turn is planned again at the new speed. */
  setSpeed(speed: number): void {
    this.flow.setRate(speed)
  }

  private async run(): Promise<number> {
    const { job } = this
    const linkStaged = job.storage.linkStaged?.bind(job.storage)
    if (job.offset === 0 && this.flow.unlimited && linkStaged) {
      const linked = await this.link(linkStaged)
      if (linked !== undefined) return linked
    }
    const total = job.upload.totalSize
    const source = await job.storage.openStaged(job.upload.id)
    // The next chunk is read into the other buffer while this one is written and hashed, so reads never wait
    // for writes: an unlimited copy then runs at the pace of the slower of storage and sha256.
    const ahead = new ReadAhead(source, total)
    try {
      let sink: TransferSink
      try {
        sink = await this.patiently('open', () =>
          job.storage.openTransfer(job.upload, { offset: job.offset, mark: job.expected }, job.signal),
        )
      } catch (error) {
        if (!isAbort(error)) throw error
        // Stopped while storage was away: nothing was written, storage is as the last run left it.
        job.onStop?.({ acknowledged: job.offset, mark: job.expected, hash: job.hash })
        return job.offset
      }
      // The hash at each part's end, until storage acknowledges the part: a stop part-way goes on from there.
      const parts = new Map<number, RunningHash>()
      try {
        const offset = await this.copy(sink, ahead, parts)
        const { acknowledged, mark } = await sink.end(offset === total).catch((error: unknown) => {
          throw this.changed(error)
        })
        const hash = acknowledged === offset ? job.hash : parts.get(acknowledged)
        parts.delete(acknowledged)
        job.onStop?.({ acknowledged, mark, hash })
        return acknowledged
      } finally {
        for (const part of parts.values()) part.drop()
        await sink.close()
      }
    } finally {
      await ahead.close()
    }
  }

  /**
   * Nothing paces the transfer, so it need not be a copy: the staged bytes are read once and hashed (as a
   * copy would hash what it writes, so completion checks them against the sha256 taken on arrival), then
   * storage makes them the transfer as they are (Storage.linkStaged). A pause or cancel meanwhile stops it
   * with nothing written; a speed or a cap set meanwhile, or storage that cannot link, leaves it to the copy
   * (undefined), from the first byte.
   */
  private async link(linkStaged: NonNullable<Storage['linkStaged']>): Promise<number | undefined> {
    const { job } = this
    const total = job.upload.totalSize
    const check = transferHash(0)
    // Stopped with nothing written: the transfer is as it was, and its hash (of no bytes) goes on.
    const stopped = () => {
      check.drop()
      job.onStop?.({ acknowledged: 0, mark: job.expected, hash: job.hash })
      return 0
    }
    let mark: TransferMark | undefined
    try {
      if (!(await this.verify(check))) {
        if (job.signal.aborted) return stopped()
        check.drop()
        return undefined
      }
      if (job.mayWrite && !job.mayWrite())
        throw new LeaseLostError('lease lost before the staged bytes were linked')
      mark = await this.patiently('link', () => linkStaged(job.upload))
    } catch (error) {
      if (isAbort(error)) return stopped()
      check.drop()
      throw error
    }
    if (mark === undefined) {
      check.drop()
      return undefined
    }
    job.onProgress(total)
    job.onStop?.({ acknowledged: total, mark, hash: check })
    return total
  }

  /** Reads and hashes every staged byte; false if stopped, or paced, before the last. */
  private async verify(check: RunningHash): Promise<boolean> {
    const { job, flow } = this
    const total = job.upload.totalSize
    const ahead = new ReadAhead(await job.storage.openStaged(job.upload.id), total)
    let offset = 0
    try {
      while (offset < total) {
        if (job.signal.aborted || !flow.unlimited) return false
        const at = offset
        const chunk = await this.patiently('read', () => ahead.take(at, Math.min(flow.chunk(), total - at)))
        const hashed = check.update(chunk)
        offset += chunk.length
        ahead.prefetch(offset, flow.chunk())
        await hashed
      }
      return !job.signal.aborted
    } finally {
      await ahead.close()
    }
  }

  /**
   * Copies from `offset` at the current speed, in chunks sized for it, never one across a part's end. I/O
   * errors reject; a pause or cancel (abort) ends it with the bytes written so far.
   */
  private async copy(sink: TransferSink, ahead: ReadAhead, parts: Map<number, RunningHash>): Promise<number> {
    const { job, flow } = this
    const total = job.upload.totalSize
    let offset = job.offset
    if (sink.partSize > 0) parts.set(offset, job.hash.copy())
    const guard = () => {
      if (job.mayWrite && !job.mayWrite()) throw new LeaseLostError(`lease lost at byte ${offset}`)
    }
    try {
      let first = true
      while (offset < total && !job.signal.aborted) {
        // The first chunk is the head start, so the first byte lands at once without putting the curve ahead
        // (sized now, not when the run began: a cap may have come since, see Flow.head); then a chunk, or
        // more while the flow makes up a stall (see Flow.want).
        let want = Math.min(first ? flow.head : flow.want(), total - offset)
        if (sink.partSize > 0) want = Math.min(want, sink.partSize - (offset % sink.partSize))
        first = false
        // False: the speed (or the cap) changed while this chunk waited, so it is planned again.
        if (!(await flow.grant(want, job.signal))) continue
        const at = offset
        const chunk = await this.patiently('read', () => ahead.take(at, want))
        const written = sink.write(chunk, offset, guard)
        // Hashed on the worker while storage takes it (the chunk is copied to it before update returns, so
        // the buffer is free for the read after next). If the write fails, the run rejects, hash and all; if
        // it succeeds, exactly these bytes are stored at this offset.
        const hashed = job.hash.update(chunk)
        const end = offset + chunk.length
        ahead.prefetch(end, flow.chunk())
        // Both settle before the run goes on or stops: no write is left in flight under a closing file.
        const [write, hash] = await Promise.allSettled([written, hashed])
        if (write.status === 'rejected') throw write.reason
        if (hash.status === 'rejected') throw hash.reason
        if (sink.partSize > 0 && (end % sink.partSize === 0 || end === total)) {
          parts.set(end, job.hash.copy())
          for (const [at, part] of parts)
            if (at < sink.acknowledged()) {
              part.drop()
              parts.delete(at)
            }
        }
        offset = end
        job.onProgress(offset)
      }
    } catch (error) {
      // Paused or canceled while a chunk waited for its turn: stopped, like a stop between chunks.
      if (!isAbort(error)) throw this.changed(error)
    }
    return offset
  }

  /**
   * Storage away (StorageUnavailable: no answer, busy) is waited out, trying again after 0.5 s, doubling to
   * 8 s, until it answers or the run is stopped (then an AbortError, handled as a stop). Anything else it
   * says (refused, changed) is the run's end.
   */
  private async patiently<T>(what: string, attempt: () => Promise<T>): Promise<T> {
    for (let tries = 0; ; tries++) {
      try {
        return await attempt()
      } catch (error) {
        if (!(error instanceof StorageUnavailable)) throw error
        log('warn', 'upload.storage_unavailable', {
          id: this.job.upload.id,
          step: what,
          tries: tries + 1,
          reason: error.message,
        })
        await sleep(Math.min(500 * 2 ** tries, 8000), undefined, { signal: this.job.signal })
      }
    }
  }

  /**
   * Storage is not as the run left it. If the run's lease ran out meanwhile, that is why: the upload's new
   * owner writes it now, and it is theirs, not ours to verify again (or fail, which would remove it).
   */
  private changed(error: unknown): unknown {
    if (error instanceof TargetChangedError && this.job.mayWrite && !this.job.mayWrite())
      return new LeaseLostError(`lease lost: ${error.message}`)
    return error
  }
}

/**
 * Two buffers over the staged bytes: `take` hands out the chunk at an offset (read ahead when it was asked
 * for, read now when not), and `prefetch` starts reading the next one into the buffer not handed out.
 */
class ReadAhead {
  private buffers: [Buffer, Buffer] = [Buffer.alloc(0), Buffer.alloc(0)]
  /** Which buffer the next read goes into; the other holds the chunk last handed out. */
  private spare = 0
  private pending: { offset: number; read: Promise<number> } | undefined

  constructor(
    private readonly source: StagedReader,
    private readonly total: number,
  ) {}

  async take(offset: number, length: number): Promise<Buffer> {
    const pending = this.pending
    this.pending = undefined
    const index = this.spare
    this.spare ^= 1
    let have = 0
    if (pending) {
      const bytesRead = await pending.read
      if (pending.offset === offset) have = Math.min(bytesRead, length)
    }
    const buffer = this.room(index, length, have)
    while (have < length) {
      const bytesRead = await this.source.read(buffer, have, length - have, offset + have)
      if (bytesRead === 0)
        throw new InternalFault(
          `The received copy of the file ends at byte ${offset + have} of ${this.total}: it was cut short on the server`,
        )
      have += bytesRead
    }
    return buffer.subarray(0, length)
  }

  prefetch(offset: number, length: number): void {
    length = Math.min(length, this.total - offset)
    if (length <= 0) return
    const buffer = this.room(this.spare, length, 0)
    // A failed read ahead is read again (and then fails) by the take that wants it.
    this.pending = {
      offset,
      read: this.source.read(buffer, 0, length, offset).catch(() => 0),
    }
  }

  /** Closes the staged bytes, once no read is in flight under them. */
  async close(): Promise<void> {
    await this.pending?.read
    await this.source.close()
  }

  /** The buffer at `index`, grown to `length` if need be, keeping its first `keep` bytes. */
  private room(index: number, length: number, keep: number): Buffer {
    const buffer = this.buffers[index] ?? Buffer.alloc(0)
    if (buffer.length >= length) return buffer
    const grown = Buffer.allocUnsafe(length)
    buffer.copy(grown, 0, 0, keep)
    return (this.buffers[index] = grown)
  }
}
