import type { Hash } from 'node:crypto'
import type { BigIntStats } from 'node:fs'
import { mkdir, open, stat, type FileHandle } from 'node:fs/promises'
import { dirname } from 'node:path'
import { InternalFault } from '../errors.js'
import type { Flow, Scheduler } from '../core/transfer/scheduler.js'
import { sameStamp, stampOf, type FileStamp } from './stamp.js'

export interface TransferJob {
  /** The staging file holding every byte received. */
  source: string
  /** The transfer's file in storage; bytes before `offset` are already there. */
  target: string
  offset: number
  /**
   * The target as the bytes before `offset` were verified (or as the last run left it). It must still be
   * exactly that when it is opened, or the run writes nothing (TargetChangedError). Needed when `offset` > 0.
   */
  expected?: FileStamp
  total: number
  /** Bytes per second; 0 means unlimited. */
  speed: number
  /** Paces this transfer among every other (and under the server-wide cap). */
  scheduler: Scheduler
  /**
   * sha256 of the bytes in the target before `offset`. Every chunk written is added, so at the end it is the
   * hash of exactly the bytes stored, in order. A run that rejects leaves it unusable.
   */
  hash: Hash
  /** Aborting stops the copy after the chunk in flight; `done` then resolves with the offset reached. */
  signal: AbortSignal
  /** Called after every chunk with the new offset. Runs on the hot path: keep it cheap. */
  onProgress: (offset: number) => void
  /** Asked before every write; false stops the copy at once with a LeaseLostError (see lease.ts). */
  mayWrite?: () => boolean
  /** How the run left the target when it stopped without error (paused, or whole): checked by the next run. */
  onStop?: (stamp: FileStamp) => void
}

/** The transfer's owner may no longer write (its lease ran out): stopped before the next write. */
export class LeaseLostError extends Error {
  override readonly name = 'LeaseLostError'
}

/**
 * The target is not what the bytes before the offset were checked in (shortened, written to, replaced)
 * when the run opens it, it is not the length the run wrote when the next write is due, or it ends longer
 * than the file or with a hole: no byte is trusted past what can be verified again.
 */
export class TargetChangedError extends Error {
  override readonly name = 'TargetChangedError'
}

/**
 * Unallocated room a whole file may show without being suspected of a hole: a file system allocates in
 * blocks (or pages), and may keep a small tail inline. A cut that leaves a hole smaller than this goes
 * unseen by the hole check (see run).
 */
const HOLE_SLACK = 64 * 1024

/**
 * Dirty bytes are flushed in the background every this many, one flush at a time, so the flush that must
 * finish before completion is small and completion lands on time.
 */
const FLUSH_EVERY = 8 * 1024 * 1024

const isAbort = (error: unknown) => error instanceof Error && error.name === 'AbortError'

async function writeAll(target: FileHandle, buffer: Buffer, length: number, position: number): Promise<void> {
  // A write may be short (a file system that is nearly full): write the rest, until done or an error.
  for (let written = 0; written < length; ) {
    const { bytesWritten } = await target.write(buffer, written, length - written, position + written)
    written += bytesWritten
  }
}

/** One run of a transfer, from a start or resume to its end, pause, cancel or failure. */
export class Transfer {
  /** Resolves with the offset reached: `total` when done (the target is then flushed to disk), less when stopped. */
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

