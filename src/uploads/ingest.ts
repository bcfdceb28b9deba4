import busboy from 'busboy'
import { randomUUID } from 'node:crypto'
import { createWriteStream, type WriteStream } from 'node:fs'
import { rename, rm } from 'node:fs/promises'
import type { IncomingMessage } from 'node:http'
import { Transform, type TransformCallback } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { bodyError } from '../errors.js'
import { bytesReceived } from '../metrics.js'
import { OffThreadHash } from '../core/transfer/hasher.js'
import { roomFor } from '../core/machine.js'
import { noRoom, type Hold } from './room.js'
import type { Storage } from './storage.js'

/** Big buffers move a multipart body through busboy to disk in fewer, larger syscalls. */
const STREAM_HWM = 1024 * 1024
/** Text fields of one request together (GraphQL's `operations` and `map` included). */
export const MAX_FIELD_BYTES = 1024 * 1024
const MAX_FIELDS = 100
const MAX_FILES = 20

export interface IngestLimits {
  storage: Storage
  /** Bytes of files in one request, all of its parts together; one byte more fails it with 413 at once. */
  maxRequestFileBytes: number
}

/** The request ended before its body did: the client went away, or was answered early. Nobody to tell. */
export class RequestEnded extends Error {
  override readonly name = 'RequestEnded'
}

/** A file that has arrived whole in the staging folder, hashed on the way. */
export interface StagedFile {
  readonly filename: string
  readonly mimeType: string
  readonly size: number
  /** Hex sha256 of the bytes as they arrived. */
  readonly sha256: string
  /** The room promised for its second copy (see room.ts): whoever moves the file takes it over. */
  readonly room: Hold
  /** Takes the file over: whatever nobody moved is removed (and its room let go) when its request ends. */
  moveTo(destination: string): Promise<void>
}

/**
 * A file part of a request that is still arriving. Transports hand it to resolvers as soon as the request
 * says a file will come (GraphQL: at `map`; REST: when the `file` part begins), so every other argument is
 * checked, and refused, before the file's bytes are read. `arrived` settles once the whole request has
 * arrived (a request is taken whole or refused whole: a file whose request is refused later, for a later
 * part, a limit or a cut connection, is never kept), or with the error that stopped the request.
 */
export class IncomingFile {
  filename = ''
  mimeType = ''
  /** Bytes of it received so far. */
  received = 0
  /** Settles once the part begins (its filename known), or with what stopped the request first. */
  readonly began: Promise<void>
  readonly arrived: Promise<StagedFile>
  /** Stops the request that carries it (the upload was canceled while it arrived); set by the ingest. */
  abort: (reason: Error) => void = () => {}
  private settle!: { resolve: (file: StagedFile) => void; reject: (error: Error) => void }
  private start!: { resolve: () => void; reject: (error: Error) => void }

  constructor(
    /** The part's field name, for messages. */
    readonly field: string,
  ) {
    this.began = new Promise<void>((resolve, reject) => (this.start = { resolve, reject }))
    this.arrived = new Promise<StagedFile>((resolve, reject) => (this.settle = { resolve, reject }))
    // Nobody may ever await them (a resolver that refused its other arguments first): that is no crash.
    this.began.catch(() => undefined)
    this.arrived.catch(() => undefined)
  }

  /** @internal the ingest, as the part begins */
  begin(): void {
    this.start.resolve()
  }

  /** @internal the ingest */
  resolve(file: StagedFile): void {
    this.settle.resolve(file)
  }

