import { createHash } from 'node:crypto'
import type { Socket } from 'node:net'
import { Transform, type Readable } from 'node:stream'
import { pipeline as pipelineAsync } from 'node:stream/promises'
import { DataStore, ERRORS, Upload } from '@tus/utils'
import { isGone, isReceiving } from '../core/machine.js'
import { OffThreadHash } from '../core/transfer/hasher.js'
import type { UploadRecord } from '../model/record.js'
import type { UploadService } from '../core/service.js'
import type { Storage } from '../seams/storage/index.js'
import { ServiceError } from '../errors.js'
import { SMALL_BODY, storageError } from '../core/ingest/ingest.js'
import { bodyOf, type RequestBodies } from './bodies.js'

/** A hash waiting for its upload's next request is let go after this long (the next one re-reads the prefix). */
const PARKED_MS = 60_000
const EMPTY_SHA256 = createHash('sha256').digest('hex')

/** The metadata key onUploadCreate hands the pre-create hook's kept metadata under, as JSON. */
export const KEPT = '\u0000kept'

/** What onUploadCreate made of the sender's Upload-Metadata (see metadata.ts). */
export interface ResumableMetadata extends Record<string, string | null> {
  filename: string
}

/**
 * A tus data store over the storage seam: a tus upload's bytes are its staged bytes (Storage.append), where
 * its transfer reads them, so nothing is copied when the last byte is in. It knows no paths:
 * - the upload's record is its metadata (nothing is kept beside the bytes): what the service says of it is
 *   what tus says of it, so an upload canceled, failed or expired is gone for its tus client too (410);
 * - every byte written is counted as it arrives and hashed (sha256, off the main thread), across requests
 *   and restarts: a request that starts where the last hash left off goes on with it, any other (after a
 *   restart, on another instance, after a request cut off mid-write) hashes the bytes on disk first;
 * - termination is a cancel.
 */
export class TusStore extends DataStore {
  private readonly parked = new Map<string, { hash: OffThreadHash; timer: NodeJS.Timeout }>()

  constructor(
    private readonly service: UploadService,
    private readonly storage: Storage,
    /** Where the handler leaves each request's own body (server.ts); without it, @tus/server's stream is read. */
    private readonly bodies?: RequestBodies,
  ) {
    super()
    // Every length is known at creation (a transfer needs it), so no creation-defer-length. The expiry
    // is the service's (RESUMABLE_EXPIRY after the last byte), announced by the handler (server.ts).
    this.extensions = ['creation', 'creation-with-upload', 'termination', 'expiration']
  }

  override async create(upload: Upload): Promise<Upload> {
    const metadata = upload.metadata as ResumableMetadata
    await this.service.createResumable({
      id: upload.id,
      filename: metadata.filename,
      size: upload.size ?? 0,
      speed: metadata.speed == null ? undefined : Number(metadata.speed),
      metadata: JSON.parse(metadata[KEPT] ?? '{}') as Record<string, string>,
      owner: metadata.owner ?? null,
    })
    // An empty file has arrived whole at its creation: no request will bring it any byte. Any other has
    // nothing staged until its first bytes come (Storage.append from 0 makes them).
    if (upload.size === 0) {
      await this.storage.createStaged(upload.id)
      await this.service.beginReceiving(upload.id, 0, () => undefined)
      await this.service.endReceiving(upload.id, 0, EMPTY_SHA256)
    }
    return upload
  }

