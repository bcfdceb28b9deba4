import { createHash, type Hash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, open, readdir, rename, rm, stat, statfs, writeFile } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { publicMessage } from '../errors.js'
import { log } from '../log.js'
import { safeFilename } from './filename.js'
import { RoomLedger } from '../seams/storage/room.js'
import { sameStamp, stampOf, type FileStamp } from '../seams/storage/stamp.js'

/**
 * The storage folder's layout, in one place:
 *
 *   {root}/{id}_{safe name}          a complete, verified file, whatever the name ends with
 *   {root}/.transfers/{id}           a transfer in progress or paused, renamed to the stored name when verified
 *   {root}/.staging/{id}             the bytes as received, kept until the transfer completes
 *   {root}/.staging/{uuid}.incoming  a body still arriving
 *
 * Only the dot-folders hold the server's working files, and a stored name always begins `{uuid}_`, so no
 * name a client chooses can make a stored file look like a working one (or the reverse). `.transfers` is
 * inside the root, on its file system, so the rename into place is atomic.
 *
 * Before this layout a transfer was `{root}/{id}_{safe name}.part`, which a stored file named `*.part` also
 * matched. Such a file is only ever looked for by the upload it belongs to (its record names it): an
 * unfinished upload moves it into `.transfers` when its bytes are next verified, and removing an upload's
 * bytes removes it too. Nothing else in the root is ever taken for a working file.
 */
export interface Located {
  id: string
  storedName: string
}

