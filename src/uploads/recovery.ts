import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { open, readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'

const CHUNK = 1024 * 1024

async function openIfExists(path: string) {
  try {
    return await open(path, 'r')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
}

/**
 * How much of a `.part` file can be trusted after a restart: the longest prefix that equals the staging
 * file byte for byte. A torn tail after a crash or power cut does not, so the transfer rewrites it.
 */
export async function verifiedPrefix(part: string, staging: string): Promise<number> {
  const target = await openIfExists(part)
  if (!target) return 0
  const source = await open(staging, 'r')
  try {
    const a = Buffer.allocUnsafe(CHUNK)
    const b = Buffer.allocUnsafe(CHUNK)
    let offset = 0
    for (;;) {
      const [{ bytesRead: got }, { bytesRead: want }] = await Promise.all([
        target.read(a, 0, CHUNK, offset),
        source.read(b, 0, CHUNK, offset),
      ])
      const n = Math.min(got, want)
      let same = n
      if (!a.subarray(0, n).equals(b.subarray(0, n))) {
        same = 0
        while (a[same] === b[same]) same++
      }
      offset += same
      if (same < CHUNK) return offset
    }
  } finally {
    await Promise.all([target.close(), source.close()])
  }
}

/** Removes the entries of `dir` that `keep` rejects; a missing folder is an empty one. */
export async function sweep(dir: string, keep: (name: string) => boolean): Promise<string[]> {
  let names: string[]
  try {
    names = await readdir(dir)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw error
  }
  const doomed = names.filter((name) => !keep(name))
  await Promise.all(doomed.map((name) => rm(join(dir, name), { force: true, recursive: true })))
  return doomed
}

/** Hex sha256 of a file as it is on disk, read in large chunks. */
export async function sha256Of(path: string): Promise<string> {
  const hash = createHash('sha256')
  await pipeline(createReadStream(path, { highWaterMark: CHUNK }), hash)
  return hash.digest('hex')
}
