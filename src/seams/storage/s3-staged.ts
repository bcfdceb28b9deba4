import { createHash } from 'node:crypto'
import { Readable, Writable } from 'node:stream'
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3'
import type { Arrival, StagedReader, StagingWrite } from './index.js'
import { abortUpload, listObjects, outcome, readObject, removeObject, type S3Access } from './s3-bucket.js'

export const putObject = async (access: S3Access, key: string, body: Buffer): Promise<void> => {
  await access.client.send(
    new PutObjectCommand({
      Bucket: access.bucket,
      Key: key,
      Body: body,
      ChecksumSHA256: createHash('sha256').update(body).digest('base64'),
    }),
  )
}

/**
 * A body arriving into the bucket's staging, part by part, always as a multipart upload (even a body of one
 * part), so nothing of it is staged until `keep()` completes it and `discard()` leaves nothing. A body's
 * length is not known before its end and a part's must be, so each part is gathered in memory first: one part
 * (5 MiB or more) per arrival, the body's stream held back while its part is sent. While it arrives a marker
 * names the instance it arrives at, so start-up elsewhere leaves it alone (see S3Keys).
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
    /** The marker of this arrival (put by `begin` before any byte is sent). */
    readonly marker: string,
    private readonly partSize: number,
  ) {
    this.sink = new Writable({
      write: (chunk: Buffer, _encoding, callback) => {
        this.buffered.push(chunk)
        this.bufferedBytes += chunk.length
        if (this.bufferedBytes < this.partSize) return callback()
        this.sendPart().then(() => callback(), callback)
      },
      // 'finish' means every byte is in S3: the last part is sent first.
      final: (callback) => {
        const last = this.bufferedBytes > 0 || this.parts.length === 0 ? this.sendPart() : Promise.resolve()
        last.then(() => callback(), callback)
      },
    })
  }

  async begin(): Promise<this> {
    await putObject(this.access, this.marker, Buffer.alloc(0)).catch((error: unknown) => {
      throw outcome(this.access, error, `a marker for the body arriving into ${this.key}`)
    })
    return this
  }

  written(): number {
    return this.sent
  }

  private async sendPart(): Promise<void> {
    const body = Buffer.concat(this.buffered)
    this.buffered = []
    this.bufferedBytes = 0
    try {
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
    } catch (error) {
      throw outcome(this.access, error, `a part of the body arriving into ${this.key}`)
    }
  }

  async keep(): Promise<void> {
    if (this.kept) return
    this.kept = true
    try {
      if (this.uploadId !== undefined)
        await this.access.client.send(
          new CompleteMultipartUploadCommand({
            Bucket: this.access.bucket,
            Key: this.key,
            UploadId: this.uploadId,
            MultipartUpload: { Parts: this.parts },
          }),
        )
      await removeObject(this.access, this.marker)
    } catch (error) {
      throw outcome(this.access, error, `keeping the body that arrived into ${this.key}`)
    }
  }

  async discard(): Promise<void> {
    if (this.kept) return
    this.kept = true
    this.sink.destroy()
    this.buffered = []
    try {
      if (this.uploadId !== undefined) await abortUpload(this.access, this.key, this.uploadId)
      await removeObject(this.access, this.marker)
    } catch (error) {
      throw outcome(this.access, error, `discarding the body that arrived into ${this.key}`)
    }
  }
}

/** Bytes gathered before a resumable upload's piece is put: the most a request cut off can lose. */
export const PIECE = 4 * 1024 * 1024

/**
 * More bytes of a resumable upload (tus), put as pieces of at most PIECE bytes each named by its offset:
 * every piece is whole once put, and readable by every instance at once, so any prefix of an upload still
 * arriving can be read (tusd keeps such a tail in a `.part` object for the same reason). A request cut off
 * keeps every piece put before the cut; the bytes gathered for the next one are lost, and `stagedSize` says
 * where the client goes on from.
 */
export class S3Append implements StagingWrite {
  readonly sink: Writable
  private buffered: Buffer[] = []
  private bufferedBytes = 0
  private sent = 0

