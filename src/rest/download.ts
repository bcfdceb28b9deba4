import type { IncomingMessage, ServerResponse } from 'node:http'
import { pipeline } from 'node:stream/promises'
import { log } from '../log.js'
import { requestIdOf } from '../app/request-id.js'
import { jsonText } from '../app/http-json.js'
import type { StoredReader } from '../seams/storage/index.js'

export { StoredFileMissing } from '../seams/storage/index.js'

/** A completed upload's file, as its record tells it, and how to open it (the service asks storage). */
export interface StoredFile {
  id: string
  size: number
  sha256: string
  filename: string
  open: () => Promise<StoredReader>
  /**
   * Where storage would have the client fetch the bytes itself (S3_PRESIGN_DOWNLOADS: a presigned GET of
   * the object, valid for a short while), or undefined: stream them from here.
   */
  elsewhere?: () => Promise<string | undefined>
}

/**
 * RFC 6266: an ASCII fallback for old clients, and the exact name as UTF-8 in `filename*` (RFC 8187). The
 * fallback drops what could end the quoted string or split the header.
 */
export function contentDisposition(filename: string): string {
  const fallback = filename.replace(/[^\x20-\x7e]|["\\%]/g, '_') || 'download'
  const encoded = encodeURIComponent(filename).replace(
    /['()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  )
  return `attachment; filename="${fallback}"; filename*=UTF-8''${encoded}`
}

/**
 * One `bytes=` range (RFC 9110 §14.1.2) within `size`: [start, end] inclusive, 'unsatisfiable', or undefined
 * when the header is absent, malformed or asks for several ranges (then the whole file is sent, as the RFC
 * allows).
 */
export function parseRange(
  header: string | undefined,
  size: number,
): [number, number] | 'unsatisfiable' | undefined {
  const match = /^bytes=(\d*)-(\d*)$/.exec(header?.trim() ?? '')
  if (!match || (match[1] === '' && match[2] === '')) return undefined
  const [first, last] = [match[1] ?? '', match[2] ?? '']
  if (first === '') {
    const suffix = Number(last)
    if (suffix === 0 || size === 0) return 'unsatisfiable'
    return [Math.max(0, size - suffix), size - 1]
  }
  const start = Number(first)
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1)
  if (start >= size || end < start) return 'unsatisfiable'
  return [start, end]
}

/**
 * The stored file, open, and checked against its record before a byte of the answer is sent: a file that
 * is gone (StoredFileMissing), or whose size is not the record's, is an error answer (with its reason),
 * never headers that promise bytes followed by a cut connection.
 */
async function openStored(file: StoredFile): Promise<StoredReader> {
  const reader = await file.open()
  if (reader.size !== file.size) {
    await reader.close()
    throw new Error(`stored file of upload ${file.id} holds ${reader.size} bytes, its record ${file.size}`)
  }
  return reader
}

/**
 * Streams a stored file with what a download manager needs to resume: Content-Length, a strong ETag (its
 * sha256), Accept-Ranges, 206/416 for ranges, If-Range and If-None-Match. HEAD gets the headers alone.
 * The file is opened first: every answer, a 304 or a HEAD too, is about bytes that are there. A file that
 * cannot be opened rejects before anything is sent (StoredFileMissing when it is gone); a read that fails
 * part-way is logged, and the connection cut, so the client knows its copy is short.
 */
export async function sendFile(req: IncomingMessage, res: ServerResponse, file: StoredFile): Promise<void> {
  const reader = await openStored(file)
  let streaming = false
  try {
    const etag = `"${file.sha256}"`
    res.setHeader('etag', etag)
    res.setHeader('accept-ranges', 'bytes')
    res.setHeader('content-disposition', contentDisposition(file.filename))
    res.setHeader('content-type', 'application/octet-stream')
    res.setHeader('x-content-type-options', 'nosniff')
    if (req.headers['if-none-match']?.split(/\s*,\s*/).includes(etag)) return void res.writeHead(304).end()
    // Sent elsewhere only once every check passed (the record is complete, its file is there at its size).
    // A HEAD is answered here: a presigned URL is signed for GET alone.
    const location = req.method === 'GET' ? await file.elsewhere?.() : undefined
    if (location !== undefined) {
      for (const name of ['etag', 'accept-ranges', 'content-disposition', 'content-type'])
        res.removeHeader(name)
      return void res.writeHead(302, { location, 'cache-control': 'no-store', 'content-length': 0 }).end()
    }

    const ifRange = req.headers['if-range']
    const range =
      ifRange === undefined || ifRange === etag ? parseRange(req.headers.range, file.size) : undefined
    if (range === 'unsatisfiable') {
      res.writeHead(416, { 'content-range': `bytes */${file.size}`, 'content-type': 'application/json' })
      return void res.end(jsonText({ detail: `Range not satisfiable for a file of ${file.size} bytes` }))
    }
    const [start, end] = range ?? [0, file.size - 1]
    const length = file.size === 0 ? 0 : end - start + 1
    if (range) res.setHeader('content-range', `bytes ${start}-${end}/${file.size}`)
    res.writeHead(range ? 206 : 200, { 'content-length': length })
    if (req.method === 'HEAD' || length === 0) return void res.end()
    streaming = true
    // The stream owns the reader from here, and lets go of it when it ends, fails or is destroyed.
    const body = reader.read(start, end)
    let readError: unknown
    body.once('error', (error) => (readError = error))
    await pipeline(body, res).catch(() => {
      // A client that went away can resume with a Range request; a read that failed is the server's fault
      // (pipeline has cut the connection, so the client sees its copy is short).
      if (readError !== undefined)
        log('error', 'download.read_failed', {
          requestId: requestIdOf(req),
          id: file.id,
          error: readError,
        })
    })
  } finally {
    if (!streaming) await reader.close()
  }
}
