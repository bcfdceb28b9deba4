import { PassThrough, type Readable } from 'node:stream'
import { GetObjectCommand } from '@aws-sdk/client-s3'
import { getSignedUrl } from '@aws-sdk/s3-request-presigner'
import type { S3Settings } from '../../config.js'
import {
  StoredBytesMismatch,
  StoredFileMissing,
  TargetChangedError,
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
import { RoomLedger } from './room.js'
import {
  abortUpload,
  checkBucket,
  closeS3,
  headObject,
  listObjects,
  listParts,
  listUploads,
  openS3,
  outcome,
  readObject,
  removeObject,
  s3Code,
  type S3Access,
} from './s3-bucket.js'
import {
  type HeldPart,
  openUpload,
  PartPlan,
  partSizeFor,
  putWhole,
  settle,
  UploadGoneError,
} from './s3-multipart.js'
import { findLeftovers, holdsTransfers, removeLeftovers } from './s3-leftovers.js'
import { completeParts, reconcile } from './s3-reconcile.js'
import { isS3Mark, S3TransferSink, type S3Mark } from './s3-sink.js'
import { putObject, readPieces, S3Append, S3Arrival, S3StagedReader, stagedPieces } from './s3-staged.js'

export interface S3Options {
  /** This instance, named on the marker of a body arriving here (see S3Keys). */
  instance?: string
  /** The largest body accepted: sizes the parts of an arrival, whose length is unknown until its end. */
  maxUploadSize?: number
}

/**
 * Storage in an S3 bucket (issue 21): every instance reaches the same bytes, so any of them can adopt an
 * upload. The layout is in s3-keys.ts; the transfer's parts in s3-sink.ts; the staged bytes in s3-staged.ts.
 */
export class S3Storage implements Storage {
  readonly kind = 's3'
  /** A bucket has no room to run out of that the service could measure: every promise is granted. */
  readonly room = new RoomLedger(async () => Number.MAX_SAFE_INTEGER)
  readonly access: S3Access
  /** The parts each transfer holds, with their sha256, as this process last knew them (for completion). */
  private readonly marks = new Map<string, S3Mark>()

  private readonly instance: string
  private readonly maxUploadSize: number

  constructor(
    private readonly settings: S3Settings,
    options: S3Options = {},
  ) {
    this.access = openS3(settings)
    this.instance = options.instance ?? 'default'
    this.maxUploadSize = options.maxUploadSize ?? 10 * 1024 ** 3
  }

  /** What S3 did so far, for /metrics. */
  outcomes(): Readonly<Record<string, number>> {
    const { retries, unavailable, refused } = this.access.counts
    return { retried: retries, unavailable, refused }
  }

  close(): void {
    closeS3(this.access)
  }

  private staged(id: string): string {
    return this.access.keys.staging({ id })
  }

  private stored(upload: Located): string {
    return this.access.keys.stored(upload)
  }

  async prepare(): Promise<void> {
    await checkBucket(this.access, this.settings)
  }

  async writable(): Promise<string | undefined> {
    try {
      await checkBucket(this.access, this.settings)
      return undefined
    } catch (error) {
      return `storage is not writable: ${(error as Error).message}`
    }
  }

  // ---- staged ---------------------------------------------------------------------------------------------

  async receive(id: string): Promise<Arrival> {
    const { keys } = this.access
    return new S3Arrival(
      this.access,
      this.staged(id),
      keys.arriving({ id }, this.instance),
      partSizeFor(this.maxUploadSize),
    ).begin()
  }

  async createStaged(id: string): Promise<void> {
    // An empty first piece: staged from now on, holding nothing (stagedSize 0, not undefined).
    await putObject(this.access, this.access.keys.piece({ id }, 0), Buffer.alloc(0)).catch(
      (error: unknown) => {
        throw outcome(this.access, error, `creating the resumable upload ${id}`)
      },
    )
  }

  async append(id: string, offset: number): Promise<StagingWrite> {
    return new S3Append(this.access, (at) => this.access.keys.piece({ id }, at), offset)
  }

  private pieces(id: string) {
    return stagedPieces(this.access, this.staged(id), (key) => this.access.keys.pieceStart(key))
  }

  async stagedSize(id: string): Promise<number | undefined> {
    const pieces = await this.pieces(id)
    return pieces?.reduce((sum, piece) => sum + piece.size, 0)
  }

  readStaged(id: string, start = 0, end?: number): Readable {
    return readPieces(this.access, () => this.pieces(id), start, end)
  }

  async openStaged(id: string): Promise<StagedReader> {
    return new S3StagedReader((position) => this.readStaged(id, position))
  }

  // ---- transfer -------------------------------------------------------------------------------------------

  async openTransfer(
    upload: TransferTarget,
    from: { offset: number; mark?: TransferMark },
    signal?: AbortSignal,
  ): Promise<TransferSink> {
    try {
      return await this.openSink(upload, from, signal)
    } catch (error) {
      throw outcome(this.access, error, `opening the transfer into ${this.stored(upload)}`)
    }
  }

  private async openSink(
    upload: TransferTarget,
    from: { offset: number; mark?: TransferMark },
    signal?: AbortSignal,
  ): Promise<TransferSink> {
    const key = this.stored(upload)
    const plan = new PartPlan(upload.totalSize)
    const sink = (uploadId: string, held: HeldPart[]) =>
      new S3TransferSink(
        this.access,
        key,
        uploadId,
        plan,
        held,
        (mark) => this.marks.set(upload.id, mark),
        (start, end) => this.readStaged(upload.id, start, end),
        signal,
      )
    if (from.offset === 0) {
      // Started over: whatever an earlier transfer left goes, so no part of it is ever completed with ours.
      for (const old of await listUploads(this.access, key))
        if (old.key === key) await abortUpload(this.access, key, old.uploadId)
      const { uploadId } = await openUpload(this.access, key, plan, { sha256: upload.sha256 })
      return sink(uploadId, [])
    }
    const mark = from.mark
    const count = from.offset === plan.total ? plan.count : from.offset / plan.size
    if (!isS3Mark(mark) || !Number.isInteger(count) || mark.parts.length < count)
      throw new TargetChangedError(`no parts of ${key} are known to end at ${from.offset}`)
    const kept: S3Mark = { ...mark, parts: mark.parts.slice(0, count) }
    // Parts past the offset (one that did not verify, one a stopped run got acknowledged) are sent again.
    if (!(await this.holds(upload, kept, false)))
      throw new TargetChangedError(`the parts of ${key} are not as the last run left them`)
    return sink(mark.uploadId, mark.parts.slice(0, count))
  }

  /** Whole parts only: S3 keeps nothing of the part in flight until it answers for all of it. */
  acknowledgedOf(upload: { totalSize: number }, written: number): number {
    if (written >= upload.totalSize) return upload.totalSize
    return written - (written % new PartPlan(upload.totalSize).size)
  }

  /** S3 holds exactly the parts the mark says, no more and no other (an exact check: see `holds`). */
  async unchanged(upload: Located, mark: TransferMark | undefined): Promise<boolean> {
    return this.asking(`listing the parts of ${this.stored(upload)}`, () => this.holds(upload, mark, true))
  }

  /**
   * What S3 said, as the service understands it (see outcome): away (StorageUnavailable: wait and try
   * again, as a recovery or a resume does) or refused. Every S3 call the service makes is told so.
   */
  private async asking<T>(what: string, ask: () => Promise<T>): Promise<T> {
    try {
      return await ask()
    } catch (error) {
      throw outcome(this.access, error, what)
    }
  }

  /** Whether S3 holds the mark's parts as they were; `exactly`: and no part past them. */
  private async holds(upload: Located, mark: TransferMark | undefined, exactly: boolean): Promise<boolean> {
    if (!isS3Mark(mark)) return false
    const parts = await listParts(this.access, this.stored(upload), mark.uploadId)
    if (parts === undefined) return false
    if (exactly && parts.some((part) => (part.PartNumber ?? 0) > mark.parts.length)) return false
    const etags = new Map(parts.map((part) => [part.PartNumber, part.ETag]))
    return mark.parts.every((part, i) => etags.get(i + 1) === part.etag)
  }

  /** S3's own record, checked part by part against the staged bytes (see reconcile). */
  async verifiedPrefix(upload: TransferTarget): Promise<Verified> {
    const key = this.stored(upload)
    const verified = await this.asking(`listing the parts of ${key}`, () =>
      reconcile(this.access, key, new PartPlan(upload.totalSize), upload.sha256, (start, end) =>
        this.readStaged(upload.id, start, end),
      ),
    )
    if (isS3Mark(verified.mark)) this.marks.set(upload.id, verified.mark)
    return verified
  }

  async complete(upload: TransferTarget, written?: string, mark?: TransferMark): Promise<void> {
    try {
      await this.completeUpload(upload, written, mark)
    } catch (error) {
      throw outcome(this.access, error, `completing ${this.stored(upload)}`)
    }
  }

  private async completeUpload(
    upload: TransferTarget,
    written?: string,
    given?: TransferMark,
  ): Promise<void> {
    const key = this.stored(upload)
    if (upload.totalSize === 0) {
      if (written !== undefined && written !== upload.sha256)
        throw new StoredBytesMismatch(written, upload.sha256)
      await putWhole(this.access, key, Buffer.alloc(0), { sha256: upload.sha256 })
      return
    }
    const plan = new PartPlan(upload.totalSize)
    // Without the runs' own hash (a restart), the parts are checked against staging again, which hashes it.
    // The runs' mark is the caller's (any instance's last run), else this process's own memory of it.
    const known = written === undefined ? undefined : isS3Mark(given) ? given : this.marks.get(upload.id)
    const verified = known ? undefined : await this.verifiedPrefix(upload)
    const mark = known ?? verified?.mark
    const actual = written ?? verified?.hash.digest('hex') ?? ''
    if (!isS3Mark(mark) || mark.parts.length !== plan.count)
      throw new TargetChangedError(`the transfer into ${key} does not hold every part`)
    if (actual !== upload.sha256) throw new StoredBytesMismatch(actual, upload.sha256)
    try {
      await completeParts(this.access, key, mark, { size: upload.totalSize, sha256: upload.sha256 })
    } catch (error) {
      // NoSuchUpload: completed already (a run that died before its record said so), or aborted by someone.
      if (s3Code(error) !== 'NoSuchUpload') throw error
      if ((await settle(this.access, key, { size: upload.totalSize, sha256: upload.sha256 })) === 'completed')
        return void this.marks.delete(upload.id)
      throw new UploadGoneError(`the multipart upload of ${key} is gone, and no object of it is whole`)
    }
    this.marks.delete(upload.id)
  }

  async storeWhole(upload: TransferTarget, bytes: Buffer): Promise<void> {
    const key = this.stored(upload)
    try {
      await putWhole(this.access, key, bytes, { sha256: upload.sha256 })
    } catch (error) {
      throw outcome(this.access, error, `storing ${key}`)
    }
  }

  // ---- stored ---------------------------------------------------------------------------------------------

  async storedSha256(upload: Located, size: number): Promise<string | undefined> {
    const key = this.stored(upload)
    const head = await this.asking(`looking for ${key}`, () => headObject(this.access, key))
    return head && head.size === size ? head.metadata.sha256 : undefined
  }

  async openStored(upload: Located): Promise<StoredReader> {
    const key = this.stored(upload)
    const head = await this.asking(`looking for ${key}`, () => headObject(this.access, key))
    if (!head) throw new StoredFileMissing(`${key} is not in the bucket`)
    let asked = false
    return {
      size: head.size,
      read: (start, end) => {
        asked = true
        const out = new PassThrough()
        // The ETag holds the reader to the object it looked at: one replaced since is refused, not mixed in.
        readObject(this.access, key, { start, end: end + 1, etag: head.etag }).then(
          (body) => {
            body.on('error', (error) => out.destroy(error))
            out.on('close', () => body.destroy())
            body.pipe(out)
          },
          (error: unknown) => out.destroy(error as Error),
        )
        return out
      },
      close: async () => void asked,
    }
  }

  async downloadUrl(upload: Located, filename: string): Promise<string | undefined> {
    if (this.settings.presignMs === undefined) return undefined
    const command = new GetObjectCommand({
      Bucket: this.access.bucket,
      Key: this.stored(upload),
      // The name the client gave, as a download from this server would say it (RFC 6266's filename*).
      ResponseContentDisposition: `attachment; filename*=UTF-8''${encodeURIComponent(filename)}`,
    })
    return getSignedUrl(this.access.client, command, {
      expiresIn: Math.max(1, Math.floor(this.settings.presignMs / 1000)),
    })
  }

  // ---- removal and recovery -------------------------------------------------------------------------------

  async remove(upload: Located, what: 'staged' | 'transfer' | 'bytes' | 'all'): Promise<void> {
    try {
      await this.removeUpload(upload, what)
    } catch (error) {
      throw outcome(this.access, error, `removing ${what} of upload ${upload.id}`)
    }
  }

  private async removeUpload(upload: Located, what: 'staged' | 'transfer' | 'bytes' | 'all'): Promise<void> {
    const { keys } = this.access
    const multipart: string[] = []
    if (what !== 'transfer') multipart.push(this.staged(upload.id))
    if (what !== 'staged') multipart.push(this.stored(upload))
    for (const key of multipart) {
      for (const open of await listUploads(this.access, key))
        if (open.key === key) await abortUpload(this.access, key, open.uploadId)
    }
    if (what !== 'transfer') {
      // The body's one object, or a resumable upload's pieces; `{id}` is a UUID, so the prefix is its own.
      for (const item of await listObjects(this.access, this.staged(upload.id)))
        await removeObject(this.access, item.key)
      for (const item of await listObjects(this.access, keys.arrivingPrefix))
        if (keys.parseArriving(item.key)?.id === upload.id) await removeObject(this.access, item.key)
    }
    if (what === 'all') await removeObject(this.access, this.stored(upload))
    if (what !== 'staged') this.marks.delete(upload.id)
  }

  /**
   * By upload: its open multipart uploads and its staging objects, with the instance a body arrives at
   * (its marker) and when the oldest of them was begun (for the periodic expiry).
   */
  async leftovers(unfinished: readonly Located[]): Promise<Leftover[]> {
    try {
      return await findLeftovers(this.access, new Set(unfinished.map((upload) => upload.id)))
    } catch (error) {
      throw outcome(this.access, error, 'listing what the bucket holds of unfinished uploads')
    }
  }

  async removeLeftovers(leftovers: readonly Leftover[]): Promise<void> {
    try {
      await removeLeftovers(this.access, leftovers)
    } catch (error) {
      throw outcome(this.access, error, 'removing leftovers')
    }
  }

  async holdsTransfers(): Promise<boolean> {
    return this.asking('listing the transfers in the bucket', () => holdsTransfers(this.access))
  }
}
