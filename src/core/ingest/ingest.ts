import busboy from 'busboy'
import { createHash } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { Transform, type Readable, type TransformCallback } from 'node:stream'
import { finished, pipeline } from 'node:stream/promises'
import { bodyError, unavailable } from '../../errors.js'
import { bytesReceived } from '../../metrics.js'
import { StorageUnavailable, type Arrival, type Storage } from '../../seams/storage/index.js'
import { noRoom, type Hold } from '../../seams/storage/room.js'
import { roomFor } from '../machine.js'
import { OffThreadHash } from '../transfer/hasher.js'
import { callerOf, IncomingFile, RequestEnded, type Caller, type StagedFile } from './incoming.js'

export { callerOf, IncomingFile, RequestEnded, type Caller, type StagedFile }

/** Big buffers move a multipart body through busboy to disk in fewer, larger syscalls. */
const STREAM_HWM = 1024 * 1024
/**
 * A file part that ends within this many bytes is held in memory, not staged as it arrives: an upload that
 * nothing paces is then stored from memory at once (Storage.storeWhole), and any other is staged when kept.
 */
export const SMALL_BODY = 64 * 1024
/** Text fields of one request together (GraphQL's `operations` and `map` included). */
export const MAX_FIELD_BYTES = 1024 * 1024
const MAX_FIELDS = 100
const MAX_FILES = 20

/** Where a request's files go, and how much of them one request may bring. */
export interface IngestOptions {
  /** Each file part taken is staged here as it arrives (Storage.receive). */
  storage: Storage
  /** Bytes of files in one request, all of its parts together; one byte more fails it with 413 at once. */
  maxRequestFileBytes: number
  /**
   * Each file part waits, unread, until its taker `approve()`s it (the pre-create hook, HOOKS_URL): its
   * bytes stay in the socket (busboy's backpressure), none reaches storage before the hook said yes.
   */
  approveFirst?: boolean
}

export interface MultipartHandlers {
  /** A text field; throw a ServiceError to refuse the request. */
  onField?(name: string, value: string): void
  /**
   * A file part begins: the IncomingFile it is to be streamed into, or undefined to discard it unread (its
   * bytes still count against the request's limit). Throw a ServiceError to refuse the request.
   */
  fileFor(field: string): IncomingFile | undefined
}

export interface MultipartSession {
  /** Settles when the whole body has arrived and every file taken is on disk, or with what stopped it. */
  done: Promise<void>
  /** Names of every part seen, in order, for messages ("the parts that came were …"). */
  parts: string[]
  /** Stops reading (the request was answered before its body arrived); a finished session is left alone. */
  abort(): void
  /** Removes every staged file nobody moved. Safe to call more than once. */
  dispose(): Promise<void>
}

/** Counts bytes on their way to disk and hashes them on the second core (see hasher.ts). */
class Digest extends Transform {
  readonly hash = new OffThreadHash()
  size = 0
  constructor(
    private readonly count: (n: number) => void,
    private readonly file: IncomingFile,
  ) {
    super({ highWaterMark: STREAM_HWM })
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.size += chunk.length
    this.file.received = this.size
    try {
      this.count(chunk.length)
    } catch (error) {
      return callback(error as Error)
    }
    // Waits only when the worker is 4 MiB behind: memory stays flat, the parse goes on meanwhile.
    this.hash.update(chunk).then(() => callback(null, chunk), callback)
  }
}

/**
 * Browsers and fetch (WHATWG multipart/form-data) send `"`, CR and LF in a filename as %22, %0D and %0A;
 * busboy leaves them so. Undo exactly those, so the name shown is the name the user's file had.
 */
const ESCAPES: Record<string, string> = { '%22': '"', '%0d': '\r', '%0a': '\n' }
const unescapeFilename = (name: string) =>
  name.replace(/%22|%0D|%0A/gi, (escape) => ESCAPES[escape.toLowerCase()] ?? escape)

/** Whether a Content-Type is multipart/form-data: the one test every transport uses. */
export const isMultipart = (contentType: string | null | undefined) =>
  /^multipart\/form-data\b/i.test(contentType ?? '')

