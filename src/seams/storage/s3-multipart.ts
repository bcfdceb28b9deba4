import { createHash, type Hash } from 'node:crypto'
import { once } from 'node:events'
import { PassThrough, type Readable } from 'node:stream'
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
  type CompletedPart,
  type Part,
} from '@aws-sdk/client-s3'
import { abortUpload, headObject, listParts, listUploads, s3Code, type S3Access } from './s3-bucket.js'

/** S3's rules: every part but the last at least 5 MiB, at most 10,000 parts. */
export const MIN_PART = 5 * 1024 * 1024
export const MAX_PARTS = 10_000
const MIB = 1024 * 1024

/**
 * The part size for a file of `total` bytes: the smallest S3 allows, unless the file needs more than 10,000
 * of them. Small parts are what make pause and resume precise: a pause drops the part in flight, and resume
 * sends it again from its start, so at most one part's bytes are sent twice.
 */
export const partSizeFor = (total: number): number =>
  Math.max(MIN_PART, Math.ceil(total / MAX_PARTS / MIB) * MIB)

/**
 * Which bytes each part holds: part n (from 1) is [(n-1)·size, n·size), the last one shorter. Fixed by the
 * file's size alone, so a restart (or another instance) knows every part's range from S3's list of parts
 * without anything of ours having been saved.
 */
export class PartPlan {
  readonly size: number
  readonly count: number
  constructor(
    readonly total: number,
    size = partSizeFor(total),
  ) {
    this.size = size
    this.count = Math.max(1, Math.ceil(total / size))
  }

  start(n: number): number {
    return (n - 1) * this.size
  }

  end(n: number): number {
    return Math.min(this.total, n * this.size)
  }

  partOf(offset: number): number {
    return Math.floor(offset / this.size) + 1
  }
}

/** S3's record of a part it holds, and the sha256 we know its bytes by (base64, as S3 spells it). */
interface HeldPart {
  etag: string
  sha256: string | undefined
}

/** The multipart upload is gone (completed, or aborted by someone): settle it with `settle()`. */
export class UploadGoneError extends Error {
  override readonly name = 'UploadGoneError'
}

/** The bytes did not hash to what they were (at arrival, or per part as S3 holds them). Never retried. */
export class ChecksumMismatchError extends Error {
  override readonly name = 'ChecksumMismatchError'
}

/**
 * Finds the multipart upload S3 holds for `key` (S3's own record, so nothing of ours need have survived a
 * SIGKILL), or starts one. When there are several (a crash between two starts), the one holding the most
 * bytes is kept and the others aborted.
 */
export async function openUpload(
  access: S3Access,
  key: string,
  plan: PartPlan,
  metadata: Record<string, string>,
): Promise<{ uploadId: string; held: Map<number, HeldPart> }> {
  const found = (await listUploads(access, key)).filter((upload) => upload.Key === key && upload.UploadId)
  let best: { uploadId: string; held: Map<number, HeldPart>; bytes: number } | undefined
  for (const upload of found) {
    const parts = await listParts(access, key, upload.UploadId!)
    if (parts === undefined) continue
    const held = usable(parts, plan)
    const bytes = [...held.keys()].reduce((sum, n) => sum + plan.end(n) - plan.start(n), 0)
    if (best === undefined || bytes > best.bytes) {
      if (best) await abortUpload(access, key, best.uploadId)
      best = { uploadId: upload.UploadId!, held, bytes }
    } else await abortUpload(access, key, upload.UploadId!)
  }
  if (best) return best
  const created = await access.client.send(
    new CreateMultipartUploadCommand({
      Bucket: access.bucket,
      Key: key,
      ChecksumAlgorithm: 'SHA256',
      Metadata: metadata,
    }),
  )
  return { uploadId: created.UploadId!, held: new Map() }
}

/** The parts that fit the plan (exact size): a part of another size was sent under another plan. */
function usable(parts: Part[], plan: PartPlan): Map<number, HeldPart> {
  const held = new Map<number, HeldPart>()
  for (const part of parts) {
    const n = part.PartNumber ?? 0
    if (n < 1 || n > plan.count || part.ETag === undefined) continue
    if (part.Size !== plan.end(n) - plan.start(n)) continue
    held.set(n, { etag: part.ETag, sha256: part.ChecksumSHA256 })
  }
  return held
}

