import { createHash, type Hash } from 'node:crypto'
import { once } from 'node:events'
import { PassThrough } from 'node:stream'
import { UploadPartCommand } from '@aws-sdk/client-s3'
import { TargetChangedError, type TransferMark, type TransferSink } from './index.js'
import { listParts, s3Code, type S3Access } from './s3-bucket.js'
import { type HeldPart, type PartPlan, UploadGoneError } from './s3-multipart.js'

/** How a run left an S3 transfer: its multipart upload and the parts it holds from part 1 on, in order. */
export interface S3Mark extends TransferMark {
  readonly kind: 's3'
  readonly uploadId: string
  readonly parts: readonly HeldPart[]
}

export const isS3Mark = (mark: TransferMark | undefined): mark is S3Mark => mark?.kind === 's3'

/** The part in flight: its body is fed as the bytes come, and S3's answer settles it. */
interface Sending {
  n: number
  body: PassThrough
  hash: Hash
  answer: Promise<{ ETag?: string; ChecksumSHA256?: string }>
  abort: AbortController
  failed: unknown
}

/**
 * A transfer written into a multipart upload, one part after another, each streamed as the copy paces its
 * bytes (UploadPart, its sha256 sent as a trailer that S3 checks the part against). The bytes of the part in
 * flight are written but not acknowledged: S3 keeps nothing of a part until it answers for the whole of it,
 * so a pause, a failure or a crash loses them, and the next run sends that part again from its start. That
 * is the precision of pause and resume on S3: a pause stops sending at once, and at most one part's bytes are
 * sent twice.
 */
export class S3TransferSink implements TransferSink {
  readonly partSize: number
  private sending: Sending | undefined
  private position: number
  private closed = false

  constructor(
    private readonly access: S3Access,
    readonly key: string,
    readonly uploadId: string,
    readonly plan: PartPlan,
    /** Parts 1..k held before this run, k = from.offset / partSize. */
    private readonly held: HeldPart[],
    /** Told of every part S3 acknowledges (to keep the digests for completion). */
    private readonly onPart: (mark: S3Mark) => void = () => undefined,
  ) {
    this.partSize = plan.size
    this.position = held.length === plan.count ? plan.total : held.length * plan.size
  }

  get mark(): S3Mark {
    return { kind: 's3', uploadId: this.uploadId, parts: [...this.held] }
  }

  acknowledged(): number {
    return this.sending ? this.plan.start(this.sending.n) : this.position
  }

  async write(chunk: Buffer, position: number, guard: () => void): Promise<void> {
    if (this.closed) throw new TargetChangedError(`the transfer into ${this.key} is closed`)
    if (position !== this.position)
      throw new TargetChangedError(`write at ${position} into ${this.key}, which is at ${this.position}`)
    const n = this.plan.partOf(position)
    if (position + chunk.length > this.plan.end(n)) throw new Error(`a write across the end of part ${n}`)
    guard()
    const part = this.sending ?? this.begin(n)
    part.hash.update(chunk)
    this.position += chunk.length
    if (!part.body.write(chunk)) await Promise.race([once(part.body, 'drain'), part.answer])
    if (part.failed !== undefined) throw await this.failure(part.failed)
    if (this.position === this.plan.end(n)) await this.finish(part)
  }

  private begin(n: number): Sending {
    const body = new PassThrough()
    const abort = new AbortController()
    const part: Sending = {
      n,
      body,
      hash: createHash('sha256'),
      abort,
      failed: undefined,
      answer: Promise.resolve({}),
    }
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
        part.failed = error ?? new Error('UploadPart failed')
        return {}
      })
    this.sending = part
    return part
  }

  private async finish(part: Sending): Promise<void> {
    part.body.end()
    const answer = await part.answer
    if (part.failed !== undefined) throw await this.failure(part.failed)
    this.sending = undefined
    const ours = part.hash.digest('base64')
    // S3 checked the part against the trailer; this catches a compatible that stored other bytes anyway.
    if (answer.ChecksumSHA256 !== undefined && answer.ChecksumSHA256 !== ours) {
      this.position = this.plan.start(part.n)
      throw new TargetChangedError(`S3 holds part ${part.n} of ${this.key} with another sha256 than was sent`)
    }
    if (answer.ETag === undefined)
      throw new TargetChangedError(`S3 answered part ${part.n} of ${this.key} without an ETag`)
    this.held[part.n - 1] = { etag: answer.ETag, sha256: ours }
    this.onPart(this.mark)
  }

  /** Drops the part in flight (S3 keeps nothing of it) and goes back to its start. */
  private drop(): void {
    const part = this.sending
    if (!part) return
    this.sending = undefined
    part.abort.abort()
    part.body.destroy()
    this.position = this.plan.start(part.n)
  }

  /**
   * The error a failed part is reported with. The multipart upload being gone is told apart from the rest,
   * since the caller settles it (completed, or started again) rather than retrying: by S3's NoSuchUpload, or,
   * where a compatible answers otherwise (moto: a 500), by asking S3 whether the upload is still there.
   */
  private async failure(error: unknown): Promise<unknown> {
    this.drop()
    const gone = new UploadGoneError(`the multipart upload of ${this.key} is gone`)
    if (s3Code(error) === 'NoSuchUpload') return gone
    const parts = await listParts(this.access, this.key, this.uploadId).catch(() => null)
    return parts === undefined ? gone : error
  }

  async end(whole: boolean): Promise<{ acknowledged: number; mark?: TransferMark }> {
    if (whole && (this.sending || this.position !== this.plan.total))
      throw new TargetChangedError(
        `the transfer into ${this.key} ended at ${this.position} of ${this.plan.total}`,
      )
    this.drop()
    return { acknowledged: this.position, mark: this.mark }
  }

  async close(): Promise<void> {
    this.closed = true
    this.drop()
  }
}
