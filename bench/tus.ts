import { createReadStream } from 'node:fs'
import { request } from 'node:http'
import { gql, MiB, repeat, startBare, startServer, waitDone, type Row } from './lib.js'

const FIGURE = '15 tus'
const CHUNK = 8 * MiB

/** One request whose body is bytes [start, end) of `path`, streamed; resolves with its status and headers. */
function send(
  url: string,
  method: string,
  headers: Record<string, string>,
  body?: { path: string; start: number; end: number },
): Promise<{ status: number; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method,
        headers: body ? { ...headers, 'content-length': String(body.end - body.start) } : headers,
      },
      (res) => {
        res.resume()
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }))
      },
    )
    req.on('error', reject)
    if (!body || body.end === body.start) return void req.end()
    createReadStream(body.path, { start: body.start, end: body.end - 1, highWaterMark: MiB }).pipe(req)
  })
}

const TUS = { 'tus-resumable': '1.0.0' }

/** Creates a tus upload of `size` bytes and sends them in `chunk`-byte PATCHes: seconds to the last answer. */
async function tusIngest(
  url: string,
  path: string,
  size: number,
  chunk: number,
): Promise<{ seconds: number; id: string }> {
  const started = performance.now()
  const created = await send(`${url}/files/`, 'POST', {
    ...TUS,
    'upload-length': String(size),
    'upload-metadata': `filename ${Buffer.from('data.bin').toString('base64')},speed ${Buffer.from('0').toString('base64')}`,
  })
  if (created.status !== 201) throw new Error(`tus creation: ${created.status}`)
  const location = new URL(String(created.headers.location), url).href
  for (let offset = 0; offset < size; offset += chunk) {
    const end = Math.min(size, offset + chunk)
    const patched = await send(
      location,
      'PATCH',
      { ...TUS, 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream' },
      { path, start: offset, end },
    )
    if (patched.status !== 204) throw new Error(`tus PATCH at ${offset}: ${patched.status}`)
  }
  return { seconds: (performance.now() - started) / 1000, id: location.split('/').pop()! }
}

/**
 * 15: tus ingest of `size` bytes, sent in one PATCH and in 8 MiB PATCHes, from creation to the last answer
 * (every byte on disk and hashed), against the bare server streaming the same bytes to disk in one request.
 */
export async function tus(path: string, size: number, runs: number, scratch: string): Promise<Row[]> {
  const label = `${Math.round(size / MiB)} MiB`
  const bare = await startBare(scratch)
  const bareSeconds = await repeat(runs, async () => {
    const started = performance.now()
    const answer = await send(`${bare.url}/ingest`, 'POST', {}, { path, start: 0, end: size })
    if (answer.status !== 200) throw new Error(`bare: ${answer.status}`)
    return (performance.now() - started) / 1000
  })
  bare.stop()
  const server = await startServer({ MAX_UPLOAD_SIZE: String(size * 2) })
  try {
    const measure = (chunk: number) =>
      repeat(runs, async () => {
        const { seconds, id } = await tusIngest(server.url, path, size, chunk)
        const done = await waitDone(server.url, id)
        if (done.status !== 'COMPLETED') throw new Error(`tus upload ended ${done.status}`)
        await gql(server.url, `mutation { deleteFile(id: "${id}") { id } }`)
        return seconds
      })
    const whole = await measure(size)
    const chunked = await measure(CHUNK)
    return [
      [`${label} in one PATCH`, whole],
      [`${label} in 8 MiB PATCHes`, chunked],
    ].map(([what, seconds]) => ({
      figure: FIGURE,
      measure: `tus ingest, ${what as string}: creation → last answer`,
      value: seconds as number,
      unit: 's',
      baseline: { name: 'bare Node stream to disk', value: bareSeconds },
      ratio: bareSeconds / (seconds as number),
      target: '≥ 0.8x',
      pass: bareSeconds / (seconds as number) >= 0.8,
    }))
  } finally {
    await server.stop()
  }
}
