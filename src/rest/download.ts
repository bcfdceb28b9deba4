import { createReadStream } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { pipeline } from 'node:stream/promises'
import { jsonText } from '../http-json.js'

export interface StoredFile {
  path: string
  size: number
  sha256: string
  filename: string
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
 * Streams a stored file with what a download manager needs to resume: Content-Length, a strong ETag (its
 * sha256), Accept-Ranges, 206/416 for ranges, If-Range and If-None-Match. HEAD gets the headers alone.
 */
export async function sendFile(req: IncomingMessage, res: ServerResponse, file: StoredFile): Promise<void> {
  const etag = `"${file.sha256}"`
  res.setHeader('etag', etag)
  res.setHeader('accept-ranges', 'bytes')
  res.setHeader('content-disposition', contentDisposition(file.filename))
  res.setHeader('content-type', 'application/octet-stream')
  res.setHeader('x-content-type-options', 'nosniff')
  if (req.headers['if-none-match']?.split(/\s*,\s*/).includes(etag)) return void res.writeHead(304).end()

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
  await pipeline(createReadStream(file.path, { start, end, highWaterMark: 1024 * 1024 }), res).catch(() => {
    // The client went away mid-download; it can resume with a Range request.
  })
}
