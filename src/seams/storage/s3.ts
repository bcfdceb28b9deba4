import { createHash } from 'node:crypto'
import { PassThrough, type Readable } from 'node:stream'
import { CompleteMultipartUploadCommand, GetObjectCommand } from '@aws-sdk/client-s3'
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
  putEmpty,
  settle,
  UploadGoneError,
} from './s3-multipart.js'
import { isS3Mark, S3TransferSink, type S3Mark } from './s3-sink.js'
import { putObject, readPieces, S3Append, S3Arrival, S3StagedReader, stagedPieces } from './s3-staged.js'

/** A leftover as S3 holds it: objects, and multipart uploads of them. */
interface S3Leftover extends Leftover {
  keys: string[]
  uploads: { key: string; uploadId: string }[]
}

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

  /** S3 holds exactly the parts the mark says, no more and no other (an exact check: see `holds`). */
  async unchanged(upload: Located, mark: TransferMark | undefined): Promise<boolean> {
    return this.holds(upload, mark, true)
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

  /**
   * S3's own record (ListParts, every page), checked part by part against the staged bytes' same range: by
   * the part's sha256 where S3 lists it, else by its ETag where that is the part's MD5 (AWS without KMS,
   * MinIO, moto), else by its size alone (a compatible that lists neither; S3 checked each part's sha256
   * trailer when it took it). The staged prefix is read once, to hash it for the transfer to go on from.
   */
  async verifiedPrefix(upload: TransferTarget): Promise<Verified> {
    const key = this.stored(upload)
    const plan = new PartPlan(upload.totalSize)
    const hash = createHash('sha256')
    const found = (await listUploads(this.access, key)).filter((u) => u.key === key)
    if (found.length === 0) return { offset: 0, hash }
    const { uploadId, held } = await openUpload(this.access, key, plan, { sha256: upload.sha256 })
    const parts: HeldPart[] = []
    for (let n = 1, listed = held.get(1); listed !== undefined; listed = held.get(++n)) {
      const [sha, md5] = [createHash('sha256'), createHash('md5')]
      const before = hash.copy()
      for await (const chunk of this.readStaged(upload.id, plan.start(n), plan.end(n))) {
        sha.update(chunk as Buffer)
        md5.update(chunk as Buffer)
        hash.update(chunk as Buffer)
      }
      const ours = sha.digest('base64')
      const etag = listed.etag.replaceAll('"', '')
      const same =
        listed.sha256 !== undefined
          ? listed.sha256 === ours
          : /^[0-9a-f]{32}$/.test(etag)
            ? etag === md5.digest('hex')
            : true
      if (!same) {
        const mark: S3Mark = { kind: 's3', uploadId, parts }
        this.marks.set(upload.id, mark)
        return { offset: plan.start(n), hash: before, mark }
      }
      parts.push({ etag: listed.etag, sha256: ours })
    }
    const mark: S3Mark = { kind: 's3', uploadId, parts }
    this.marks.set(upload.id, mark)
    return { offset: parts.length === plan.count ? plan.total : parts.length * plan.size, hash, mark }
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
      await putEmpty(this.access, key, { sha256: upload.sha256 })
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
      await completeParts(this.access, key, mark)
    } catch (error) {
      // NoSuchUpload: completed already (a run that died before its record said so), or aborted by someone.
      if (s3Code(error) !== 'NoSuchUpload') throw error
      if ((await settle(this.access, key, { size: upload.totalSize, sha256: upload.sha256 })) === 'completed')
        return void this.marks.delete(upload.id)
      throw new UploadGoneError(`the multipart upload of ${key} is gone, and no object of it is whole`)
    }
    const head = await headObject(this.access, key)
    const composite = createHash('sha256')
    for (const part of mark.parts) composite.update(Buffer.from(part.sha256 ?? '', 'base64'))
    const theirs = head?.checksum?.replace(/-\d+$/, '')
    if (
      !head ||
      head.size !== upload.totalSize ||
      (theirs !== undefined && theirs !== composite.digest('base64'))
    ) {
      await removeObject(this.access, key)
      throw new StoredBytesMismatch(`object of ${head?.size ?? 0} bytes, checksum ${theirs}`, upload.sha256)
    }
    this.marks.delete(upload.id)
  }

  // ---- stored ---------------------------------------------------------------------------------------------

  async storedSha256(upload: Located, size: number): Promise<string | undefined> {
    const head = await headObject(this.access, this.stored(upload))
    return head && head.size === size ? head.metadata.sha256 : undefined
  }

  async openStored(upload: Located): Promise<StoredReader> {
    const key = this.stored(upload)
    const head = await headObject(this.access, key)
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
      return await this.findLeftovers(new Set(unfinished.map((upload) => upload.id)))
    } catch (error) {
      throw outcome(this.access, error, 'listing what the bucket holds of unfinished uploads')
    }
  }

  private async findLeftovers(owned: Set<string>): Promise<S3Leftover[]> {
    const { keys } = this.access
    const found = new Map<string, S3Leftover & { since: number; arrivingAt?: string }>()
    const of = (id: string) => {
      let item = found.get(id)
      if (!item) found.set(id, (item = { name: '', id, keys: [], uploads: [], since: Infinity }))
      return item
    }
    const arriving = new Map<string, { key: string; instance: string; modified: number }>()
    for (const item of await listObjects(this.access, keys.arrivingPrefix)) {
      const marker = keys.parseArriving(item.key)
      if (marker)
        arriving.set(marker.id, { key: item.key, instance: marker.instance, modified: item.modified })
    }
    for (const open of await listUploads(this.access, keys.prefix)) {
      const parsed = keys.parse(open.key)
      if (!parsed || owned.has(parsed.id)) continue
      const item = of(parsed.id)
      item.uploads.push({ key: open.key, uploadId: open.uploadId })
      item.since = Math.min(item.since, open.initiated)
    }
    for (const listed of await listObjects(this.access, keys.stagingPrefix)) {
      const parsed = keys.parse(listed.key)
      if (!parsed || owned.has(parsed.id)) continue
      const item = of(parsed.id)
      item.keys.push(listed.key)
      item.since = Math.min(item.since, listed.modified)
    }
    for (const [id, marker] of arriving) {
      if (owned.has(id)) continue
      const item = of(id)
      item.keys.push(marker.key)
      item.arrivingAt = marker.instance
      item.since = Math.min(item.since, marker.modified)
    }
    return [...found.values()].map((item) => ({
      ...item,
      name: [...item.keys, ...item.uploads.map((u) => `${u.key} (multipart ${u.uploadId})`)].join(', '),
    }))
  }

  async removeLeftovers(leftovers: readonly Leftover[]): Promise<void> {
    try {
      for (const item of leftovers as readonly S3Leftover[]) {
        for (const open of item.uploads) await abortUpload(this.access, open.key, open.uploadId)
        for (const key of item.keys) await removeObject(this.access, key)
      }
    } catch (error) {
      throw outcome(this.access, error, 'removing leftovers')
    }
  }

  async holdsTransfers(): Promise<boolean> {
    const { keys } = this.access
    const open = await listUploads(this.access, keys.prefix)
    if (open.some((upload) => keys.parse(upload.key) !== undefined)) return true
    return (await listObjects(this.access, keys.stagingPrefix)).some(
      (item) => keys.parse(item.key) !== undefined,
    )
  }
}

async function completeParts(access: S3Access, key: string, mark: S3Mark): Promise<void> {
  await access.client.send(
    new CompleteMultipartUploadCommand({
      Bucket: access.bucket,
      Key: key,
      UploadId: mark.uploadId,
      MultipartUpload: {
        Parts: mark.parts.map((part, i) => ({
          PartNumber: i + 1,
          ETag: part.etag,
          ChecksumSHA256: part.sha256,
        })),
      },
    }),
  )
}