/**
 * What NoSuchUpload means for an upload: either it was completed (by this writer before a crash, or by
 * another instance) and the object is there, whole and with the sha256 it was meant to have, or it was
 * aborted and the transfer starts again.
 */
export async function settle(
  access: S3Access,
  key: string,
  expected: { size: number; sha256: string },
): Promise<'completed' | 'restart'> {
  const head = await headObject(access, key)
  return head !== undefined && head.size === expected.size && head.metadata.sha256 === expected.sha256
    ? 'completed'
    : 'restart'
}

const digest64 = (hash: Hash) => hash.digest('base64')

/** The part in flight: its body is fed as the bytes come, and S3's answer settles it. */
interface Sending {
  n: number
  body: PassThrough
  hash: Hash
  /** The whole-file hash as it was at the part's start, to go back to if the part is dropped. */
  restart: Hash
  answer: Promise<{ ETag?: string; ChecksumSHA256?: string }>
  abort: AbortController
  failed: unknown
}

/**
 * A file written into S3 part by part, from its first byte to its last, by a caller that paces the bytes
 * (the transfer engine). Parts S3 holds already are not sent again: their bytes are only hashed.
 *
 * Two counts: `position`, the bytes handed over (sent, or passed over as held), and `stored`, the bytes in
 * parts S3 has acknowledged. The difference is the part in flight: not stored until S3 answers for it, and
 * lost if the writer stops first (a pause, a failure): then `position` goes back to `stored`, and the caller
 * carries on from there.
 */
export class MultipartWriter {
  /** sha256 of every byte before `position`, in order. */
  private hash = createHash('sha256')
  private sending: Sending | undefined
  position = 0

  constructor(
    private readonly access: S3Access,
    readonly key: string,
    readonly uploadId: string,
    readonly plan: PartPlan,
    private readonly held: Map<number, HeldPart>,
  ) {}

  /** Bytes in parts S3 acknowledged, up to `position` (what a restart would keep). */
  get stored(): number {
    return this.sending && !this.held.has(this.sending.n) ? this.plan.start(this.sending.n) : this.position
  }

  /** Whether the bytes at `offset` are in a part S3 holds (the caller need not pace them). */
  holds(offset: number): boolean {
    return this.held.has(this.plan.partOf(offset))
  }

  /**
   * Takes the next bytes of the file. Resolves once they are handed over (a part's last bytes: once S3
   * acknowledged the part). Rejects if S3 failed the part (the writer is then back at `stored`), with
   * UploadGoneError when the upload is gone, or ChecksumMismatchError when a held part's bytes differ.
   */
  async write(chunk: Buffer, signal?: AbortSignal): Promise<void> {
    for (let at = 0; at < chunk.length; ) {
      signal?.throwIfAborted()
      const n = this.plan.partOf(this.position)
      const take = Math.min(chunk.length - at, this.plan.end(n) - this.position)
      const bytes = chunk.subarray(at, at + take)
      const part = this.sending ?? this.begin(n)
      part.hash.update(bytes)
      this.hash.update(bytes)
      this.position += take
      at += take
      if (this.held.has(n)) {
        if (this.position === this.plan.end(n)) this.passHeld(part)
        continue
      }
      if (!part.body.write(bytes)) await Promise.race([once(part.body, 'drain'), part.answer])
      if (part.failed !== undefined) throw this.dropped(part.failed)
      if (this.position === this.plan.end(n)) await this.finish(part)
    }
  }

  private begin(n: number): Sending {
    const body = new PassThrough()
    const abort = new AbortController()
    const part: Sending = {
      n,
      body,
      hash: createHash('sha256'),
      restart: this.hash.copy(),
      abort,
      failed: undefined,
      answer: Promise.resolve({}),
    }
    if (!this.held.has(n)) {
      // The SDK streams the body and sends its sha256 as a trailer: S3 checks the part against it.
      part.answer = this.access.streams
        .send(
          new UploadPartCommand({
            Bucket: this.access.bucket,
            Key: this.key,
            UploadId: this.uploadId,
            PartNumber: n,
            Body: body,
            ContentLength: this.plan.end(n) - this.plan.start(n),
            ChecksumAlgorithm: 'SHA256',
          }),
          { abortSignal: abort.signal },
        )
        .catch((error: unknown) => {
          part.failed = error
          return {}
        })
    }
    this.sending = part
    return part
  }