/**
 * A full disk, or storage that does not answer, is no client's fault, but the client should hear it plainly
 * (507, 503), and may retry later.
 */
export function storageError(error: Error): Error {
  if (error instanceof StorageUnavailable)
    return unavailable(`Storage did not answer (${error.message}); try again`, error)
  const code = (error as NodeJS.ErrnoException).code
  return code === 'ENOSPC' || code === 'EDQUOT' ? noRoom() : error
}

/**
 * Streams a multipart/form-data request as it arrives: each file part the handlers take goes straight into
 * storage's staging (hashed on the way, never held in memory), others are read and dropped, text fields go to
 * `onField`. The whole request is bounded: its files together by `maxRequestFileBytes`, its text fields
 * together by 1 MiB, at most 20 files and 100 fields. On any failure (a client that goes away, a limit
 * crossed, a malformed body, a handler that refuses) it stops reading, removes what it staged and rejects
 * `done`; every IncomingFile it was given rejects with the same error. Nothing is left behind.
 */
export function receiveMultipart(
  req: IncomingMessage,
  options: IngestOptions,
  handlers: MultipartHandlers,
): MultipartSession {
  const intake = new Intake(req, options, handlers)
  if (!isMultipart(req.headers['content-type'])) {
    const done = Promise.reject(
      bodyError(
        'BAD_USER_INPUT',
        'Expected a multipart/form-data body: send the file with curl -F "file=@path/to/file"',
      ),
    )
    done.catch(() => undefined)
    return { done, parts: intake.parts, abort: () => undefined, dispose: () => intake.dispose() }
  }
  const done = intake.receive()
  done.catch(() => undefined)
  return { done, parts: intake.parts, abort: () => intake.abort(), dispose: () => intake.dispose() }
}

/** Its request's connection closed after its last byte, before the upload was taken: nothing of it is kept. */
const notTaken = () => new RequestEnded('The connection closed before the upload was taken; send it again')

/** A file part being staged, or staged: whoever keeps it takes it over; anything else goes when the request ends. */
interface Staging {
  arrival?: Arrival
  kept: boolean
  /** The room promised for its second copy, once it has arrived. */
  room?: Hold
}

/** One multipart request on its way into storage: its room, its parser, its files and its failure. */
class Intake {
  readonly parts: string[] = []
  private readonly staging = new Set<Staging>()
  /** File parts being read into memory (see SMALL_BODY): a failure stops them as it stops staging. */
  private readonly reading = new Set<Readable>()
  /** The room promised to the whole request; its files' second copies are split off it. */
  private room: Hold | undefined
  /** What stopped the request before the parser ran (it is failed with it as soon as it does). */
  private stopped: Error | undefined
  private failed: Error | undefined
  private settled = false
  private parser: busboy.Busboy | undefined
  private readonly given: IncomingFile[] = []
  private readonly fileWrites: Promise<void>[] = []
  /** Hands each file to its taker once the whole request has arrived. */
  private readonly handOver: (() => void)[] = []
  /** Bytes of this request that reached storage, which leave its room's promise as they do. */
  private landed = 0
  /** Files being written now: their bytes in storage so far count as landed too. */
  private readonly writing = new Set<Arrival>()
  private fileBytes = 0
  private fieldBytes = 0
  private reject: (error: Error) => void = () => undefined

  constructor(
    private readonly req: IncomingMessage,
    private readonly options: IngestOptions,
    private readonly handlers: MultipartHandlers,
  ) {}

  /** Settles when the whole body has arrived and every file taken is staged, or with what stopped it. */
  receive(): Promise<void> {
    const { req } = this
    // Listened for from the first moment, not once room is granted: a client that hangs up (or a caller that
    // answers) while the grant is being measured must still end the request and give its room back.
    req.once('close', () => {
      if (!req.complete)
        this.stop(new RequestEnded('The client closed the connection before the body arrived'))
    })
    req.on('error', (error: Error) => this.stop(error))
    const received = this.grantRoom().then(
      (hold) =>
        new Promise<void>((resolve, reject) => {
          this.room = hold
          this.reject = reject
          if (this.stopped !== undefined || req.destroyed)
            return reject(
              this.stopped ?? new RequestEnded('The client closed the connection before the body arrived'),
            )
          this.parse(hold, resolve)
        }),
    )
    // What the request promised beyond its files' second copies (its own overhead) is anyone's once it ends.
    return received.finally(() => this.room?.release())
  }

