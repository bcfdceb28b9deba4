import { open, type FileHandle } from 'node:fs/promises'

/** Flushes a folder, so a rename or a new name in it survives a power cut (the file's own flush does not). */
export async function fsyncDir(path: string): Promise<void> {
  const handle = await open(path, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/** Writes all `length` bytes at `position`: a write may be short (a file system nearly full), so the rest follows. */
export async function writeAll(
  handle: FileHandle,
  buffer: Buffer,
  length: number,
  position: number,
): Promise<void> {
  for (let written = 0; written < length;) {
    const { bytesWritten } = await handle.write(buffer, written, length - written, position + written)
    written += bytesWritten
  }
}
