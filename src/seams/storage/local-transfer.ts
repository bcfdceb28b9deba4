import { createHash } from 'node:crypto'
import { constants } from 'node:fs'
import { open, stat, type FileHandle } from 'node:fs/promises'
import { inFolder, writeAll } from '../../durable-fs.js'
import { isMissing, removeFile } from './files.js'
import { InternalFault } from '../../errors.js'
import { TargetChangedError, type TransferMark, type TransferSink, type Verified } from './index.js'
import { sameStamp, stampOf, type FileStamp } from './stamp.js'

/** A file's mark: the stamp it had as a run left it (or as it was verified). */
export interface LocalMark extends TransferMark {
  readonly kind: 'local'
  readonly stamp: FileStamp
}

export const localMark = (stamp: FileStamp): LocalMark => ({ kind: 'local', stamp })

/** The stamp inside a mark, if the mark is a file's. */
export const stampIn = (mark: TransferMark | undefined): FileStamp | undefined =>
  mark?.kind === 'local' ? (mark as LocalMark).stamp : undefined

/**
 * Unallocated room a whole file may show without being suspected of a hole: a file system allocates in
 * blocks (or pages), and may keep a small tail inline. A cut that leaves a hole smaller than this goes
 * unseen by the hole check (see end).
 */
const HOLE_SLACK = 64 * 1024

/**
 * Dirty bytes are flushed in the background every this many, one flush at a time, so the flush that must
 * finish before completion is small and completion lands on time. At 8 MiB, the last flush of a file
 * throttled to 4 MiB/s took 11 ms here, half a percent of a 2 s transfer; at 1 MiB it takes 1–2 ms.
 */
const FLUSH_EVERY = 1024 * 1024

/** Reads and compares this much at a time when verifying files. */
const VERIFY_CHUNK = 1024 * 1024

/** How often a running transfer's file is looked at (one fstat) between the checks at its start and end. */
const CHECK_EVERY_MS = 1000

/**
 * The file is opened to append (O_APPEND): every write lands at its end, whatever position it names (Linux's
 * pwrite on such a file appends). Our writes come in order, so the end is where the run is; and should
 * anyone cut the file short behind the run, the next write lands at the cut, never past it, so no hole of
 * zeros can ever stand where bytes were: the file only ends up shorter (or, grown behind the run, longer) than
 * the run, which the check at its end always sees. A check before every write was the other way to rule the
 * hole out, and cost each throttled chunk a second trip to the thread pool.
 */
const APPEND = constants.O_RDWR | constants.O_APPEND
const CREATE = APPEND | constants.O_CREAT | constants.O_EXCL

/**
 * A transfer's file, written in order from where the last run left it (see APPEND).
 * Every byte is acknowledged as its write returns: a file has no parts.
 */
export class FileSink implements TransferSink {
  readonly partSize = 0
  private position: number
  private flushed: number
  private flushing: Promise<void> | undefined
  /** What a background flush failed with: the next write, or the end, throws it (it must not go unheard). */
  private flushFailed: unknown
  private closed = false
  private checkedAt = performance.now()

  private constructor(
    private readonly path: string,
    private readonly handle: FileHandle,
    private readonly start: number,
    private readonly total: number,
  ) {
    this.position = this.flushed = start
  }

  /** Opens the file to go on at `offset`, only if it is exactly as `mark` says it was left (see checkResumed). */
  static async open(
    path: string,
    total: number,
    offset: number,
    mark: TransferMark | undefined,
  ): Promise<FileSink> {
    // Appending (see APPEND), after the bytes already there. A fresh file's folder is made again if someone
    // removed it while we ran.
    const handle = offset > 0 ? await open(path, APPEND) : await inFolder(path, () => fresh(path))
    try {
      if (offset > 0) await checkResumed(handle, offset, stampIn(mark))
    } catch (error) {
      await handle.close()
      throw error
    }
    return new FileSink(path, handle, offset, total)
  }

  async write(chunk: Buffer, position: number, guard: () => void): Promise<void> {
    if (this.flushFailed !== undefined) throw this.flushFailed
    // Every second, the file must still hold exactly what the run wrote: a file changed behind a long
    // throttled run is found then, not at its end hours later; and writing on into a file nobody can reach
    // would only say so at the final rename.
    if (performance.now() - this.checkedAt >= CHECK_EVERY_MS) {
      this.checkedAt = performance.now()
      const { nlink, size } = await this.handle.stat()
      if (nlink === 0)
        throw new InternalFault('The file being stored was removed from storage while it was written', {
          path: this.path,
        })
      if (size !== position)
        throw new TargetChangedError(
          `the file being written was changed to ${size} bytes at byte ${position}`,
        )
    }
    // Last before the write, with no wait between them: a process frozen past its deadline writes nothing.
    guard()
    await writeAll(this.handle, chunk, position)
    this.position = position + chunk.length
    if (this.position - this.flushed >= FLUSH_EVERY && !this.flushing) {
      this.flushed = this.position
      // Handled here at once: a rejection nobody awaits yet would end the process (Node's default).
      this.flushing = this.handle
        .datasync()
        .catch((error: unknown) => void (this.flushFailed ??= error))
        .finally(() => (this.flushing = undefined))
    }
  }