  /**
   * Copies source → target from `offset` at the current speed, in chunks sized for it. I/O errors reject.
   * Reads and writes use explicit positions, so a resumed copy never depends on file cursors.
   */
  private async run(): Promise<number> {
    const { job, flow } = this
    let offset = job.offset
    let flushing: Promise<void> | undefined
    let flushed = offset
    let stopped: BigIntStats | undefined
    const source = await open(job.source, 'r')
    // The next chunk is read into the other buffer while this one is written and hashed, so reads never wait
    // for writes: an unlimited copy then runs at the pace of the slower of the disk and sha256.
    const ahead = new ReadAhead(source, job.total)
    try {
      // Someone may have removed the folder it goes in while we ran; recreating it costs one syscall.
      if (offset === 0) await mkdir(dirname(job.target), { recursive: true })
      // Read and write: 'r+' keeps the bytes already there, 'w+' starts empty; 'a' would ignore positions on Linux.
      const target = await open(job.target, offset > 0 ? 'r+' : 'w+')
      try {
        if (offset > 0) await this.checkResumed(target, offset)
        try {
          let first = true
          while (offset < job.total && !job.signal.aborted) {
            // The first chunk is the head start, so the first byte lands at once without putting the curve ahead.
            const want = Math.min(first ? flow.head : flow.chunk(), job.total - offset)
            first = false
            // False: the speed (or the cap) changed while this chunk waited, so it is planned again.
            if (!(await flow.grant(want, job.signal))) continue
            const chunk = await ahead.take(offset, want)
            // Before every write (one fstat a chunk: one per MiB unlimited), the file must hold exactly what the
            // run wrote. Checked after a write, a file cut short behind the run would already have been grown
            // back by that write, with a hole of zeros where its bytes were; and writing on into a file nobody
            // can reach would only say so at the final rename.
            const { nlink, size } = await target.stat()
            if (nlink === 0)
              throw new InternalFault('The file being stored was removed from storage while it was written', { path: job.target })
            if (size !== offset) throw this.changed(`the file being written was changed to ${size} bytes at byte ${offset}`)
            // Last before the write, with no wait between them: a process frozen past its deadline writes nothing.
            if (job.mayWrite && !job.mayWrite()) throw new LeaseLostError(`lease lost at byte ${offset}`)
            const written = writeAll(target, chunk, chunk.length, offset)
            // Hashed on this thread while libuv's writes it. If the write fails, the run rejects and the upload
            // fails with it, hash and all; if it succeeds, exactly these bytes are stored at this offset.
            job.hash.update(chunk)
            ahead.prefetch(offset + chunk.length, flow.chunk())
            await written
            offset += chunk.length
            job.onProgress(offset)
            if (offset - flushed >= FLUSH_EVERY && !flushing) {
              flushed = offset
              flushing = target.datasync().finally(() => (flushing = undefined))
            }
          }
          await flushing
        } catch (error) {
          await flushing?.catch(() => undefined)
          // Paused or canceled while a chunk waited for its turn: stopped, like a stop between chunks.
          if (!isAbort(error)) throw error
        }
        // A completed file must be on disk before it is renamed into place and reported complete.
        if (offset === job.total) await target.datasync()
        const left = await target.stat({ bigint: true })
        // The hash covers the first `total` bytes; a file grown past them behind the run holds more than that.
        if (offset === job.total && left.size !== BigInt(job.total))
          throw this.changed(`the file written holds ${left.size} bytes, not ${job.total}`)
        // A cut in the instant between a check and its write leaves a hole the check cannot see: a whole file
        // with far fewer bytes allocated than it holds has one. (A run that wrote nothing goes on from bytes
        // verified by reading them, so a file system that stores less than it holds, compressed, is not
        // suspected forever: one recheck, and they verify.)
        if (offset === job.total && offset > job.offset && left.blocks * 512n + BigInt(HOLE_SLACK) < left.size)
          throw this.changed(`the file written has only ${left.blocks * 512n} of its ${left.size} bytes on disk: a hole`)
        stopped = left
      } finally {
        await target.close()
      }
      // Taken again once closed (a network file system may set its times as the close flushes), and only of
      // the same file, still as long: that is how the next run must find it.
      if (stopped) {
        const after = await stat(job.target, { bigint: true }).catch(() => undefined)
        if (after && after.ino === stopped.ino && after.size === stopped.size) job.onStop?.(stampOf(after))
      }
    } finally {
      await ahead.settle()
      await source.close()
    }
    return offset
  }

  /**
   * The file is not as the run left it. If the run's lease ran out meanwhile, that is why: the upload's new
   * owner writes it now, and it is theirs, not ours to verify again (or fail, which would remove it).
   */
  private changed(message: string): Error {
    if (this.job.mayWrite && !this.job.mayWrite()) return new LeaseLostError(`lease lost: ${message}`)
    return new TargetChangedError(message)
  }

  /**
   * A resumed run goes on only in the file the bytes before its offset were verified in, as they were left:
   * a file cut shorter is never padded out with zeros, and one written to or replaced is not trusted. Bytes
   * past the offset (a torn tail that did not verify) are cut off, so the file never holds any not hashed.
   */
  private async checkResumed(target: FileHandle, offset: number): Promise<void> {
    const found = await target.stat({ bigint: true })
    if (found.size < BigInt(offset))
      throw new TargetChangedError(`the file being written holds ${found.size} bytes, fewer than the ${offset} already written`)
    if (!this.job.expected || !sameStamp(stampOf(found), this.job.expected))
      throw new TargetChangedError(`the file being written was changed since its first ${offset} bytes were verified`)
    if (found.size > BigInt(offset)) await target.truncate(offset)
  }
}

/**
 * Two buffers over the staging file: `take` hands out the chunk at an offset (read ahead when it was asked
 * for, read now when not), and `prefetch` starts reading the next one into the buffer not handed out.
 */
class ReadAhead {
  private buffers: [Buffer, Buffer] = [Buffer.alloc(0), Buffer.alloc(0)]
  /** Which buffer the next read goes into; the other holds the chunk last handed out. */
  private spare = 0
  private pending: { offset: number; read: Promise<number> } | undefined

  constructor(
    private readonly source: FileHandle,
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
      const { bytesRead } = await this.source.read(buffer, have, length - have, offset + have)
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
      read: this.source.read(buffer, 0, length, offset).then(
        ({ bytesRead }) => bytesRead,
        () => 0,
      ),
    }
  }

  /** Waits for a read still in flight, so the file can be closed under none. */
  async settle(): Promise<void> {
    await this.pending?.read
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