  constructor(
    private readonly access: S3Access,
    private readonly piece: (offset: number) => string,
    private readonly offset: number,
  ) {
    this.sink = new Writable({
      write: (chunk: Buffer, _encoding, callback) => {
        this.buffered.push(chunk)
        this.bufferedBytes += chunk.length
        if (this.bufferedBytes < PIECE) return callback()
        this.put().then(() => callback(), callback)
      },
      final: (callback) => {
        const last = this.bufferedBytes > 0 ? this.put() : Promise.resolve()
        last.then(() => callback(), callback)
      },
    })
  }

  written(): number {
    return this.sent
  }

  private async put(): Promise<void> {
    const body = Buffer.concat(this.buffered)
    this.buffered = []
    this.bufferedBytes = 0
    const key = this.piece(this.offset + this.sent)
    await putObject(this.access, key, body).catch((error: unknown) => {
      throw outcome(this.access, error, `a piece of a resumable upload into ${key}`)
    })
    this.sent += body.length
  }
}

/** One object of staged bytes and where it starts among them. */
interface Piece {
  key: string
  start: number
  size: number
}

/**
 * The objects holding an upload's staged bytes, in order: the one object of a body, or a resumable upload's
 * pieces as far as they run on from 0 without a gap. Undefined: nothing is staged.
 */
export async function stagedPieces(
  access: S3Access,
  key: string,
  pieceStart: (key: string) => number | undefined,
): Promise<Piece[] | undefined> {
  const listed = await listObjects(access, key).catch((error: unknown) => {
    throw outcome(access, error, `listing the staged bytes under ${key}`)
  })
  const whole = listed.find((item) => item.key === key)
  if (whole) return [{ key, start: 0, size: whole.size }]
  const pieces: Piece[] = []
  let at = 0
  for (const item of listed) {
    const start = item.key.startsWith(`${key}/`) ? pieceStart(item.key) : undefined
    if (start !== at) continue
    pieces.push({ key: item.key, start, size: item.size })
    at += item.size
  }
  return pieces.length > 0 ? pieces : undefined
}

/** The staged bytes [start, end) read piece after piece, each a ranged GET streamed as it is read. */
export function readPieces(
  access: S3Access,
  pieces: () => Promise<Piece[] | undefined>,
  start: number,
  end?: number,
): Readable {
  return Readable.from(
    (async function* () {
      const all = await pieces()
      if (all === undefined) throw new Error('no staged bytes')
      for (const piece of all) {
        const from = Math.max(start, piece.start)
        const to = Math.min(end ?? Infinity, piece.start + piece.size)
        if (to <= from) continue
        const body = await readObject(access, piece.key, {
          start: from - piece.start,
          end: to - piece.start,
        }).catch((error: unknown) => {
          throw outcome(access, error, `reading the staged bytes of ${piece.key}`)
        })
        try {
          yield* body
        } catch (error) {
          // A body cut off or silent past S3_TIMEOUT mid-read: S3 away, like a request it never answered.
          throw outcome(access, error, `reading the staged bytes of ${piece.key}`)
        }
      }
    })(),
    { objectMode: false },
  )
}

/**
 * The staged bytes, read by a transfer moving forward through them: one stream from where it starts, read as
 * the transfer asks, and a new one only when it asks elsewhere (a resume, a recheck).
 */
export class S3StagedReader implements StagedReader {
  private stream: AsyncIterator<Buffer> = (async function* () {})()
  private source: Readable | undefined
  private at = -1
  private rest: Buffer = Buffer.alloc(0)

  constructor(private readonly open: (position: number) => Readable) {}

  async read(buffer: Buffer, offset: number, length: number, position: number): Promise<number> {
    if (position !== this.at) this.reopen(position)
    while (this.rest.length === 0) {
      const next = await this.stream.next().catch((error: unknown) => {
        // Read again from this position next time (a new stream), the failed one is spent.
        this.at = -1
        throw error
      })
      if (next.done) return 0
      this.rest = next.value
    }
    const n = Math.min(length, this.rest.length)
    this.rest.copy(buffer, offset, 0, n)
    this.rest = this.rest.subarray(n)
    this.at += n
    return n
  }

  private reopen(position: number): void {
    this.source?.destroy()
    this.rest = Buffer.alloc(0)
    this.source = this.open(position)
    this.stream = this.source[Symbol.asyncIterator]()
    this.at = position
  }

  async close(): Promise<void> {
    this.source?.destroy()
    this.source = undefined
  }
}
