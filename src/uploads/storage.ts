import { createHash, type Hash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, open, readdir, rename, rm, stat, statfs, writeFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { publicMessage } from '../errors.js'
import { log } from '../log.js'
import { safeFilename } from './filename.js'
import { RoomLedger } from './room.js'

/**
 * The storage folder's layout, in one place:
 *
 *   {root}/{id}_{safe name}          a complete, verified file (a name without .part is always whole)
 *   {root}/{id}_{safe name}.part     a transfer in progress or paused
 *   {root}/.staging/{id}             the bytes as received, kept until the transfer completes
 *   {root}/.staging/{uuid}.incoming  a body still arriving
 */
export interface Located {
  id: string
  storedName: string
}

const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
const PART_FILE = new RegExp(`^${UUID}_.*\\.part$`)
const INCOMING = /\.incoming$/
const STAGED = new RegExp(`^${UUID}$`)

const isMissing = (error: unknown) => (error as NodeJS.ErrnoException).code === 'ENOENT'

export const storedNameFor = (id: string, filename: string) => `${id}_${safeFilename(filename)}`

/** Reads and hashes this much at a time when verifying files. */
const VERIFY_CHUNK = 1024 * 1024

async function fsyncDir(path: string): Promise<void> {
  const handle = await open(path, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

export class Storage {
  readonly stagingDir: string
  /** Room on the folder's file system, promised to arrivals and transfers as it is granted. */
  readonly room = new RoomLedger(async () => {
    const { bavail, bsize } = await statfs(this.root)
    return bavail * bsize
  })

  constructor(
    readonly root: string,
    /** Names this process's bodies still arriving, so instances sharing the folder never sweep each other's. */
    private readonly instance = 'local',
  ) {
    this.stagingDir = join(root, '.staging')
  }

  /** Creates the folders; someone may also have removed them while we ran (one syscall each to redo). */
  async prepare(): Promise<void> {
    await mkdir(this.stagingDir, { recursive: true })
  }

  stagingPath(upload: Pick<Located, 'id'>): string {
    return join(this.stagingDir, upload.id)
  }

  partPath(upload: Located): string {
    return `${this.storedPath(upload)}.part`
  }

  storedPath(upload: Located): string {
    return join(this.root, upload.storedName)
  }

  /** A new, unique path for a body that is still arriving. */
  incomingPath(name: string): string {
    return join(this.stagingDir, `${this.instance}.${name}.incoming`)
  }

  /** The instance a body still arriving belongs to, or undefined for any other path. */
  ownerOfIncoming(path: string): string | undefined {
    const name = basename(path)
    if (!INCOMING.test(name)) return undefined
    // `{instance}.{uuid}.incoming`: the instance's name may hold dots of its own (ip-10-0-0-1.ec2.internal).
    const stem = name.slice(0, -'.incoming'.length)
    return stem.slice(0, stem.lastIndexOf('.'))
  }

  /** The upload a staging or `.part` file belongs to, or undefined for any other path. */
  uploadIdOf(path: string): string | undefined {
    return new RegExp(`^(${UUID})(?:$|_.*\\.part$)`).exec(basename(path))?.[1]
  }

  /**
   * Makes a verified `.part` the stored file: rename, then fsync the folder so the rename itself survives a
   * power cut. The caller has flushed the file's bytes already.
   */
  async finalize(upload: Located): Promise<void> {
    await rename(this.partPath(upload), this.storedPath(upload))
    await fsyncDir(this.root)
  }

  async removeStaging(upload: Located): Promise<void> {
    await rm(this.stagingPath(upload), { force: true })
  }

  async removePart(upload: Located): Promise<void> {
    await rm(this.partPath(upload), { force: true })
  }

  /** The bytes of an unfinished upload: its staging file and its `.part`. */
  async removeBytes(upload: Located): Promise<void> {
    await Promise.all([this.removePart(upload), this.removeStaging(upload)])
  }

  /** Everything an upload has on disk, the stored file included. */
  async removeAll(upload: Located): Promise<void> {
    await Promise.all([this.removeBytes(upload), rm(this.storedPath(upload), { force: true })])
  }

  async sizeOf(path: string): Promise<number | undefined> {
    try {
      return (await stat(path)).size
    } catch (error) {
      if (isMissing(error)) return undefined
      throw error
    }
  }

  readStream(upload: Located, start: number, end: number) {
    return createReadStream(this.storedPath(upload), { start, end, highWaterMark: 1024 * 1024 })
  }

  /** sha256 of a whole file. */
  async hashFile(path: string): Promise<string> {
    const hash = createHash('sha256')
    for await (const chunk of createReadStream(path, { highWaterMark: VERIFY_CHUNK })) hash.update(chunk as Buffer)
    return hash.digest('hex')
  }

  /**
   * How much of a `.part` can be trusted after a restart: the longest prefix that equals staging byte for
   * byte (a torn tail after a crash or power cut does not, so the transfer rewrites it), with the sha256 of
   * that prefix, so the transfer goes on hashing from there.
   */
  async verifiedPrefix(upload: Located): Promise<{ offset: number; hash: Hash }> {
    const hash = createHash('sha256')
    let target
    try {
      target = await open(this.partPath(upload), 'r')
    } catch (error) {
      if (isMissing(error)) return { offset: 0, hash }
      throw error
    }
    try {
      const source = await open(this.stagingPath(upload), 'r')
      try {
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
          if (same < VERIFY_CHUNK) return { offset, hash }
        }
      } finally {
        await source.close()
      }
    } finally {
      await target.close()
    }
  }

  /** Bytes this process may still write into the folder's file system, less what it promised already. */
  free(): Promise<number> {
    return this.room.free()
  }

  /** Whether the storage folder takes writes now (for /readyz). */
  async writable(): Promise<string | undefined> {
    const probe = join(this.stagingDir, '.ready-probe')
    try {
      await writeFile(probe, '')
      await rm(probe, { force: true })
      return undefined
    } catch (error) {
      // Said to anyone who asks /readyz: no path, no errno (the log has them).
      log('warn', 'storage.not_writable', { error })
      return `storage is not writable: ${publicMessage(error)}`
    }
  }

  /**
   * What start-up may remove, decided before this process serves anyone: bodies that never finished
   * arriving, and staging or `.part` files that no unfinished upload owns. The user's own files, and stored
   * files, are never on the list.
   */
  async orphans(unfinished: readonly Located[]): Promise<string[]> {
    const staged = new Set(unfinished.map((upload) => upload.id))
    const parts = new Set(unfinished.map((upload) => `${upload.storedName}.part`))
    const [staging, stored] = await Promise.all([list(this.stagingDir), list(this.root)])
    return [
      ...staging.filter((name) => INCOMING.test(name) || !staged.has(name)).map((name) => join(this.stagingDir, name)),
      ...stored.filter((name) => PART_FILE.test(name) && !parts.has(name)).map((name) => join(this.root, name)),
    ]
  }

  /** Whether the folder holds unfinished uploads' bytes (a state file that went missing would orphan them). */
  async holdsTransfers(): Promise<boolean> {
    const [staging, stored] = await Promise.all([list(this.stagingDir), list(this.root)])
    return stored.some((name) => PART_FILE.test(name)) || staging.some((name) => STAGED.test(name))
  }

  async remove(paths: readonly string[]): Promise<void> {
    await Promise.all(paths.map((path) => rm(path, { force: true, recursive: true })))
  }
}

async function list(dir: string): Promise<string[]> {
  try {
    return await readdir(dir)
  } catch (error) {
    if (isMissing(error)) return []
    throw error
  }
}