  override async getUpload(id: string): Promise<Upload> {
    const record = await this.recordOf(id)
    // Upload-Metadata on HEAD: what the record keeps of the sender's (the name, possibly renamed by the
    // pre-create hook, and the speed it runs at). The hook's kept metadata and the owner are not the sender's.
    const metadata = { filename: record.filename, speed: String(record.targetSpeed) }
    const { totalSize: size, createdAt: creation_date } = record
    if (isReceiving(record.status)) {
      const staged = await this.storage.stagedSize(record.id)
      // None staged: none came yet (its sender starts from 0), or those that came are gone.
      if (staged === undefined && record.receivedSize > 0) throw ERRORS.FILE_NO_LONGER_EXISTS
      const onDisk = staged ?? 0
      // Whole on disk, yet never recorded as arrived (a crash, or a store that failed, right after its last
      // byte): its sender will hear it has every byte and send nothing more, so it is finished here.
      if (onDisk >= size && size > 0) await this.finishFromDisk(record)
      return new Upload({ id, size, offset: Math.min(onDisk, size), metadata, creation_date })
    }
    // Canceled, failed or expired: its bytes are gone and it cannot be resumed; its sender starts over.
    if (isGone(record.status)) throw ERRORS.FILE_NO_LONGER_EXISTS
    // Past receiving: every byte arrived.
    return new Upload({ id, size, offset: size, metadata, creation_date })
  }

  /** Termination: the upload is canceled, wherever it stands, and its bytes go. */
  override async remove(id: string): Promise<void> {
    // Found as HEAD and PATCH find it: no tus upload (a multipart one's id too) is 404, one gone is 410.
    const record = await this.recordOf(id)
    if (isGone(record.status)) throw ERRORS.FILE_NO_LONGER_EXISTS
    await this.service.cancel(id)
  }

  override async write(readable: Readable, id: string, offset: number): Promise<number> {
    // The request itself, if the handler handed it over (bodies.ts): @tus/server's stream is then empty, and
    // is let run out so its pipeline ends.
    const sent = this.bodies?.take(id, offset)
    if (sent) readable.resume()
    let stopped = false
    // Bytes sent with the creation of an empty file: it is whole already (create()), nothing to write.
    const known = await this.recordOf(id)
    if (!isReceiving(known.status) && offset === known.totalSize) return offset
    const source = sent ? bodyOf(sent, known.totalSize - offset) : readable
    // Refused with 507 here, before a byte is read, if the rest and its second copy cannot be promised room.
    const { record, count, room } = await this.service.beginReceiving(id, offset, (reason) => {
      stopped = true
      // Said to the sender in tus's words: this upload is gone (410).
      source.destroy(Object.assign(new Error(reason.message), ERRORS.FILE_NO_LONGER_EXISTS))
    })
    let written: number
    let hash: OffThreadHash | undefined
    let failure: unknown
    // All of a small upload in this request, nothing to pace it: held in memory, and stored whole from there
    // at once (see arrivals.wholeStore) once it is all in; a request cut short stages what came, as any does.
    const holding = offset === 0 && record.totalSize <= SMALL_BODY && this.service.storesWhole(record)
    let held: Buffer | undefined
    try {
      hash = await this.hashAt(record, offset, sent?.req.socket)
      const hashing = hash
      if (holding) {
        // Read here, without a pipeline: one costs some 40 µs of CPU for a body of a few bytes.
        const chunks: Buffer[] = []
        try {
          for await (const chunk of source as AsyncIterable<Buffer>) {
            await hashing.update(chunk)
            count(chunk.length)
            chunks.push(chunk)
          }
        } finally {
          held = Buffer.concat(chunks)
        }
        written = held.length
      } else {
        const tee = new Transform({
          transform(chunk: Buffer, _encoding, done) {
            hashing.update(chunk).then(() => {
              count(chunk.length)
              done(null, chunk)
            }, done)
          },
        })
        const staging = await this.storage.append(id, offset)
        // Bytes storage took, not bytes counted: those still in a write buffer are not out of the free count yet.
        room.track(() => staging.written())
        try {
          await pipelineAsync(source, tee, staging.sink)
        } finally {
          // A first request that brought nothing leaves nothing staged, as before it came (an empty file, if
          // storage made one; left if storage will not take it away, its size still says 0).
          if (offset === 0 && record.totalSize > 0 && staging.written() === 0)
            await this.noneStaged(record).catch(() => undefined)
        }
        written = offset + staging.written()
      }
    } catch (error) {
      // A full disk (someone else's bytes filled it): said as such, and what did arrive is kept for a retry
      // (bytes held in memory are staged by endReceiving).
      failure = error instanceof Error ? storageError(error) : error
      written = held?.length ?? Math.min((await this.storage.stagedSize(id)) ?? offset, record.totalSize)
    }
    try {
      if (hash && failure === undefined && written === record.totalSize) {
        // A hash worker that died has no sha256 to give: the request still ends (its room and lease go back,
        // its bytes stay for the next request, which hashes the file on disk), and says what went wrong.
        const sha256 = await hash.digest().catch((error: unknown) => {
          failure = error
          return undefined
        })
        await this.service.endReceiving(id, written, sha256, held)
      } else {
        // Kept for the next request if it hashed exactly what reached the disk (and its worker lives).
        if (hash && hash.size === written && hash.usable) this.park(id, hash)
        else hash?.drop()
        await this.service.endReceiving(id, written, undefined, held)
      }
    } catch (error) {
      // Canceled or expired while it arrived: gone for its sender too.
      if (stopped || (error instanceof ServiceError && error.code === 'INVALID_STATE'))
        throw ERRORS.FILE_NO_LONGER_EXISTS
      throw error
    }
    if (failure !== undefined) throw failure
    return written
  }