  abort(): void {
    if (!this.settled) this.stop(new RequestEnded('The request was answered before its body arrived'))
  }

  /** Removes every staged file nobody kept, and lets their room go. Safe to call more than once. */
  async dispose(): Promise<void> {
    const unkept = [...this.staging].filter((staging) => !staging.kept)
    this.staging.clear()
    for (const staging of unkept) staging.room?.release()
    await Promise.all(unkept.map((staging) => staging.arrival?.discard()))
  }

  /**
   * A body whose declared length cannot fit twice (staging, then the transfer's copy; see room.ts) is refused
   * before a byte of it is read; one that can is promised that room, so no other request counts the same free
   * bytes meanwhile. (A chunked body is granted its room file by file, as each has arrived.)
   */
  private grantRoom(): Promise<Hold> {
    const { room } = this.options.storage
    const declared = Number(this.req.headers['content-length'] ?? NaN)
    return Number.isSafeInteger(declared) ? room.grant(roomFor(declared)) : Promise.resolve(room.hold(0))
  }

  private stop(error: Error): void {
    if (this.parser) this.fail(error)
    else this.stopped ??= error
  }

  /** Runs the body through busboy; `resolve` once it has all arrived and every file taken is staged. */
  private parse(hold: Hold, resolve: () => void): void {
    const { req, options } = this
    let parser: busboy.Busboy
    try {
      parser = busboy({
        headers: req.headers,
        // Keep the name as sent, for display; safeFilename() alone decides what reaches storage.
        preservePath: true,
        // Browsers and curl send UTF-8 names as raw bytes; busboy would read them as latin1.
        defParamCharset: 'utf8',
        highWaterMark: STREAM_HWM,
        fileHwm: STREAM_HWM,
        limits: {
          fileSize: options.maxRequestFileBytes,
          fieldSize: MAX_FIELD_BYTES,
          fields: MAX_FIELDS,
          files: MAX_FILES,
          parts: MAX_FIELDS + MAX_FILES,
        },
      })
    } catch (error) {
      return this.reject(bodyError('BAD_USER_INPUT', `Malformed multipart body: ${(error as Error).message}`))
    }
    this.parser = parser
    hold.track(() => {
      let sum = this.landed
      for (const arrival of this.writing) sum += arrival.written()
      return sum
    })
    parser.on('file', (field, stream, info) => this.onFile(field, stream, info))
    parser.on('field', (name, value, info) => this.onField(name, value, info.valueTruncated))
    parser.on('filesLimit', () =>
      this.fail(bodyError('BAD_USER_INPUT', `Too many files in one request (at most ${MAX_FILES})`)),
    )
    parser.on('fieldsLimit', () =>
      this.fail(bodyError('BAD_USER_INPUT', `Too many fields in one request (at most ${MAX_FIELDS})`)),
    )
    parser.on('partsLimit', () => this.fail(bodyError('BAD_USER_INPUT', 'Too many parts in one request')))
    // `on`, not `once`: busboy can emit more than one error for one bad body, and an unheard one ends the process.
    parser.on('error', (error: Error) =>
      this.fail(bodyError('BAD_USER_INPUT', `Malformed multipart body: ${error.message}`)),
    )
    parser.once('close', () => {
      void Promise.all(this.fileWrites).then(() => {
        if (this.failed) return
        this.settled = true
        for (const give of this.handOver) give()
        resolve()
      })
    })
    req.pipe(parser)
  }

  private tooLarge() {
    return bodyError(
      'PAYLOAD_TOO_LARGE',
      `The files in this request add up to more than the limit of ${this.options.maxRequestFileBytes} bytes`,
    )
  }

  private countFileBytes(n: number): void {
    this.fileBytes += n
    if (this.fileBytes > this.options.maxRequestFileBytes) throw this.tooLarge()
  }

