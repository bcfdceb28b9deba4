import { createHash } from 'node:crypto'
import { PassThrough, Writable, type Readable } from 'node:stream'
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3'
import type { Arrival, StagedReader } from './index.js'
import { abortUpload, readObject, type S3Access } from './s3-bucket.js'

/**
 * A body arriving into the bucket's staging, part by part. A body's length is not known before its end (a
 * multipart form), and a part's must be, so each part is gathered in memory first: one part (5 MiB or more)
 * per arrival, the body's stream held back while its part is sent. Its bytes are the upload's staged bytes
 * only once `keep()` completes the multipart upload; `discard()` aborts it, and S3 keeps nothing.
 */
export class S3Arrival implements Arrival {
  readonly sink: Writable
  private uploadId: string | undefined
  private readonly parts: CompletedPart[] = []
  private buffered: Buffer[] = []
  private bufferedBytes = 0
  private sent = 0
  private kept = false

  constructor(
    private readonly access: S3Access,
    readonly key: string,
    private readonly partSize: number,
  ) {
    this.sink = new Writable({
      write: (chunk: Buffer, _encoding, callback) => {
        this.buffered.push(chunk)
        this.bufferedBytes += chunk.length
        if (this.bufferedBytes < this.partSize) return callback()
        this.sendPart().then(() => callback(), callback)
      },
      // 'finish' means every byte is in S3: the last part (or the whole, if it fits one) is sent first.
      final: (callback) => {
        this.sendLast().then(() => callback(), callback)
      },
    })
  }

  written(): number {
    return this.sent
  }

  private async sendPart(): Promise<void> {
    const body = Buffer.concat(this.buffered)
    this.buffered = []
    this.bufferedBytes = 0
    this.uploadId ??= (
      await this.access.client.send(
        new CreateMultipartUploadCommand({
          Bucket: this.access.bucket,
          Key: this.key,
          ChecksumAlgorithm: 'SHA256',
        }),
      )
    ).UploadId
    const n = this.parts.length + 1
    const sha256 = createHash('sha256').update(body).digest('base64')
    // A Buffer body: the SDK may send it again on a retry, which a stream would not allow.
    const answer = await this.access.client.send(
      new UploadPartCommand({
        Bucket: this.access.bucket,
        Key: this.key,
        UploadId: this.uploadId,
        PartNumber: n,
        Body: body,
        ChecksumSHA256: sha256,
      }),
    )
    this.parts.push({ PartNumber: n, ETag: answer.ETag, ChecksumSHA256: sha256 })
    this.sent += body.length
  }

  private async sendLast(): Promise<void> {
    if (this.uploadId === undefined) {
      // The whole body fits one part: put it in one request, and keep() has nothing left to do.
      const body = Buffer.concat(this.buffered)
      this.buffered = []
      await this.access.client.send(
        new PutObjectCommand({
          Bucket: this.access.bucket,
          Key: `${this.key}`,
          Body: body,
          ChecksumSHA256: createHash('sha256').update(body).digest('base64'),
        }),
      )
      this.sent += body.length
      return
    }
    if (this.bufferedBytes > 0) await this.sendPart()
  }

  async keep(): Promise<void> {
    if (this.kept) return
    this.kept = true
    if (this.uploadId === undefined) return
    await this.access.client.send(
      new CompleteMultipartUploadCommand({
        Bucket: this.access.bucket,
        Key: this.key,
        UploadId: this.uploadId,
        MultipartUpload: { Parts: this.parts },
      }),
    )
  }

  async discard(): Promise<void> {
    if (this.kept) return
    this.kept = true
    this.sink.destroy()
    this.buffered = []
    if (this.uploadId !== undefined) await abortUpload(this.access, this.key, this.uploadId)
  }
}

/** `readObject` as a stream returned at once (the interface's readStaged is synchronous). */
export function readLater(access: S3Access, key: string, start: number, end?: number): Readable {
  const out = new PassThrough()
  readObject(access, key, { start, end }).then(
    (body) => {
      body.on('error', (error) => out.destroy(error))
      out.on('close', () => body.destroy())
      body.pipe(out)
    },
    (error: unknown) => out.destroy(error as Error),
  )
  return out
}

/**
 * The staged object, read by a transfer moving forward through it: one ranged GET from where it starts,
 * read as the transfer asks, and a new one only when it asks elsewhere (a resume, a recheck).
 */
export class S3StagedReader implements StagedReader {
  private stream: AsyncIterator<Buffer> = (async function* () {})()
  private source: Readable | undefined
  private at = -1
  private rest: Buffer = Buffer.alloc(0)

  constructor(
    private readonly access: S3Access,
    private readonly key: string,
  ) {}

  async read(buffer: Buffer, offset: number, length: number, position: number): Promise<number> {
    if (position !== this.at) await this.open(position)
    while (this.rest.length === 0) {
      const next = await this.stream.next()
      if (next.done) return 0
      this.rest = next.value
    }
    const n = Math.min(length, this.rest.length)
    this.rest.copy(buffer, offset, 0, n)
    this.rest = this.rest.subarray(n)
    this.at += n
    return n
  }

  private async open(position: number): Promise<void> {
    this.source?.destroy()
    this.rest = Buffer.alloc(0)
    this.source = await readObject(this.access, this.key, { start: position }).catch((error: unknown) => {
      // Reading at the end of the object: S3 answers 416 for a range that starts past it.
      if ((error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 416)
        return undefined
      throw error
    })
    this.stream = this.source ? this.source[Symbol.asyncIterator]() : (async function* () {})()
    this.at = position
  }

  async close(): Promise<void> {
    this.source?.destroy()
    this.source = undefined
  }
}
