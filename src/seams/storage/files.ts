/** The file-system steps the folder storage takes again and again (local.ts, local-transfer.ts). */
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { readdir, stat, unlink } from 'node:fs/promises'

export const isMissing = (error: unknown) => (error as NodeJS.ErrnoException).code === 'ENOENT'

/** Reads and hashes this much at a time. */
export const READ_CHUNK = 1024 * 1024

/** A file removed if it is there: one unlink (rm({ force }) asks lstat first, for a folder it never is here). */
export const removeFile = (path: string) =>
  unlink(path).catch((error: unknown) => {
    if (!isMissing(error)) throw error
  })

export async function sizeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size
  } catch (error) {
    if (isMissing(error)) return undefined
    throw error
  }
}

export async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path, { highWaterMark: READ_CHUNK }))
    hash.update(chunk as Buffer)
  return hash.digest('hex')
}

export async function list(dir: string): Promise<string[]> {
  try {
    return await readdir(dir)
  } catch (error) {
    if (isMissing(error)) return []
    throw error
  }
}
