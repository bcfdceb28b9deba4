/**
 * The baseline: a bare Node http server doing the least the real one must do. /ingest streams the request body
 * to disk; /ingest-sha256 does the same and also takes the body's sha256 on the way (the least that what we
 * promise costs: every byte on disk and its digest); /status answers a fixed JSON of the status endpoint's
 * shape. Run as its own process, as ours is. Each body's file is kept, as ours keeps what it stores: the folder
 * is the caller's, removed when its figure ends. (Removed at once, the next body would be written into the
 * pages it freed, which on these VMs costs a fifth of writing into memory the host has taken back: see
 * lib.ts, keptIn.)
 */
import { createHash } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'

const dir = process.argv[2] ?? '/tmp'
const status = JSON.stringify({
  status: 'in_progress',
  filename: 'data.bin',
  uploaded_size: 1234567,
  total_size: 1073741824,
  current_speed: 262144.5,
  target_speed: 262144,
})
let n = 0
const server = createServer((req, res) => {
  if (req.url === '/ingest') {
    const path = join(dir, `bare-${n++}`)
    pipeline(req, createWriteStream(path, { highWaterMark: 1024 * 1024 }))
      .then(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'))
      .catch(() => res.destroy())
    return
  }
  if (req.url === '/ingest-sha256') {
    const path = join(dir, `bare-${n++}`)
    const hash = createHash('sha256')
    req.on('data', (chunk: Buffer) => hash.update(chunk))
    pipeline(req, createWriteStream(path, { highWaterMark: 1024 * 1024 }))
      .then(() => hash.digest('hex'))
      .then(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'))
      .catch(() => res.destroy())
    return
  }
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(status) })
  res.end(status)
})
server.requestTimeout = 0
server.listen(0, '127.0.0.1', () =>
  console.log(`bare on http://127.0.0.1:${(server.address() as AddressInfo).port}`),
)
// A clean exit on SIGTERM, so that a profiled run (BENCH_PROF_DIR) writes its profile.
process.once('SIGTERM', () => process.exit(0))
