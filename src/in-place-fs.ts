import {
  close,
  closeSync,
  constants,
  fdatasync,
  fsync,
  open,
  openSync,
  read,
  readSync,
  rename,
  renameSync,
  write,
  writeSync,
} from 'node:fs'
import { statfs, type FileHandle } from 'node:fs/promises'
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
 * Only on a local file system (onLocalDisks, decided once at start-up from the folders the server writes):
 * a network one can take milliseconds for any call, or hang, which in place would freeze the whole process.
 * And only while it answers quickly (DiskPace): the event loop may lose SLOW_BUDGET_MS to slow calls, a
 * budget that refills with a half-life of a second; past it, every call goes to the pool for a while.
 */
export const IN_PLACE_MAX = 64 * 1024
/** A call in place this long or shorter is quick; a longer one's whole time counts against the budget. */
const SLOW_MS = 2
const SLOW_BUDGET_MS = 50
const HALF_LIFE_MS = 1000
/** The first spell in the pool; each one that follows within MAX_POOL_MS of the last is twice as long. */
const POOL_MS = 10_000
const MAX_POOL_MS = 5 * 60_000

/**
 * Whether calls go in place now, from how long the last ones took. A disk that stalls now and then (a busy
 * machine's preemption: a few milliseconds, a few times a second) stays in place; one call of more than
 * SLOW_BUDGET_MS, or slow calls that add up to it within about a second (writeback under pressure), sends
 * every call to the pool, for longer each time it happens again soon. Times in milliseconds.
 */
export class DiskPace {
  private slow = 0
  private at = 0
  private pooledUntil = 0
  /** The last spell in the pool; 0 before the first. */
  private spell = 0

  inPlace(now: number): boolean {
    return now >= this.pooledUntil
  }

  /** A call made in place took `ms`, ending at `now`. */
  took(ms: number, now: number): void {
    this.slow *= 0.5 ** (Math.max(0, now - this.at) / HALF_LIFE_MS)
    this.at = now
    if (ms > SLOW_MS) this.slow += ms
    if (this.slow <= SLOW_BUDGET_MS) return
    this.slow = 0
    // Tripped again soon after the last spell ended: the disk is still slow, so a longer spell.
    this.spell =
      this.spell > 0 && now - this.pooledUntil < MAX_POOL_MS ? Math.min(2 * this.spell, MAX_POOL_MS) : POOL_MS
    this.pooledUntil = now + this.spell
  }
}

/**
 * File systems whose calls a local disk answers (Linux's statfs magic numbers): ext2/3/4, XFS, Btrfs, tmpfs,
 * overlayfs (containers), ZFS, F2FS. NFS, SMB, FUSE (sshfs, s3fs), Ceph and 9p are not.
 */
const LOCAL_FILE_SYSTEMS = new Set([
  0xef53, 0x58465342, 0x9123683e, 0x01021994, 0x794c7630, 0x2fc12fc1, 0xf2f52010,
])

/** Whether every one of `folders` is on a local file system (any that cannot be looked at is not). */
export async function onLocalDisks(folders: readonly string[]): Promise<boolean> {
  const types = await Promise.all(
    folders.map((folder) =>
      statfs(folder).then(
        ({ type }) => type,
        () => -1,
      ),
    ),
  )
  return types.every((type) => LOCAL_FILE_SYSTEMS.has(type))
}

let allowed = false
const pace = new DiskPace()

/** Calls go in place only once this says so (start-up, from onLocalDisks); until then, all to the pool. */
export function allowInPlace(allow: boolean): void {
  allowed = allow
}

/** Flushes always go to the pool: they wait on the disk. */
export const syncFile = promisify(fsync)
export const datasyncFile = promisify(fdatasync)

const openPooled = promisify(open)
const closePooled = promisify(close)
const renamePooled = promisify(rename)
const readPooled = promisify(read)
const writePooled = promisify(write)

/** `call` in place, timed; or undefined when the disk has been slow lately (the caller goes to the pool). */
function inPlace<T>(call: () => T): { value: T } | undefined {
  if (!allowed) return undefined
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

type AtOffset = (
  file: number | FileHandle,
  buffer: Buffer,
  offset: number,
  length: number,
  position: number,
) => Promise<number>

/**
 * A read or write at an offset: `here` in place when it moves at most IN_PLACE_MAX bytes and the descriptor
 * is open (a closed FileHandle's fd is -1: the pool's call then says EBADF, as it always has); else `pooled`.
 */
const atOffset =
  (
    here: (fd: number, buffer: Buffer, offset: number, length: number, position: number) => number,
    pooled: AtOffset,
  ): AtOffset =>
  async (file, buffer, offset, length, position) => {
    const fd = fdOf(file)
    const done =
      length <= IN_PLACE_MAX && fd >= 0
        ? inPlace(() => here(fd, buffer, offset, length, position))
        : undefined
    return done ? done.value : pooled(file, buffer, offset, length, position)
  }

/** Reads up to `length` bytes at `position` into `buffer` at `offset`; resolves with the bytes read. */
export const readAt = atOffset(readSync, async (file, ...at) =>
  typeof file === 'number' ? (await readPooled(file, ...at)).bytesRead : (await file.read(...at)).bytesRead,
)

/** Writes up to `length` bytes of `data` from `offset` at `position`; resolves with the bytes written. */
export const writeAt = atOffset(writeSync, async (file, ...at) =>
  typeof file === 'number'
    ? (await writePooled(file, ...at)).bytesWritten
    : (await file.write(...at)).bytesWritten,
)
