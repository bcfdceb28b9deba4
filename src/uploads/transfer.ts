import type { Hash } from 'node:crypto'
import { open } from 'node:fs/promises'
import { chunkSizeFor, headStartFor, TokenBucket } from './throttle.js'

export interface TransferJob {
  /** The staging file holding every byte received. */
  source: string
  /** The `.part` file in storage; bytes before `offset` are already there. */
  target: string
  offset: number
  total: number
  /** Bytes per second; 0 means unlimited. */
  speed: number
  /**
   * sha256 of the bytes in the target before `offset`, as read back from it. Every chunk written is read back,
   * checked against what was meant, and added, so at the end it is the hash of the file as stored.
   */
  hash: Hash
  /** Aborting stops the copy after the chunk in flight; the promise then resolves with the offset reached. */
  signal: AbortSignal
  /** Called after every chunk with the new offset. Runs on the hot path: keep it cheap. */
  onProgress: (offset: number) => void
}

/**
 * A throttled transfer flushes to disk every this many bytes, so the flush before completion is small and
 * completion lands on time. (Unthrottled, one flush at the end is cheaper.)
 */
const FLUSH_EVERY = 4 * 1024 * 1024

const isAbort = (error: unknown) => error instanceof Error && error.name === 'AbortError'

/**
 * Copies source → target from `offset` at `speed`, in chunks sized for that speed, and resolves with the
 * offset reached: `total` when done (the target is then flushed to disk), less when aborted. I/O errors
 * reject. Reads and writes use explicit positions, so a resumed copy never depends on file cursors.
 */
export async function runTransfer(job: TransferJob): Promise<number> {
  const chunk = chunkSizeFor(job.speed)
  const head = job.speed > 0 ? headStartFor(job.speed) : chunk
  const bucket = job.speed > 0 ? new TokenBucket(job.speed, chunk, head) : undefined
  const buffer = Buffer.allocUnsafe(chunk)
  const readBack = Buffer.allocUnsafe(chunk)
  let offset = job.offset
  const source = await open(job.source, 'r')
  try {
    // Read and write: 'r+' keeps the bytes already there, 'w+' starts empty; 'a' would ignore positions on Linux.
    const target = await open(job.target, offset > 0 ? 'r+' : 'w+')
    try {
      if (offset > 0) await target.truncate(offset)
      let flushed = offset
      while (offset < job.total && !job.signal.aborted) {
        // The first chunk is the head start, so the first byte lands at once without putting the curve ahead.
        const want = Math.min(offset === job.offset ? head : chunk, job.total - offset)
        await bucket?.take(want, job.signal)
        const { bytesRead } = await source.read(buffer, 0, want, offset)
        if (bytesRead === 0) throw new Error(`staging file ended at byte ${offset} of ${job.total}`)
        // A write may be short (a file system that is nearly full): write the rest, until done or an error.
        for (let written = 0; written < bytesRead; ) {
          const { bytesWritten } = await target.write(buffer, written, bytesRead - written, offset + written)
          written += bytesWritten
        }
        // Read back what the disk now holds: a write that lies (a failing or full device) stops here, and the
        // running hash is of the stored bytes, not of what we meant to store.
        const { bytesRead: stored } = await target.read(readBack, 0, bytesRead, offset)
        if (stored !== bytesRead || !readBack.subarray(0, stored).equals(buffer.subarray(0, bytesRead))) {
          throw new Error(`Stored bytes differ from the bytes sent at offset ${offset}`)
        }
        job.hash.update(readBack.subarray(0, stored))
        offset += bytesRead
        job.onProgress(offset)
        if (bucket && offset - flushed >= FLUSH_EVERY) {
          await target.datasync()
          flushed = offset
        }
      }
      // A completed file must be on disk before it is renamed into place and reported complete.
      if (offset === job.total) await target.datasync()
    } catch (error) {
      if (!isAbort(error)) throw error
    } finally {
      await target.close()
    }
  } finally {
    await source.close()
  }
  return offset
}
