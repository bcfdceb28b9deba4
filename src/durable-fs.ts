import { mkdir, type FileHandle } from 'node:fs/promises'
import { dirname } from 'node:path'
import { closeFile, openFile, syncFile, writeAt } from './in-place-fs.js'

/** A folder's sync under way, and the one queued behind it, which everyone who asks meanwhile shares. */
interface FolderSync {
  running: Promise<void>
  queued: Promise<void> | undefined
}
const folderSyncs = new Map<string, FolderSync>()
const ignore = () => undefined

/**
 * A file created, renamed or removed is durable only once its folder's entry is: fsyncing the file alone
 * leaves the name to the kernel's whim after a power cut. Group commit: a caller needs a sync that begins
 * after its change, so while one runs, every caller waits for the one queued behind it, and they share it:
 * sixteen uploads completing at once cost a couple of syncs of the folder, not sixteen.
 */
export function fsyncDir(path: string): Promise<void> {
  const current = folderSyncs.get(path)
  if (!current) return beginSync(path)
  return (current.queued ??= current.running.then(ignore, ignore).then(() => beginSync(path)))
}

function beginSync(path: string): Promise<void> {
  const sync: FolderSync = { running: syncFolder(path), queued: undefined }
  folderSyncs.set(path, sync)
  // Forgotten once done, unless a sync is queued behind it (that one takes its place as it begins).
  void sync.running.then(ignore, ignore).then(() => {
    if (folderSyncs.get(path) === sync && sync.queued === undefined) folderSyncs.delete(path)
  })
  return sync.running
}

async function syncFolder(path: string): Promise<void> {
  const fd = await openFile(path, 'r')
  try {
    await syncFile(fd)
  } finally {
    await closeFile(fd)
  }
}

/**
 * Writes `length` bytes of `data` (all of it by default) at `position`. A write may be short (a file system
 * that is nearly full): the rest is written until done, or until a write fails.
 */
export async function writeAll(
  file: FileHandle | number,
  data: Buffer,
  position: number,
  length = data.length,
): Promise<void> {
  for (let done = 0; done < length;) {
    done += await writeAt(file, data, done, length - done, position + done)
  }
}

/**
 * Creates something at `path` (`create` opens or writes it), making its folder only if it is missing: someone
 * may have removed a working folder while the server ran. Asking every time whether it is there would cost
 * each file two more syscalls (mkdir, then a stat of what it found).
 */
export async function inFolder<T>(path: string, create: () => Promise<T>): Promise<T> {
  try {
    return await create()
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
    await mkdir(dirname(path), { recursive: true })
    return create()
  }
}
