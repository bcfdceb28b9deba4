import busboy from 'busboy'
import { randomUUID } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdir, rename, rm } from 'node:fs/promises'
import type { IncomingMessage } from 'node:http'
import { join } from 'node:path'
import { Transform, type TransformCallback, type Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { badInput, ServiceError } from '../errors.js'
import { bytesReceived } from '../metrics.js'
import { OffThreadHash } from './hasher.js'

/** Big buffers move a multipart body through busboy to disk in fewer, larger syscalls. */
const STREAM_HWM = 1024 * 1024

/**
 * A file that has arrived whole in the staging folder. The upload service takes it over with `moveTo`;
 * whatever no one took over is removed when its request ends.
 */
export class StagedFile {
  private moved = false
  constructor(
    public path: string,
    readonly filename: string,
    readonly mimeType: string,
    readonly size: number,
    /** Hex sha256 of the bytes as they arrived. */
    readonly sha256: string,
  ) {}

  async moveTo(destination: string): Promise<void> {
    await rename(this.path, destination)
    this.path = destination
    this.moved = true
  }

  async discard(): Promise<void> {
    if (!this.moved) await rm(this.path, { force: true })
  }
}

export interface IngestLimits {
  stagingDir: string
  /** Bytes per file; one byte more fails the request with PAYLOAD_TOO_LARGE at once. */
  maxFileSize: number
}

export interface MultipartBody {
  fields: ReadonlyMap<string, string>
  files: ReadonlyMap<string, StagedFile>
  /** Removes every staged file that was not moved elsewhere. Safe to call more than once. */
  dispose(): Promise<void>
}

/** Counts bytes on their way to disk and hashes them on the second core (see hasher.ts). */
class Digest extends Transform {
  readonly hash = new OffThreadHash()
  size = 0
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.size += chunk.length
    // Waits only when the worker is 4 MiB behind: memory stays flat, the parse goes on meanwhile.
    this.hash.update(chunk).then(() => callback(null, chunk), callback)
  }
}

/**
 * Browsers and fetch (WHATWG multipart/form-data) send `"`, CR and LF in a filename as %22, %0D and %0A;
 * busboy leaves them so. Undo exactly those, so the name shown is the name the user's file had.
 */
const ESCAPES: Record<string, string> = { '%22': '"', '%0d': '\r', '%0a': '\n' }
const unescapeFilename = (name: string) => name.replace(/%22|%0D|%0A/gi, (escape) => ESCAPES[escape.toLowerCase()] ?? escape)

/** Whether a Content-Type is multipart/form-data: the one test every transport uses. */
export const isMultipart = (contentType: string | null | undefined) => /^multipart\/form-data\b/i.test(contentType ?? '')

/**
 * Streams a multipart/form-data request: every file part straight into its own staging file (hashed on the
 * way, never held in memory), every text field into `fields`. Resolves when the whole body has arrived and
 * every file is on disk. On any failure (a client that goes away, a file over the limit, a malformed body)
 * it removes what it staged and rejects: nothing is left behind.
 */
export async function receiveMultipart(req: IncomingMessage, limits: IngestLimits): Promise<MultipartBody> {
  if (!isMultipart(req.headers['content-type'])) throw badInput('Expected a multipart/form-data body')
  // Someone may have removed the folder while we ran; recreating it costs one syscall.
  await mkdir(limits.stagingDir, { recursive: true })
  return stream(req, limits)
}

/** A full disk is no client's fault, but the client should hear it plainly, and may retry later. */
function storageError(error: Error): Error {
  const code = (error as NodeJS.ErrnoException).code
  return code === 'ENOSPC' || code === 'EDQUOT'
    ? new ServiceError('INSUFFICIENT_STORAGE', 'The server has no room left to store this file')
    : error
}

function stream(req: IncomingMessage, limits: IngestLimits): Promise<MultipartBody> {
  const fields = new Map<string, string>()
  const files = new Map<string, StagedFile>()
  const writing = new Set<string>()
  const dispose = async () => {
    const paths = [...writing]
    writing.clear()
    await Promise.all([...paths.map((path) => rm(path, { force: true })), ...[...files.values()].map((f) => f.discard())])
  }

  return new Promise<MultipartBody>((resolve, reject) => {
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
        limits: { fileSize: limits.maxFileSize, fieldSize: 1024 * 1024, fields: 100, files: 20, parts: 120 },
      })
    } catch (error) {
      reject(badInput(`Malformed multipart body: ${(error as Error).message}`))
      return
    }

    const fileWrites: Promise<void>[] = []
    const sinks = new Set<Writable>()
    let failed = false
    const fail = (error: Error) => {
      if (failed) return
      failed = true
      // Stop reading but leave the socket open: the caller may still answer (413, 422) before closing it.
      req.unpipe(parser)
      for (const sink of sinks) sink.destroy()
      void Promise.allSettled(fileWrites)
        .then(dispose)
        .finally(() => reject(error))
    }

    parser.on('file', (field, stream, info) => {
      if (failed) return void stream.resume()
      const path = join(limits.stagingDir, `${randomUUID()}.incoming`)
      writing.add(path)
      const digest = new Digest()
      stream.once('limit', () =>
        fail(new ServiceError('PAYLOAD_TOO_LARGE', `File is larger than the limit of ${limits.maxFileSize} bytes`)),
      )
      const sink = createWriteStream(path, { flags: 'wx', highWaterMark: STREAM_HWM })
      sinks.add(sink)
      const write = pipeline(stream, digest, sink)
        .then(async () => {
          if (failed) return digest.hash.drop()
          const sha256 = await digest.hash.digest()
          if (sha256 === '') throw new Error('Hashing the upload failed')
          if (files.has(field)) {
            // Still in `writing`, so the failure below removes it with the rest.
            throw badInput(`File field ${JSON.stringify(field)} was sent more than once; send one file per field`)
          }
          files.set(
            field,
            new StagedFile(path, unescapeFilename(info.filename ?? ''), info.mimeType, digest.size, sha256),
          )
          writing.delete(path)
          bytesReceived.inc(digest.size)
        })
        .catch((error: Error) => {
          digest.hash.drop()
          fail(storageError(error))
        })
        .finally(() => sinks.delete(sink))
      fileWrites.push(write)
    })
    parser.on('field', (name, value, info) => {
      if (info.valueTruncated) fail(badInput(`Field ${JSON.stringify(name)} is too large`))
      else fields.set(name, value)
    })
    parser.on('filesLimit', () => fail(badInput('Too many files in one request')))
    parser.on('fieldsLimit', () => fail(badInput('Too many fields in one request')))
    parser.on('partsLimit', () => fail(badInput('Too many parts in one request')))
    // `on`, not `once`: busboy can emit more than one error for one bad body, and an unheard one ends the process.
    parser.on('error', (error: Error) => fail(badInput(`Malformed multipart body: ${error.message}`)))
    parser.once('close', () => {
      void Promise.all(fileWrites).then(() => {
        if (!failed) resolve({ fields, files, dispose })
      })
    })

    // A client that goes away mid-body: its request never completes.
    req.once('close', () => {
      if (!req.complete) fail(new Error('Client closed the connection before the body arrived'))
    })
    req.on('error', fail)
    req.pipe(parser)
  })
}
