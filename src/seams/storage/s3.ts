import { createHash } from 'node:crypto'
import { PassThrough, type Readable } from 'node:stream'
import { CompleteMultipartUploadCommand } from '@aws-sdk/client-s3'
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
  listKeys,
  listParts,
  listUploads,
  openS3,
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
import { readLater, S3Arrival, S3StagedReader } from './s3-staged.js'

/** A leftover as S3 holds it: an object, or a multipart upload of one. */
interface S3Leftover extends Leftover {
  key: string
  uploadId?: string
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

  constructor(
    private readonly settings: S3Settings,
    /** The largest body accepted: sizes the parts of an arrival, whose length is unknown until its end. */
    private readonly maxUploadSize = 10 * 1024 ** 3,
  ) {
    this.access = openS3(settings)
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
    return new S3Arrival(this.access, this.staged(id), partSizeFor(this.maxUploadSize))
  }

  async createStaged(): Promise<void> {
    throw new Error('tus uploads into S3 are not built yet (issue 21, second round)')
  }

  async append(): Promise<StagingWrite> {
    throw new Error('tus uploads into S3 are not built yet (issue 21, second round)')
  }

  async stagedSize(id: string): Promise<number | undefined> {
    return (await headObject(this.access, this.staged(id)))?.size
  }

  readStaged(id: string, start = 0, end?: number): Readable {
    return readLater(this.access, this.staged(id), start, end)
  }

  async openStaged(id: string): Promise<StagedReader> {
    return new S3StagedReader(this.access, this.staged(id))
  }

  // ---- transfer -------------------------------------------------------------------------------------------

  async openTransfer(
    upload: TransferTarget,
    from: { offset: number; mark?: TransferMark },
  ): Promise<TransferSink> {
    const key = this.stored(upload)
    const plan = new PartPlan(upload.totalSize)
    const remember = (mark: S3Mark) => this.marks.set(upload.id, mark)
    if (from.offset === 0) {
      // Started over: whatever an earlier transfer left goes, so no part of it is ever completed with ours.
      for (const old of await listUploads(this.access, key))
        if (old.key === key) await abortUpload(this.access, key, old.uploadId)
      const { uploadId } = await openUpload(this.access, key, plan, { sha256: upload.sha256 })
      return new S3TransferSink(this.access, key, uploadId, plan, [], remember)
    }
    const mark = from.mark
    const count = from.offset === plan.total ? plan.count : from.offset / plan.size
    if (!isS3Mark(mark) || !Number.isInteger(count) || mark.parts.length < count)
      throw new TargetChangedError(`no parts of ${key} are known to end at ${from.offset}`)
    const kept: S3Mark = { ...mark, parts: mark.parts.slice(0, count) }
    if (!(await this.unchanged(upload, kept)))
      throw new TargetChangedError(`the parts of ${key} are not as the last run left them`)
    return new S3TransferSink(this.access, key, mark.uploadId, plan, mark.parts.slice(0, count), remember)
  }

  async unchanged(upload: Located, mark: TransferMark | undefined): Promise<boolean> {
    if (!isS3Mark(mark)) return false
    const parts = await listParts(this.access, this.stored(upload), mark.uploadId)
    if (parts === undefined) return false
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
      for await (const chunk of readLater(this.access, this.staged(upload.id), plan.start(n), plan.end(n))) {
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

  async complete(upload: TransferTarget, written?: string): Promise<void> {
    const key = this.stored(upload)
    if (upload.totalSize === 0) {
      if (written !== undefined && written !== upload.sha256)
        throw new StoredBytesMismatch(written, upload.sha256)
      await putEmpty(this.access, key, { sha256: upload.sha256 })
      return
    }
    const plan = new PartPlan(upload.totalSize)
    // Without the runs' own hash (a restart), the parts are checked against staging again, which hashes it.
    const known = written === undefined ? undefined : this.marks.get(upload.id)
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

  // ---- removal and recovery -------------------------------------------------------------------------------

  async remove(upload: Located, what: 'staged' | 'transfer' | 'bytes' | 'all'): Promise<void> {
    const keys: string[] = []
    if (what !== 'transfer') keys.push(this.staged(upload.id))
    if (what !== 'staged') keys.push(this.stored(upload))
    for (const key of keys) {
      for (const open of await listUploads(this.access, key))
        if (open.key === key) await abortUpload(this.access, key, open.uploadId)
    }
    if (what !== 'transfer') await removeObject(this.access, this.staged(upload.id))
    if (what === 'all') await removeObject(this.access, this.stored(upload))
    if (what !== 'staged') this.marks.delete(upload.id)
  }

  async leftovers(unfinished: readonly Located[]): Promise<Leftover[]> {
    const owned = new Set(unfinished.map((upload) => upload.id))
    const { keys } = this.access
    const found: S3Leftover[] = []
    for (const open of await listUploads(this.access, keys.prefix)) {
      const of = keys.parse(open.key)
      if (of && !owned.has(of.id))
        found.push({
          name: `${open.key} (multipart ${open.uploadId})`,
          id: of.id,
          key: open.key,
          uploadId: open.uploadId,
        })
    }
    for (const key of await listKeys(this.access, keys.stagingPrefix)) {
      const of = keys.parse(key)
      if (of && !owned.has(of.id)) found.push({ name: key, id: of.id, key })
    }
    return found
  }

  async removeLeftovers(leftovers: readonly Leftover[]): Promise<void> {
    for (const item of leftovers as readonly S3Leftover[]) {
      if (item.uploadId !== undefined) await abortUpload(this.access, item.key, item.uploadId)
      else await removeObject(this.access, item.key)
    }
  }

  async holdsTransfers(): Promise<boolean> {
    const { keys } = this.access
    const open = await listUploads(this.access, keys.prefix)
    if (open.some((upload) => keys.parse(upload.key) !== undefined)) return true
    return (await listKeys(this.access, keys.stagingPrefix)).some((key) => keys.parse(key) !== undefined)
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