  private passHeld(part: Sending): void {
    this.sending = undefined
    const known = this.held.get(part.n)!.sha256
    const ours = digest64(part.hash)
    if (known === undefined) return void this.held.set(part.n, { ...this.held.get(part.n)!, sha256: ours })
    if (known === ours) return
    // S3 holds other bytes for this part than staging has: they are sent again from the part's start.
    this.held.delete(part.n)
    this.position = this.plan.start(part.n)
    this.hash = part.restart
    throw new ChecksumMismatchError(`part ${part.n} of ${this.key} as S3 holds it differs from the source`)
  }

  private async finish(part: Sending): Promise<void> {
    part.body.end()
    const answer = await part.answer
    if (part.failed !== undefined) throw this.dropped(part.failed)
    const ours = digest64(part.hash)
    this.sending = undefined
    // S3 checked the trailer against what it received; a compatible that does not check may answer none.
    if (answer.ChecksumSHA256 !== undefined && answer.ChecksumSHA256 !== ours) {
      this.position = this.plan.start(part.n)
      this.hash = part.restart
      throw new ChecksumMismatchError(`S3 stored part ${part.n} of ${this.key} with another sha256`)
    }
    this.held.set(part.n, { etag: answer.ETag!, sha256: ours })
  }

  /** Drops the part in flight and goes back to its start; the error to throw for it. */
  private dropped(error: unknown): unknown {
    const part = this.sending
    if (part) {
      part.abort.abort()
      part.body.destroy()
      this.position = this.plan.start(part.n)
      this.hash = part.restart
      this.sending = undefined
    }
    return s3Code(error) === 'NoSuchUpload' ? new UploadGoneError(`the multipart upload of ${this.key} is gone`) : error
  }

  /** A pause or a stop: the part in flight is dropped (S3 keeps nothing of it); `position` is `stored` again. */
  stop(): void {
    this.dropped(undefined)
  }

  /**
   * Makes the object whole, once every part is held and the bytes hash to `sha256` (hex; the upload's, taken
   * as they arrived). A mismatch completes nothing: no object appears with bytes other than the upload's.
   */
  async complete(sha256: string): Promise<void> {
    if (this.position !== this.plan.total || this.sending) throw new Error('complete() before every byte was written')
    const ours = this.hash.copy().digest('hex')
    if (ours !== sha256)
      throw new ChecksumMismatchError(`the bytes written to ${this.key} hash to ${ours}, not ${sha256}`)
    const parts: CompletedPart[] = []
    for (let n = 1; n <= this.plan.count; n++) {
      const part = this.held.get(n)
      if (!part) throw new Error(`part ${n} of ${this.key} is missing`)
      parts.push({ PartNumber: n, ETag: part.etag, ChecksumSHA256: part.sha256 })
    }
    try {
      await this.access.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.access.bucket,
          Key: this.key,
          UploadId: this.uploadId,
          MultipartUpload: { Parts: parts },
        }),
      )
    } catch (error) {
      if (s3Code(error) === 'NoSuchUpload') throw new UploadGoneError(`the multipart upload of ${this.key} is gone`)
      throw error
    }
  }

  /** Cancel: nothing of the upload is left (S3 drops every part it holds). */
  async abort(): Promise<void> {
    this.stop()
    await abortUpload(this.access, this.key, this.uploadId)
  }
}

/** An empty file: S3 takes no multipart upload of no bytes, so it is put whole. */
export async function putEmpty(access: S3Access, key: string, metadata: Record<string, string>): Promise<void> {
  await access.client.send(
    new PutObjectCommand({
      Bucket: access.bucket,
      Key: key,
      Body: Buffer.alloc(0),
      ChecksumSHA256: createHash('sha256').digest('base64'),
      Metadata: metadata,
    }),
  )
}

/** Feeds a readable's bytes to a writer: what a test or a bench does where the engine would pace them. */
export async function writeAllFrom(writer: MultipartWriter, source: Readable, signal?: AbortSignal): Promise<void> {
  for await (const chunk of source) await writer.write(chunk as Buffer, signal)
}