  private fail(error: Error): void {
    if (this.failed) return
    this.failed = error
    // Stop reading but leave the socket open: the caller may still answer (413, 422) before closing it.
    if (this.parser) this.req.unpipe(this.parser)
    for (const { arrival } of this.staging) arrival?.sink.destroy()
    for (const part of this.reading) part.destroy()
    for (const file of this.given) file.reject(error)
    void Promise.allSettled(this.fileWrites)
      .then(() => this.dispose())
      .finally(() => this.reject(error))
  }

  private attempt(step: () => void): void {
    try {
      step()
    } catch (error) {
      this.fail(error as Error)
    }
  }

  private onField(name: string, value: string, truncated: boolean): void {
    this.parts.push(name)
    if (this.failed) return
    this.fieldBytes += Buffer.byteLength(value)
    if (truncated || this.fieldBytes > MAX_FIELD_BYTES)
      return this.fail(
        bodyError(
          'BAD_USER_INPUT',
          `Text fields too large: this request's add up to more than ${MAX_FIELD_BYTES} bytes`,
        ),
      )
    this.attempt(() => this.handlers.onField?.(name, value))
  }

  /** A file part begins: staged if the handlers take it, else read and dropped (but counted). */
  private onFile(field: string, stream: Readable, info: busboy.FileInfo): void {
    // busboy destroys a part's stream with an error when the body is cut off inside it; the parser's own
    // 'error' says so too. Without a listener from the first moment, that error would end the process.
    stream.on('error', () => undefined)
    this.parts.push(field)
    if (this.failed) return void stream.resume()
    let file: IncomingFile | undefined
    try {
      file = this.handlers.fileFor(field)
    } catch (error) {
      this.fail(error as Error)
    }
    stream.once('limit', () => this.fail(this.tooLarge()))
    if (this.failed || !file) {
      // Not stored, never held: read and dropped, but counted, so it cannot be a way around the limit.
      stream.on('data', (chunk: Buffer) => this.attempt(() => this.countFileBytes(chunk.length)))
      return void stream.resume()
    }
    file.filename = unescapeFilename(info.filename ?? '')
    file.mimeType = info.mimeType
    const taken = file
    taken.abort = (reason) => this.fail(reason)
    this.given.push(taken)
    taken.begin()
    this.fileWrites.push(
      this.stageFile(taken, stream).catch((error: Error) => {
        stream.resume()
        this.fail(storageError(error))
      }),
    )
  }

  /**
   * Streams one file part into storage, hashing it; once whole, its second copy's room is promised. A part
   * that ends within SMALL_BODY bytes is held in memory instead (see held).
   */
  private async stageFile(taken: IncomingFile, stream: Readable): Promise<void> {
    const staging: Staging = { kept: false }
    this.staging.add(staging)
    let digest: Digest | undefined
    try {
      // Unread until approved (or refused: the request then fails, and nothing of this part is staged).
      if (this.options.approveFirst) await taken.approved
      if (this.failed) throw this.failed
      const whole = await this.readSmall(taken, stream)
      if (whole) return await this.held(taken, staging, whole)
      // Longer: it goes to staging as it arrives, beginning with what was read of it (put back by readSmall).
      const counting = (digest = new Digest((n) => this.countFileBytes(n), taken))
      const arrival = (staging.arrival = await this.options.storage.receive(taken.id))
      if (this.failed) throw this.failed
      // Answered while storage was opening it: dispose() ran and found nothing to discard yet.
      if (!this.staging.has(staging))
        throw new RequestEnded('The request was answered before its body arrived')
      this.writing.add(arrival)
      await pipeline(stream, counting, arrival.sink).finally(() => {
        this.landed += arrival.written()
        this.writing.delete(arrival)
      })
      if (this.failed) return counting.hash.drop()
      if (!this.staging.has(staging))
        throw new RequestEnded('The request was answered before its body arrived')
      const sha256 = await counting.hash.digest()
      // Staged; its second copy needs as much again, out of the request's promise.
      staging.room = await this.options.storage.room.grant(roomFor(counting.size, counting.size), this.room)
      if (this.failed) throw this.failed
      bytesReceived.inc(counting.size)
      const file: StagedFile = {
        filename: taken.filename,
        mimeType: taken.mimeType,
        size: counting.size,
        sha256,
        room: staging.room,
        keep: async () => {
          // Let go already: the request's connection closed after its last byte, before it was taken.
          if (!this.staging.has(staging)) throw notTaken()
          await arrival.keep()
          staging.kept = true
        },
      }
      this.handOver.push(() => taken.resolve(file))
    } catch (error) {
      digest?.hash.drop()
      // A dispose() that ran while this file was still opening or arriving found nothing (or only a part
      // of it) to discard: whatever was opened goes here.
      if (!this.staging.has(staging)) await staging.arrival?.discard().catch(() => undefined)
      throw error
    }
  }

