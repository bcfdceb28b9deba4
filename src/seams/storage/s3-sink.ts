import { createHash, type Hash } from 'node:crypto'
import { once } from 'node:events'
import { PassThrough, type Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { UploadPartCommand } from '@aws-sdk/client-s3'
import { log } from '../../log.js'
import { StorageUnavailable, TargetChangedError, type TransferMark, type TransferSink } from './index.js'
import { describe, isTransient, listParts, outcome, s3Code, type S3Access } from './s3-bucket.js'
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

/** Waits between tries of a part S3 did not answer: 0.5 s doubling, at most 8 s, for as long as it takes. */
const backoff = (tries: number) => Math.min(500 * 2 ** tries, 8000)

/**
 * A transfer written into a multipart upload, one part after another, each streamed as the copy paces its
 * bytes (UploadPart, its sha256 sent as a trailer that S3 checks the part against). The bytes of the part in
 * flight are written but not acknowledged: S3 keeps nothing of a part until it answers for the whole of it,
 * so a pause, a failure or a crash loses them, and the next run sends that part again from its start. That
 * is the precision of pause and resume on S3: a pause stops sending at once, and at most one part's bytes are
 * sent twice.
 *
 * S3 away (no answer within S3_TIMEOUT, a reset, 5xx): the part is sent again from its start after a wait,
 * its bytes read again from staging (never kept in memory, so memory stays flat) and checked against the
 * sha256 of what the copy handed over, for as long as S3 stays away or until the run is stopped (`signal`) or
 * loses its lease (`guard`). The copy waits meanwhile. S3 refusing (4xx): StorageRefused, the upload fails.
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
    private readonly onPart: (mark: S3Mark) => void,
    /** The staged bytes [start, end), to send a part again from. */
    private readonly staged: (start: number, end: number) => Readable,
    private readonly signal?: AbortSignal,
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
    this.signal?.throwIfAborted()
    guard()
    let part = this.sending ?? this.begin(n)
    part.hash.update(chunk)
    this.position += chunk.length
    // A copy: the caller reads its next chunk into this buffer while the socket may still hold these bytes.
    if (!part.body.write(Buffer.from(chunk)))
      await this.wait(Promise.race([once(part.body, 'drain'), part.answer]))
    if (part.failed !== undefined) part = await this.again(part, part.failed, guard)
    if (this.position === this.plan.end(n)) await this.finish(part, guard)
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

  private async finish(part: Sending, guard: () => void): Promise<void> {
    for (;;) {
      part.body.end()
      const answer = await this.wait(part.answer)
      if (part.failed !== undefined) {
        part = await this.again(part, part.failed, guard)
        continue
      }
      this.sending = undefined
      const ours = part.hash.digest('base64')
      // S3 checked the part against the trailer; this catches a compatible that stored other bytes anyway.
      if (answer.ChecksumSHA256 !== undefined && answer.ChecksumSHA256 !== ours) {
        this.position = this.plan.start(part.n)
        throw new TargetChangedError(
          `S3 holds part ${part.n} of ${this.key} with another sha256 than was sent`,
        )
      }
      if (answer.ETag === undefined)
        throw new TargetChangedError(`S3 answered part ${part.n} of ${this.key} without an ETag`)
      this.held[part.n - 1] = { etag: answer.ETag, sha256: ours }
      this.onPart(this.mark)
      return
    }
  }

  /**
   * The part failed. Gone (completed or aborted by someone) or refused: thrown. Away: after a wait, the part
   * is begun again and fed from staging up to where the copy got, and goes on from there.
   */
  private async again(part: Sending, error: unknown, guard: () => void): Promise<Sending> {
    for (let tries = 0; ; tries++) {
      const why = await this.failure(error)
      if (why !== undefined) throw why
      this.access.counts.retries++
      log('warn', 's3.part_retry', { key: this.key, part: part.n, tries: tries + 1, reason: describe(error) })
      await this.wait(sleep(backoff(tries), undefined, { signal: this.signal }))
      this.signal?.throwIfAborted()
      guard()
      const wanted = part.hash.copy().digest('base64')
      const hash = part.hash
      const fresh = this.begin(part.n)
      try {
        for await (const chunk of this.staged(this.plan.start(part.n), this.position)) {
          fresh.hash.update(chunk as Buffer)
          if (!fresh.body.write(chunk))
            await this.wait(Promise.race([once(fresh.body, 'drain'), fresh.answer]))
          if (fresh.failed !== undefined) break
        }
      } catch (readError) {
        // Staging itself did not answer (the same S3): try again later; anything else is the upload's end.
        if (!(readError instanceof StorageUnavailable) && !isTransient(readError)) throw readError
        fresh.failed ??= readError
      }
      if (fresh.failed !== undefined) {
        error = fresh.failed
        this.quit(fresh)
        part = { ...fresh, hash }
        continue
      }
      if (fresh.hash.copy().digest('base64') !== wanted)
        throw new TargetChangedError(
          `the staged bytes of part ${part.n} of ${this.key} are not what was written`,
        )
      return fresh
    }
  }

  /** Why a failed part cannot be sent again (gone, refused), or undefined: S3 is away, try again. */
  private async failure(error: unknown): Promise<Error | undefined> {
    const gone = new UploadGoneError(`the multipart upload of ${this.key} is gone`)
    if (s3Code(error) === 'NoSuchUpload') return gone
    if (error instanceof Error && error.name === 'AbortError') return error
    if (isTransient(error)) {
      // moto answers a part of an aborted upload with a 500: asking tells that apart from S3 away.
      const parts = await listParts(this.access, this.key, this.uploadId).catch(() => null)
      return parts === undefined ? gone : undefined
    }
    return outcome(this.access, error, `part ${this.sending?.n ?? ''} of ${this.key}`)
  }

  /** Resolves with `promise`, or rejects with the run's stop as soon as it is stopped. */
  private async wait<T>(promise: Promise<T>): Promise<T> {
    const signal = this.signal
    if (!signal) return promise
    signal.throwIfAborted()
    let stop: () => void = () => undefined
    const stopped = new Promise<never>((_, reject) => {
      stop = () => reject(signal.reason as Error)
      signal.addEventListener('abort', stop, { once: true })
    })
    try {
      return await Promise.race([promise, stopped])
    } finally {
      signal.removeEventListener('abort', stop)
    }
  }

  private quit(part: Sending): void {
    part.abort.abort()
    part.body.destroy()
    if (this.sending === part) this.sending = undefined
  }

  /** Drops the part in flight (S3 keeps nothing of it) and goes back to its start. */
  private drop(): void {
    const part = this.sending
    if (!part) return
    this.quit(part)
    this.position = this.plan.start(part.n)
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