  /** @internal the ingest, or a transport whose request ended without this part */
  reject(error: Error): void {
    this.start.reject(error)
    this.settle.reject(error)
  }
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

/** A full disk is no client's fault, but the client should hear it plainly, and may retry later. */
export function storageError(error: Error): Error {
  const code = (error as NodeJS.ErrnoException).code
  return code === 'ENOSPC' || code === 'EDQUOT'
    ? noRoom()
    : error
}

/**
 * Streams a multipart/form-data request as it arrives: each file part the handlers take goes straight into
 * a staging file (hashed on the way, never held in memory), others are read and dropped, text fields go to
 * `onField`. The whole request is bounded: its files together by `maxRequestFileBytes`, its text fields
 * together by 1 MiB, at most 20 files and 100 fields. On any failure (a client that goes away, a limit
 * crossed, a malformed body, a handler that refuses) it stops reading, removes what it staged and rejects
 * `done`; every IncomingFile it was given rejects with the same error. Nothing is left behind.
 */
export function receiveMultipart(
  req: IncomingMessage,
  limits: IngestLimits,
  handlers: MultipartHandlers,
): MultipartSession {
  const parts: string[] = []
  const writing = new Set<string>()
  const staged = new Map<string, { moved: boolean; room: Hold }>()
  const dispose = async () => {
    const unmoved = [...staged].filter(([, s]) => !s.moved)
    for (const [, entry] of unmoved) entry.room.release()
    const paths = [...writing, ...unmoved.map(([path]) => path)]
    writing.clear()
    staged.clear()
    await Promise.all(paths.map((path) => rm(path, { force: true })))
  }
  let abort = () => {}
  if (!isMultipart(req.headers['content-type'])) {
    const done = Promise.reject(
      bodyError('BAD_USER_INPUT', 'Expected a multipart/form-data body: send the file with curl -F "file=@path/to/file"'),
    )
    done.catch(() => undefined)
    return { done, parts, abort, dispose }
  }

  // A body whose declared length cannot fit twice (staging, then the transfer's copy in .transfers; see room.ts) is refused before a byte of it is read; one
  // that can is promised that room, so no other request counts the same free bytes meanwhile. (A chunked
  // body is granted its room file by file, as each has arrived.)
  const declared = Number(req.headers['content-length'] ?? NaN)
  const granted = Number.isSafeInteger(declared)
    ? limits.storage.room.grant(roomFor(declared))
    : Promise.resolve(limits.storage.room.hold(0))
  let room: Hold | undefined
  // Listened for from the first moment, not once room is granted: a client that hangs up (or a caller that
  // answers) while the grant is being measured must still end the request and give its room back.
  let stopped: Error | undefined
  let stop: (error: Error) => void = (error) => {
    stopped ??= error
  }
  let settled = false
  abort = () => {
    if (!settled) stop(new RequestEnded('The request was answered before its body arrived'))
  }
  // A client that goes away mid-body: its request never completes.
  req.once('close', () => {
    if (!req.complete) stop(new RequestEnded('The client closed the connection before the body arrived'))
  })
  req.on('error', (error: Error) => stop(error))

  const received = granted.then((hold) => new Promise<void>((resolve, reject) => {
    room = hold
    if (stopped !== undefined || req.destroyed) {
      reject(stopped ?? new RequestEnded('The client closed the connection before the body arrived'))
      return
    }
    let parser: busboy.Busboy
    try {
      parser = busboy({
        headers: req.headers,
        // Keep the name as sent, for display; safeFilename() alone decides what reaches the disk.
        preservePath: true,
        // Browsers and curl send UTF-8 names as raw bytes; busboy would read them as latin1.
        defParamCharset: 'utf8',
        highWaterMark: STREAM_HWM,
        fileHwm: STREAM_HWM,
        limits: {
          fileSize: limits.maxRequestFileBytes,
          fieldSize: MAX_FIELD_BYTES,
          fields: MAX_FIELDS,
          files: MAX_FILES,
          parts: MAX_FIELDS + MAX_FILES,
        },
      })
    } catch (error) {
      reject(bodyError('BAD_USER_INPUT', `Malformed multipart body: ${(error as Error).message}`))
      return
    }

    const given: IncomingFile[] = []
    const fileWrites: Promise<void>[] = []
    /** Hands each file to its taker once the whole request has arrived. */
    const handOver: (() => void)[] = []
    const sinks = new Set<WriteStream>()
    // Bytes of this request that reached the disk, which leave its room's promise as they do.
    let landed = 0
    hold.track(() => {
      let sum = landed
      for (const sink of sinks) sum += sink.bytesWritten
      return sum
    })
    let fileBytes = 0
    let fieldBytes = 0
    let failed: Error | undefined
    const tooLarge = () =>
      bodyError(
        'PAYLOAD_TOO_LARGE',
        `The files in this request add up to more than the limit of ${limits.maxRequestFileBytes} bytes`,
      )
    const countFileBytes = (n: number) => {
      fileBytes += n
      if (fileBytes > limits.maxRequestFileBytes) throw tooLarge()
    }
    const fail = (error: Error) => {
      if (failed) return
      failed = error
      // Stop reading but leave the socket open: the caller may still answer (413, 422) before closing it.
      req.unpipe(parser)
      for (const sink of sinks) sink.destroy()
      for (const file of given) file.reject(error)
      void Promise.allSettled(fileWrites)
        .then(dispose)
        .finally(() => reject(error))
    }
    stop = fail
    const attempt = (step: () => void) => {
      try {
        step()
      } catch (error) {
        fail(error as Error)
      }
    }

    parser.on('file', (field, stream, info) => {
      // busboy destroys a part's stream with an error when the body is cut off inside it; the parser's own
      // 'error' says so too. Without a listener from the first moment, that error would end the process.
      stream.on('error', () => undefined)
      parts.push(field)
      if (failed) return void stream.resume()
      let file: IncomingFile | undefined
      try {
        file = handlers.fileFor(field)
      } catch (error) {
        fail(error as Error)
      }
      stream.once('limit', () => fail(tooLarge()))
      if (failed || !file) {
        // Not stored, never held: read and dropped, but counted, so it cannot be a way around the limit.
        stream.on('data', (chunk: Buffer) => attempt(() => countFileBytes(chunk.length)))
        return void stream.resume()
      }
      const taken = file
      taken.filename = unescapeFilename(info.filename ?? '')
      taken.mimeType = info.mimeType
      taken.abort = (reason) => fail(reason)
      given.push(taken)
      taken.begin()
      const path = limits.storage.incomingPath(randomUUID())
      writing.add(path)
      const digest = new Digest(countFileBytes, taken)
      // Someone may have removed the staging folder while we ran; recreating it costs one syscall.
      const write = limits.storage
        .prepare()
        .then(() => {
          if (failed) throw failed
          const sink = createWriteStream(path, { flags: 'wx', highWaterMark: STREAM_HWM })
          sinks.add(sink)
          return pipeline(stream, digest, sink).finally(() => {
            landed += sink.bytesWritten
            sinks.delete(sink)
          })
        })
        .then(async () => {
          if (failed) return digest.hash.drop()
          const sha256 = await digest.hash.digest()
          // Its staging copy is on disk; its second copy needs as much again, out of the request's promise.
          const second = await limits.storage.room.grant(roomFor(digest.size, digest.size), hold)
          const entry = { moved: false, room: second }
          staged.set(path, entry)
          writing.delete(path)
          if (failed) throw failed
          bytesReceived.inc(digest.size)
          let at = path
          const file: StagedFile = {
            filename: taken.filename,
            mimeType: taken.mimeType,
            size: digest.size,
            sha256,
            room: second,
            async moveTo(destination) {
              await rename(at, destination)
              staged.delete(at)
              at = destination
              entry.moved = true
            },
          }
          handOver.push(() => taken.resolve(file))
        })
        .catch((error: Error) => {
          digest.hash.drop()
          stream.resume()
          fail(storageError(error))
        })
      fileWrites.push(write)
    })
    parser.on('field', (name, value, info) => {
      parts.push(name)
      if (failed) return
      fieldBytes += Buffer.byteLength(value)
      if (info.valueTruncated || fieldBytes > MAX_FIELD_BYTES) {
        return fail(bodyError('BAD_USER_INPUT', `Text fields too large: this request's add up to more than ${MAX_FIELD_BYTES} bytes`))
      }
      attempt(() => handlers.onField?.(name, value))
    })
    parser.on('filesLimit', () => fail(bodyError('BAD_USER_INPUT', `Too many files in one request (at most ${MAX_FILES})`)))
    parser.on('fieldsLimit', () => fail(bodyError('BAD_USER_INPUT', `Too many fields in one request (at most ${MAX_FIELDS})`)))
    parser.on('partsLimit', () => fail(bodyError('BAD_USER_INPUT', 'Too many parts in one request')))
    // `on`, not `once`: busboy can emit more than one error for one bad body, and an unheard one ends the process.
    parser.on('error', (error: Error) => fail(bodyError('BAD_USER_INPUT', `Malformed multipart body: ${error.message}`)))
    parser.once('close', () => {
      void Promise.all(fileWrites).then(() => {
        if (failed) return
        settled = true
        for (const give of handOver) give()
        resolve()
      })
    })

    req.pipe(parser)
  }))
  // What the request promised beyond its files' second copies (its own overhead) is anyone's once it ends.
  const done = received.finally(() => room?.release())
  done.catch(() => undefined)
  return { done, parts, abort: () => abort(), dispose }
}
