import { open, type FileHandle } from 'node:fs/promises'

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
