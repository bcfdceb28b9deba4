import { createReadStream, createWriteStream, type WriteStream } from 'node:fs'
import { link, mkdir, open, rename, rm, stat, statfs, writeFile, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { fsyncDir, inFolder, writeAll } from '../../durable-fs.js'
import { closeFile, datasyncFile, openFile, readAt, renameFile } from '../../in-place-fs.js'
import { publicMessage } from '../../errors.js'
import { log } from '../../log.js'
import {
  StoredBytesMismatch,
  StoredFileMissing,
  type Arrival,
  type Leftover,
  type Located,
  type StagedReader,
  type StagingWrite,
  type Storage,
  type StoredReader,
  type TransferMark,
  type TransferSink,
  type TransferTarget,
  type Verified,
} from './index.js'
import { hashFile, isMissing, list, READ_CHUNK, removeFile, sizeOf } from './files.js'
import { FileSink, localMark, stampIn, verifiedPrefix } from './local-transfer.js'
import { RoomLedger } from './room.js'
import { sameStamp, stampOf } from './stamp.js'

/**
 * The storage folder's layout, in one place (nothing else in the server knows it):
 *
 *   {root}/{id}_{safe name}                     a complete, verified file, whatever the name ends with
 *   {root}/.transfers/{id}                      a transfer in progress or paused, renamed to the stored name when verified
 *   {root}/.staging/{id}                        the bytes as received, kept until the transfer completes
 *   {root}/.staging/{instance}.{id}.incoming    a multipart body still arriving at that instance
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
const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
const INCOMING = /\.incoming$/
/** An upload's own file in a working folder (staging or transfers): its id, nothing else. */
const BY_ID = new RegExp(`^${UUID}$`)

/** Big buffers move a body to disk in fewer, larger syscalls (a 16 KiB one made each chunk wait for a write). */
const WRITE_BUFFER = 1024 * 1024

/** A write stream on the open `fd` from `start`; the descriptor is closed if the stream cannot be made. */
async function streamOn(path: string, fd: number, start: number): Promise<WriteStream> {
  try {
    return createWriteStream(path, { fd, start, highWaterMark: WRITE_BUFFER })
  } catch (error) {
    await closeFile(fd)
    throw error
  }
}

export class LocalStorage implements Storage {
  readonly kind = 'local'
  readonly stagingDir: string
  readonly transfersDir: string
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
    this.transfersDir = join(root, '.transfers')
  }

  /** Creates the folders; someone may also have removed them while we ran (one syscall each to redo). */
  async prepare(): Promise<void> {
    await Promise.all([
      mkdir(this.stagingDir, { recursive: true }),
      mkdir(this.transfersDir, { recursive: true }),
    ])
  }

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

  // ---- where things are ----

  private stagingPath(id: string): string {
    return join(this.stagingDir, id)
  }

  private transferPath(id: string): string {
    return join(this.transfersDir, id)
  }

  /** Where a stored file is (tests break and inspect it; nothing in the server outside this file asks). */
  storedPath(upload: Located): string {
    return join(this.root, upload.storedName)
  }

  private incomingPath(id: string): string {
    return join(this.stagingDir, `${this.instance}.${id}.incoming`)
  }

  /**
   * Where the layout before `.transfers` kept the upload's transfer (see the layout above); none for a name
   * longer than that layout allowed (asking for it would fail with ENAMETOOLONG).
   */
  private legacyTransferPath(upload: Located): string | undefined {
    const name = `${upload.storedName}.part`
    return Buffer.byteLength(name) <= 255 ? join(this.root, name) : undefined
  }

  // ---- staged ----

  async receive(id: string): Promise<Arrival> {
    let at = this.incomingPath(id)
    const staged = this.stagingPath(id)
    // Open before it is handed out: a discard can then never race the file's creation and leave it behind.
    const fd = await inFolder(at, () => openFile(at, 'wx'))
    const sink = await streamOn(at, fd, 0)
    let kept = false
    return {
      sink,
      written: () => sink.bytesWritten,
      keep: async () => {
        await renameFile(at, staged)
        at = staged
        kept = true
      },
      discard: async () => {
        if (kept) return
        sink.destroy()
        await rm(at, { force: true })
      },
    }
  }

  async createStaged(id: string): Promise<void> {
    const path = this.stagingPath(id)
    await inFolder(path, () => writeFile(path, ''))
  }

  async append(id: string, offset: number): Promise<StagingWrite> {
    const path = this.stagingPath(id)
    // The first bytes make the file; later ones go on in the one already there, and find none if it was
    // taken away meanwhile (ENOENT), rather than making a file nobody owns. Made anew from 0 ('w'): only one
    // request of an upload writes at a time (tus's lock, and the lease beginReceiving takes), and one from 0
    // comes only while none are staged.
    const fd = offset === 0 ? await inFolder(path, () => openFile(path, 'w')) : await openFile(path, 'r+')
    const sink = await streamOn(path, fd, offset)
    // Bytes written, not bytes counted: those still in the write buffer are not out of the free count yet.
    return { sink, written: () => sink.bytesWritten }
  }

  stagedSize(id: string): Promise<number | undefined> {
    return sizeOf(this.stagingPath(id))
  }

  readStaged(id: string, start = 0, end?: number): Readable {
    if (end !== undefined && end <= start) return Readable.from([])
    return createReadStream(this.stagingPath(id), {
      start,
      end: end === undefined ? undefined : end - 1,
      highWaterMark: READ_CHUNK,
    })
  }

  async openStaged(id: string): Promise<StagedReader> {
    const handle = await open(this.stagingPath(id), 'r')
    return {
      read: (buffer, offset, length, position) => readAt(handle, buffer, offset, length, position),
      close: () => handle.close(),
    }
  }

  // ---- transfer ----

  openTransfer(upload: TransferTarget, from: { offset: number; mark?: TransferMark }): Promise<TransferSink> {
    return FileSink.open(this.transferPath(upload.id), upload.totalSize, from.offset, from.mark)
  }

  /**
   * A second name in `.transfers` for the staged file (same file system, so a hard link): the same bytes,
   * flushed once (before completion makes them the stored file), and nothing written twice. The transfer is
   * never written to afterwards (it is whole), and FileSink never truncates a file it did not create (see
   * FileSink.open), so the staged bytes under their other name stay as they arrived until completion removes
   * that name. Once a link is refused (staging mounted apart, a file system without hard links) this storage
   * has no `linkStaged`, so later transfers copy without reading the staged bytes first for nothing.
   */
  linkStaged?: (upload: TransferTarget) => Promise<TransferMark | undefined> = async (upload) => {
    const staged = this.stagingPath(upload.id)
    const target = this.transferPath(upload.id)
    const handle = await open(staged, 'r')
    try {
      await handle.datasync()
    } finally {
      await handle.close()
    }
    await removeFile(target)
    try {
      await inFolder(target, () => link(staged, target))
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EMLINK') throw error
      log('info', 'storage.no_links', { reason: code })
      this.linkStaged = undefined
      return undefined
    }
    // No sync of the folder: this name is a step on the way. Completion's rename makes the stored name and
    // syncs both folders; a crash before that finds the staged bytes, and the transfer starts again.
    return localMark(stampOf(await stat(target, { bigint: true })))
  }

  async storeWhole(upload: TransferTarget, bytes: Buffer): Promise<void> {
    const path = this.transferPath(upload.id)
    try {
      const fd = await inFolder(path, () => openFile(path, 'w'))
      try {
        await writeAll(fd, bytes, 0)
        await datasyncFile(fd)
      } finally {
        await closeFile(fd)
      }
      // Written from the very buffer its sha256 was taken of on arrival: nothing to read back.
      await this.complete(upload, upload.sha256)
    } catch (error) {
      await removeFile(path).catch(() => undefined)
      throw error
    }
  }

  /**
   * All of them: the file keeps every byte whose write returned (in the page cache, flushed every few MiB
   * and before completion), through a pause and a crash of the process. A power cut may lose the unflushed
   * ones; recovery then checks the file against staging and goes on from what matches.
   */
  acknowledgedOf(upload: { totalSize: number }, written: number): number {
    return Math.min(written, upload.totalSize)
  }

  async unchanged(upload: Located, mark: TransferMark | undefined): Promise<boolean> {
    const stamp = stampIn(mark)
    if (!stamp) return false
    try {
      return sameStamp(stampOf(await stat(this.transferPath(upload.id), { bigint: true })), stamp)
    } catch (error) {
      if (isMissing(error)) return false
      throw error
    }
  }

  async verifiedPrefix(upload: TransferTarget): Promise<Verified> {
    await this.adoptLegacyTransfer(upload)
    return verifiedPrefix(this.transferPath(upload.id), this.stagingPath(upload.id))
  }

  /**
   * The transfer's bytes (already flushed by its run's end) are checked, then renamed to the stored name,
   * then both folders are flushed so the rename itself (the new name and the old one gone) survives a power cut.
   */
  async complete(upload: TransferTarget, written?: string): Promise<void> {
    const digest = written ?? (await hashFile(this.transferPath(upload.id)))
    if (digest !== upload.sha256) throw new StoredBytesMismatch(digest, upload.sha256)
    await renameFile(this.transferPath(upload.id), this.storedPath(upload))
    await Promise.all([fsyncDir(this.root), fsyncDir(this.transfersDir)])
  }

  // ---- stored ----

  async storedSha256(upload: Located, size: number): Promise<string | undefined> {
    const path = this.storedPath(upload)
    if ((await sizeOf(path)) !== size) return undefined
    return hashFile(path)
  }

  async openStored(upload: Located): Promise<StoredReader> {
    const path = this.storedPath(upload)
    let handle: FileHandle
    try {
      handle = await open(path, 'r')
    } catch (error) {
      if (isMissing(error)) throw new StoredFileMissing(`stored file ${path} is missing`, { cause: error })
      throw error
    }
    let size: number
    try {
      size = (await handle.stat()).size
    } catch (error) {
      await handle.close()
      throw error
    }
    let streaming = false
    return {
      size,
      read: (start, end) => {
        streaming = true
        // The stream owns the handle from here, and closes it when it ends, fails or is destroyed.
        return handle.createReadStream({ start, end, highWaterMark: READ_CHUNK })
      },
      close: async () => {
        if (!streaming) await handle.close()
      },
    }
  }

  // ---- removal and recovery ----

  async remove(upload: Located, what: 'staged' | 'transfer' | 'bytes' | 'all'): Promise<void> {
    const paths: (string | undefined)[] = []
    if (what !== 'transfer') paths.push(this.stagingPath(upload.id))
    // The transfer's file, and the one an older layout may have left for it.
    if (what !== 'staged') paths.push(this.transferPath(upload.id), this.legacyTransferPath(upload))
    if (what === 'all') paths.push(this.storedPath(upload))
    await Promise.all(paths.map((path) => (path === undefined ? undefined : removeFile(path))))
  }

  /**
   * Only the working folders are looked in: the root holds stored files and the user's own, and nothing
   * there is ever on the list.
   */
  async leftovers(unfinished: readonly Located[]): Promise<Leftover[]> {
    const owned = new Set(unfinished.map((upload) => upload.id))
    const [staging, transfers] = await Promise.all([list(this.stagingDir), list(this.transfersDir)])
    const found: Leftover[] = []
    for (const name of staging) {
      const arrivingAt = ownerOfIncoming(name)
      if (arrivingAt !== undefined) found.push({ name: join(this.stagingDir, name), arrivingAt })
      else if (!owned.has(name))
        found.push({ name: join(this.stagingDir, name), id: BY_ID.test(name) ? name : undefined })
    }
    for (const name of transfers)
      if (!owned.has(name))
        found.push({ name: join(this.transfersDir, name), id: BY_ID.test(name) ? name : undefined })
    return found
  }

  async removeLeftovers(leftovers: readonly Leftover[]): Promise<void> {
    await Promise.all(leftovers.map(({ name }) => rm(name, { force: true, recursive: true })))
  }

  async holdsTransfers(): Promise<boolean> {
    const [staging, transfers] = await Promise.all([list(this.stagingDir), list(this.transfersDir)])
    return transfers.length > 0 || staging.some((name) => BY_ID.test(name))
  }

  /**
   * A transfer the layout before `.transfers` left beside the stored files (`{stored name}.part`) moves
   * into `.transfers`, where it is verified like any other; if the upload has one there already, the old
   * one goes. Only this upload's record names that path, so nothing else is ever moved or removed.
   */
  private async adoptLegacyTransfer(upload: Located): Promise<void> {
    const legacy = this.legacyTransferPath(upload)
    if (legacy === undefined || (await sizeOf(legacy)) === undefined) return
    if ((await sizeOf(this.transferPath(upload.id))) !== undefined)
      return void (await rm(legacy, { force: true }))
    await rename(legacy, this.transferPath(upload.id)).catch((error: unknown) => {
      if (!isMissing(error)) throw error
    })
  }
}

/** The instance a body still arriving belongs to (`{instance}.{id}.incoming`), or undefined for any other name. */
function ownerOfIncoming(name: string): string | undefined {
  if (!INCOMING.test(name)) return undefined
  // The instance's name may hold dots of its own (ip-10-0-0-1.ec2.internal).
  const stem = name.slice(0, -'.incoming'.length)
  return stem.slice(0, stem.lastIndexOf('.'))
}