const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
const INCOMING = /\.incoming$/
/** An upload's own file in a working folder (staging or transfers): its id, nothing else. */
const BY_ID = new RegExp(`^${UUID}$`)

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
  readonly transfersDir: string

  constructor(
    readonly root: string,
    /** Names this process's bodies still arriving, so instances sharing the folder never sweep each other's. */
    private readonly instance = 'local',
  ) {
    this.stagingDir = join(root, '.staging')
    this.transfersDir = join(root, '.transfers')
  }

  /** Creates the folders; someone may also have removed them while we ran (one syscall each to redo). */
  async prepare(): Promise<void> {
    await Promise.all([mkdir(this.stagingDir, { recursive: true }), mkdir(this.transfersDir, { recursive: true })])
  }

  stagingPath(upload: Pick<Located, 'id'>): string {
    return join(this.stagingDir, upload.id)
  }

  /** Where the transfer writes the file, until it is verified and renamed to its stored name. */
  transferPath(upload: Pick<Located, 'id'>): string {
    return join(this.transfersDir, upload.id)
  }

  /**
   * Where the layout before `.transfers` kept the upload's transfer (see the layout above); none for a name
   * longer than that layout allowed (asking for it would fail with ENAMETOOLONG).
   */
  private legacyTransferPath(upload: Located): string | undefined {
    const name = `${upload.storedName}.part`
    return Buffer.byteLength(name) <= 255 ? join(this.root, name) : undefined
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

  /**
   * The upload a staging or transfer file belongs to, or undefined for any other path: told by the folder it
   * is in, never by how its name ends (a stored name may end any way its client liked).
   */
  uploadIdOf(path: string): string | undefined {
    const folder = dirname(path)
    if (folder !== this.stagingDir && folder !== this.transfersDir) return undefined
    const name = basename(path)
    return BY_ID.test(name) ? name : undefined
  }

  /**
   * Makes a verified transfer the stored file: rename, then fsync both folders so the rename itself (the
   * new name and the old one gone) survives a power cut. The caller has flushed the file's bytes already.
   */
  async finalize(upload: Located): Promise<void> {
    await rename(this.transferPath(upload), this.storedPath(upload))
    await Promise.all([fsyncDir(this.root), fsyncDir(this.transfersDir)])
  }

  async removeStaging(upload: Located): Promise<void> {
    await rm(this.stagingPath(upload), { force: true })
  }

  /** The transfer's file, and the one an older layout may have left for it. */
  async removeTransfer(upload: Located): Promise<void> {
    const legacy = this.legacyTransferPath(upload)
    await Promise.all([
      rm(this.transferPath(upload), { force: true }),
      legacy === undefined ? undefined : rm(legacy, { force: true }),
    ])
  }

  /** The bytes of an unfinished upload: its staging file and its transfer's file. */
  async removeBytes(upload: Located): Promise<void> {
    await Promise.all([this.removeTransfer(upload), this.removeStaging(upload)])
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

  /** sha256 of a whole file. */
  async hashFile(path: string): Promise<string> {
    const hash = createHash('sha256')
    for await (const chunk of createReadStream(path, { highWaterMark: VERIFY_CHUNK })) hash.update(chunk as Buffer)
    return hash.digest('hex')
  }

  /**
   * Whether the transfer's file is still exactly as a run left it (`stamp`): then the bytes it holds are the
   * ones that run wrote and hashed. Anything else (missing, shorter, longer, written to, replaced, no stamp)
   * is not, and is verified again.
   */
  async unchanged(upload: Pick<Located, 'id'>, stamp: FileStamp | undefined): Promise<boolean> {
    if (!stamp) return false
    try {
      return sameStamp(stampOf(await stat(this.transferPath(upload), { bigint: true })), stamp)
    } catch (error) {
      if (isMissing(error)) return false
      throw error
    }
  }

  /**
   * How much of the transfer's file can be trusted when memory cannot say (after a restart, or when it was
   * changed while no run held it): the longest prefix that equals staging byte for byte (a torn tail after a
   * power cut, or bytes changed behind our back, do not, so the transfer rewrites them), with the sha256 of
   * that prefix, so the transfer goes on hashing from there, and the file's stamp as it was read.
   */
  async verifiedPrefix(upload: Located): Promise<{ offset: number; hash: Hash; stamp?: FileStamp }> {
    await this.adoptLegacyTransfer(upload)
    const hash = createHash('sha256')
    let target
    try {
      target = await open(this.transferPath(upload), 'r')
    } catch (error) {
      if (isMissing(error)) return { offset: 0, hash }
      throw error
    }
    try {
      const source = await open(this.stagingPath(upload), 'r')
      try {
        const stamp = stampOf(await target.stat({ bigint: true }))
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
          if (same < VERIFY_CHUNK) return { offset, hash, stamp }
        }
      } finally {
        await source.close()
      }
    } finally {
      await target.close()
    }
  }

  /**
   * A transfer the layout before `.transfers` left beside the stored files (`{stored name}.part`) moves
   * into `.transfers`, where it is verified like any other; if the upload has one there already, the old
   * one goes. Only this upload's record names that path, so nothing else is ever moved or removed.
   */
  private async adoptLegacyTransfer(upload: Located): Promise<void> {
    const legacy = this.legacyTransferPath(upload)
    if (legacy === undefined || (await this.sizeOf(legacy)) === undefined) return
    if ((await this.sizeOf(this.transferPath(upload))) !== undefined) return void (await rm(legacy, { force: true }))
    await rename(legacy, this.transferPath(upload)).catch((error: unknown) => {
      if (!isMissing(error)) throw error
    })
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
   * arriving, and staging or transfer files that no unfinished upload owns. Only the working folders are
   * looked in: the root holds stored files and the user's own, and nothing there is ever on the list.
   */
  async orphans(unfinished: readonly Located[]): Promise<string[]> {
    const owned = new Set(unfinished.map((upload) => upload.id))
    const [staging, transfers] = await Promise.all([list(this.stagingDir), list(this.transfersDir)])
    return [
      ...staging.filter((name) => INCOMING.test(name) || !owned.has(name)).map((name) => join(this.stagingDir, name)),
      ...transfers.filter((name) => !owned.has(name)).map((name) => join(this.transfersDir, name)),
    ]
  }

  /** Whether the folder holds unfinished uploads' bytes (a state file that went missing would orphan them). */
  async holdsTransfers(): Promise<boolean> {
    const [staging, transfers] = await Promise.all([list(this.stagingDir), list(this.transfersDir)])
    return transfers.length > 0 || staging.some((name) => BY_ID.test(name))
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
