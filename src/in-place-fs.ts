import {
  close,
  closeSync,
  constants,
  open,
  openSync,
  read,
  readSync,
  rename,
  renameSync,
  write,
  writeSync,
} from 'node:fs'
import type { FileHandle } from 'node:fs/promises'
import { performance } from 'node:perf_hooks'
import { promisify } from 'node:util'

/**
 * Quick file-system calls made in place, on the event loop, while the disk answers them quickly (issue 22).
 *
 * Each call sent to libuv's thread pool costs the event loop a hand-off and a wake-up: about five futex calls
 * and 40–80 µs of CPU on the machines we measure on, against 6–10 µs for the same pwrite, pread, open, close
 * or rename made in place (bench/round3-profile.md, "Sixth stop"). A 16-byte upload made nine such trips.
 * A call made in place holds the event loop while it runs, so only calls that a local disk answers from
 * memory go this way: opens of files that exist, closes, renames, and reads and writes of at most
 * IN_PLACE_MAX bytes. Creating a file and flushing one (fsync, fdatasync) always go to the pool: they wait on
 * the disk's journal.
 *
 * A disk that answers slowly (a network file system, writeback under pressure) makes them all go to the pool:
 * each call slower than SLOW_MS adds to a score that decays by DECAY with every call, and at SLOW_SCORE (three
 * slow calls in quick succession; one now and then, a busy machine's preemption, never gets there) every call
 * goes to the pool for POOL_MS, then in place is tried again.
 */
export const IN_PLACE_MAX = 64 * 1024
const SLOW_MS = 2
const DECAY = 0.9
const SLOW_SCORE = 2.5
const POOL_MS = 10_000

/** Whether calls go in place now, from how long the last ones took (see above). Times in milliseconds. */
export class DiskPace {
  private score = 0
  private pooledUntil = 0

  inPlace(now: number): boolean {
    return now >= this.pooledUntil
  }

  /** A call made in place took `ms`, ending at `now`. */
  took(ms: number, now: number): void {
    this.score = this.score * DECAY + (ms > SLOW_MS ? 1 : 0)
    if (this.score < SLOW_SCORE) return
    this.score = 0
    this.pooledUntil = now + POOL_MS
  }
}

const pace = new DiskPace()

const openPooled = promisify(open)
const closePooled = promisify(close)
const renamePooled = promisify(rename)
const readPooled = promisify(read)
const writePooled = promisify(write)

/** `call` in place, timed; or undefined when the disk has been slow lately (the caller goes to the pool). */
function inPlace<T>(call: () => T): { value: T } | undefined {
  const began = performance.now()
  if (!pace.inPlace(began)) return undefined
  try {
    return { value: call() }
  } finally {
    const ended = performance.now()
    pace.took(ended - began, ended)
  }
}

const fdOf = (file: number | FileHandle): number => (typeof file === 'number' ? file : file.fd)

/** Flags that may create the file: `w`, `a` and their kin, or O_CREAT. */
const creates = (flags: string | number): boolean =>
  typeof flags === 'string' ? /[wa]/.test(flags) : (flags & constants.O_CREAT) !== 0

/**
 * Opens `path` (`flags` as fs.open takes them); resolves with its descriptor, which closeFile closes. Only
 * an open that finds the file goes in place: one that may create it writes to its folder and can wait on the
 * file system's journal (200 µs on average, in a folder other uploads were being created and synced in).
 */
export async function openFile(path: string, flags: string | number): Promise<number> {
  const done = creates(flags) ? undefined : inPlace(() => openSync(path, flags))
  return done ? done.value : openPooled(path, flags)
}

export async function closeFile(fd: number): Promise<void> {
  if (!inPlace(() => closeSync(fd))) await closePooled(fd)
}

export async function renameFile(from: string, to: string): Promise<void> {
  if (!inPlace(() => renameSync(from, to))) await renamePooled(from, to)
}

/** Reads up to `length` bytes at `position` into `buffer` at `offset`; resolves with the bytes read. */
export async function readAt(
  file: number | FileHandle,
  buffer: Buffer,
  offset: number,
  length: number,
  position: number,
): Promise<number> {
  const done =
    length <= IN_PLACE_MAX ? inPlace(() => readSync(fdOf(file), buffer, offset, length, position)) : undefined
  if (done) return done.value
  if (typeof file !== 'number') return (await file.read(buffer, offset, length, position)).bytesRead
  return (await readPooled(file, buffer, offset, length, position)).bytesRead
}

/** Writes up to `length` bytes of `data` from `offset` at `position`; resolves with the bytes written. */
export async function writeAt(
  file: number | FileHandle,
  data: Buffer,
  offset: number,
  length: number,
  position: number,
): Promise<number> {
  const done =
    length <= IN_PLACE_MAX ? inPlace(() => writeSync(fdOf(file), data, offset, length, position)) : undefined
  if (done) return done.value
  if (typeof file !== 'number') return (await file.write(data, offset, length, position)).bytesWritten
  return (await writePooled(file, data, offset, length, position)).bytesWritten
}