  /**
   * The whole file part, if it ends within SMALL_BODY bytes. Undefined if it is longer: it is paused then,
   * with what was read of it put back, to be read again. Rejects if it is cut off or the request fails.
   */
  private readSmall(taken: IncomingFile, stream: Readable): Promise<Buffer | undefined> {
    return new Promise<Buffer | undefined>((resolve, reject) => {
      if (stream.destroyed)
        return reject(
          this.failed ?? new RequestEnded('The client closed the connection before the body arrived'),
        )
      this.reading.add(stream)
      const chunks: Buffer[] = []
      let size = 0
      const done = () => {
        this.reading.delete(stream)
        stream.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose)
      }
      const settle = (ended: boolean) => {
        done()
        // A copy of its own: a chunk may be a slice of a much larger buffer it would keep alive.
        const bytes = Buffer.concat(chunks, size)
        // Put back at once, in this 'data' event: a part whose last byte is already buffered would otherwise
        // emit 'end' on the next tick, before anyone could put its bytes back.
        if (ended) return resolve(bytes)
        stream.pause().unshift(bytes)
        resolve(undefined)
      }
      const onData = (chunk: Buffer) => {
        chunks.push(chunk)
        size += chunk.length
        taken.received = size
        if (size > SMALL_BODY) settle(false)
      }
      const onEnd = () => settle(true)
      const onError = (error: Error) => {
        done()
        reject(error)
      }
      const onClose = () => {
        done()
        reject(this.failed ?? new RequestEnded('The client closed the connection before the body arrived'))
      }
      stream.on('data', onData).once('end', onEnd).once('error', onError).once('close', onClose)
    })
  }

  /**
   * A whole part in memory: hashed here, and promised room for both copies out of the request's promise (it
   * lands in storage only when kept, or when stored whole). Keeping it stages it, as a longer part was staged
   * while it arrived.
   */
  private async held(taken: IncomingFile, staging: Staging, bytes: Buffer): Promise<void> {
    this.countFileBytes(bytes.length)
    const sha256 = createHash('sha256').update(bytes).digest('hex')
    staging.room = await this.options.storage.room.grant(roomFor(bytes.length), this.room)
    if (this.failed) throw this.failed
    bytesReceived.inc(bytes.length)
    const { storage } = this.options
    const file: StagedFile = {
      filename: taken.filename,
      mimeType: taken.mimeType,
      size: bytes.length,
      sha256,
      room: staging.room,
      bytes,
      keep: async () => {
        if (!this.staging.has(staging)) throw notTaken()
        try {
          const arrival = (staging.arrival = await storage.receive(taken.id))
          // Let go while storage was opening it: dispose() found nothing to discard yet.
          if (!this.staging.has(staging)) {
            await arrival.discard()
            throw notTaken()
          }
          arrival.sink.end(bytes)
          await finished(arrival.sink)
          await arrival.keep()
        } catch (error) {
          // A disk that filled since its room was promised is a 507, as for a part staged as it arrives.
          throw error instanceof Error ? storageError(error) : error
        }
        staging.kept = true
      },
      stored: () => {
        if (!this.staging.has(staging)) throw notTaken()
      },
    }
    this.handOver.push(() => taken.resolve(file))
  }
}
