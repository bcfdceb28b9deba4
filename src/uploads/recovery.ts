import { createHash, type Hash } from 'node:crypto'
import { open, readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'

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
 * file byte for byte (a torn tail after a crash or power cut does not, so the transfer rewrites it), with the
 * sha256 of that prefix, so the transfer goes on verifying from there.
 */
export async function verifiedPrefix(part: string, staging: string): Promise<{ offset: number; hash: Hash }> {
  const hash = createHash('sha256')
  const target = await openIfExists(part)
  if (!target) return { offset: 0, hash }
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
      hash.update(a.subarray(0, same))
      offset += same
      if (same < CHUNK) return { offset, hash }
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

