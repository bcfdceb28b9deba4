import { mkdir, open, type FileHandle } from 'node:fs/promises'
import { dirname } from 'node:path'

/**
 * A file created, renamed or removed is durable only once its folder's entry is: fsyncing the file alone
 * leaves the name to the kernel's whim after a power cut.
 */
export async function fsyncDir(path: string): Promise<void> {
  const handle = await open(path, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/**
 * Writes `length` bytes of `data` (all of it by default) at `position`. A write may be short (a file system
 * that is nearly full): the rest is written until done, or until a write fails.
 */
export async function writeAll(
  handle: FileHandle,
  data: Buffer,
  position: number,
  length = data.length,
): Promise<void> {
  for (let done = 0; done < length;) {
    const { bytesWritten } = await handle.write(data, done, length - done, position + done)
    done += bytesWritten
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