  /** Takes away what a first request that brought no byte made (a folder's empty file; on S3, nothing). */
  private async noneStaged(record: UploadRecord): Promise<void> {
    if ((await this.storage.stagedSize(record.id)) !== undefined) await this.storage.remove(record, 'staged')
  }

  /** Hashes the whole file on disk and hands it on to be stored, as its last request would have. */
  private async finishFromDisk(record: UploadRecord): Promise<void> {
    await this.service.beginReceiving(record.id, record.totalSize, () => undefined)
    let sha256: string | undefined
    try {
      const hash = await this.hashAt(record, record.totalSize)
      sha256 = await hash.digest()
    } finally {
      await this.service.endReceiving(record.id, record.totalSize, sha256)
    }
  }

  private async recordOf(id: string): Promise<UploadRecord> {
    let record: UploadRecord
    try {
      record = await this.service.get(id)
    } catch (error) {
      if (error instanceof ServiceError && error.code === 'NOT_FOUND') throw ERRORS.FILE_NOT_FOUND
      throw error
    }
    // An upload that came in one multipart request is no tus upload.
    if (record.source !== 'tus') throw ERRORS.FILE_NOT_FOUND
    return record
  }

  /**
   * A running sha256 of the upload's first `offset` bytes: the one kept from its last request, or made anew by
   * re-reading them. Meanwhile nothing crosses the request's `socket`, and a few GiB take longer than its idle
   * timeout (BODY_IDLE_TIMEOUT_MS), which would cut off a sender that did nothing wrong (and again at each
   * retry): the timeout is off for the re-read.
   */
  private async hashAt(record: UploadRecord, offset: number, socket?: Socket): Promise<OffThreadHash> {
    const kept = this.parked.get(record.id)
    this.parked.delete(record.id)
    if (kept) clearTimeout(kept.timer)
    if (kept && kept.hash.size === offset) return kept.hash
    kept?.hash.drop()
    const hash = new OffThreadHash()
    const idle = offset > 0 && socket?.timeout ? { socket, ms: socket.timeout } : undefined
    idle?.socket.setTimeout(0)
    try {
      if (offset > 0) {
        for await (const chunk of this.storage.readStaged(record.id, 0, offset))
          await hash.update(chunk as Buffer)
      }
      if (hash.size !== offset)
        throw new Error(`only ${hash.size} of the ${offset} bytes received are on disk`)
    } catch (error) {
      hash.drop()
      throw error
    } finally {
      if (idle && !idle.socket.destroyed) idle.socket.setTimeout(idle.ms)
    }
    return hash
  }

  private park(id: string, hash: OffThreadHash): void {
    hash.park()
    const timer = setTimeout(() => {
      if (this.parked.get(id)?.hash !== hash) return
      this.parked.delete(id)
      hash.drop()
    }, PARKED_MS).unref()
    this.parked.set(id, { hash, timer })
  }
}