  acknowledged(): number {
    return this.position
  }

  async end(whole: boolean): Promise<{ acknowledged: number; mark?: TransferMark }> {
    await this.flushing
    if (this.flushFailed !== undefined) throw this.flushFailed
    // A completed file must be on disk before it is renamed into place and reported complete.
    if (whole) await this.handle.datasync()
    const left = await this.handle.stat({ bigint: true })
    // The hash covers the first `total` bytes; a file grown past them behind the run holds more than that.
    if (whole && left.size !== BigInt(this.total))
      throw new TargetChangedError(`the file written holds ${left.size} bytes, not ${this.total}`)
    // Appending, the run's writes leave no hole; one made behind it (cut, then grown again by someone else)
    // shows as a whole file with far fewer bytes allocated than it holds. (A run that wrote nothing goes on
    // from bytes verified by reading them, so a file system that stores less than it holds, compressed, is
    // not suspected forever: one recheck, and they verify.)
    if (whole && this.position > this.start && left.blocks * 512n + BigInt(HOLE_SLACK) < left.size)
      throw new TargetChangedError(
        `the file written has only ${left.blocks * 512n} of its ${left.size} bytes on disk: a hole`,
      )
    await this.close()
    // Taken again once closed (a network file system may set its times as the close flushes), and only of
    // the same file, still as long: that is how the next run must find it.
    const after = await stat(this.path, { bigint: true }).catch(() => undefined)
    const mark =
      after && after.ino === left.ino && after.size === left.size ? localMark(stampOf(after)) : undefined
    return { acknowledged: this.position, mark }
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    // A flush never rejects (its error is kept): waited for, so the descriptor is not closed under it.
    await this.flushing
    await this.handle.close().catch(() => undefined)
  }
}

/**
 * A new, empty file at `path`. One already there is unlinked, never truncated: it may be a second name of the
 * staged bytes (see LocalStorage.linkStaged), which truncating would empty under both names.
 */
async function fresh(path: string): Promise<FileHandle> {
  try {
    return await open(path, CREATE)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
  }
  await removeFile(path)
  return open(path, CREATE)
}

/**
 * A resumed run goes on only in the file the bytes before its offset were verified in, as they were left:
 * a file cut shorter is never padded out with zeros, and one written to or replaced is not trusted. Bytes
 * past the offset (a torn tail that did not verify) are cut off, so the file never holds any not hashed.
 */
async function checkResumed(
  target: FileHandle,
  offset: number,
  expected: FileStamp | undefined,
): Promise<void> {
  const found = await target.stat({ bigint: true })
  if (found.size < BigInt(offset))
    throw new TargetChangedError(
      `the file being written holds ${found.size} bytes, fewer than the ${offset} already written`,
    )
  if (!expected || !sameStamp(stampOf(found), expected))
    throw new TargetChangedError(
      `the file being written was changed since its first ${offset} bytes were verified`,
    )
  if (found.size > BigInt(offset)) await target.truncate(offset)
}

/**
 * The longest prefix of `transfer` that equals `staged` byte for byte (a torn tail after a power cut, or
 * bytes changed behind our back, do not, so the transfer rewrites them), with the sha256 of that prefix and
 * the file's stamp as it was read.
 */
export async function verifiedPrefix(transfer: string, staged: string): Promise<Verified> {
  const hash = createHash('sha256')
  let target
  try {
    target = await open(transfer, 'r')
  } catch (error) {
    if (isMissing(error)) return { offset: 0, hash }
    throw error
  }
  try {
    const source = await open(staged, 'r')
    try {
      const mark = localMark(stampOf(await target.stat({ bigint: true })))
      const a = Buffer.allocUnsafe(VERIFY_CHUNK)
      const b = Buffer.allocUnsafe(VERIFY_CHUNK)
      let offset = 0
      for (;;) {
        const [{ bytesRead: got }, { bytesRead: want }] = await Promise.all([
          target.read(a, 0, VERIFY_CHUNK, offset),
          source.read(b, 0, VERIFY_CHUNK, offset),
        ])
        const n = Math.min(got, want)
        let same = n
        if (!a.subarray(0, n).equals(b.subarray(0, n))) {
          same = 0
          while (a[same] === b[same]) same++
        }
        hash.update(a.subarray(0, same))
        offset += same
        if (same < VERIFY_CHUNK) return { offset, hash, mark }
      }
    } finally {
      await source.close()
    }
  } finally {
    await target.close()
  }
}
