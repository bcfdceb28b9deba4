import { createReadStream } from 'node:fs'
import { request } from 'node:http'
import {
  inTurns,
  keptIn,
  median,
  MiB,
  startBare,
  startServer,
  startTusPeer,
  waitDone,
  withCpu,
  type Row,
} from './lib.js'

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

const SIDES = ['in one PATCH', 'in 8 MiB PATCHes'] as const

interface Run {
  seconds: number
  cpu: number
}

/** `run` once, with the server CPU seconds `pid` used meanwhile. */
async function measured(pid: number, run: () => Promise<number>): Promise<Run> {
  const { result, cpu } = await withCpu(pid, run)
  return { seconds: result, cpu }
}

/** Each way of sending's median seconds and mean CPU, from turns that each sent every way. */
function byWay(turns: Run[][]): Run[] {
  return turns[0]!.map((_, i) => ({
    seconds: median(turns.map((turn) => turn[i]!.seconds)),
    cpu: turns.reduce((sum, turn) => sum + turn[i]!.cpu, 0) / turns.length,
  }))
}

/**
 * 15: tus ingest of `size` bytes, sent in one PATCH and in 8 MiB PATCHes, from creation to the last answer
 * (every byte on disk and hashed), against a bare @tus/server + @tus/file-store taking the same requests
 * from the same client, and against the bare server streaming the same bytes to disk in one request. Each
 * server in its own process, all three up while they take turns (see inTurns); server CPU per GiB from
 * /proc/<pid>/stat. Every side keeps what each run of it stored until the figure ends (see keptIn).
 */
export function tus(path: string, size: number, runs: number, scratch: string): Promise<Row[]> {
  return keptIn(scratch, (dir) => measure(path, size, runs, dir))
}

async function measure(
  path: string,
  size: number,
  runs: number,
  dir: (name: string) => Promise<string>,
): Promise<Row[]> {
  const label = `${Math.round(size / MiB)} MiB`
  const bare = await startBare(await dir('bare'))
  const peer = await startTusPeer(await dir('peer'))
  const server = await startServer({ UPLOAD_DIR: await dir('ours'), MAX_UPLOAD_SIZE: String(size * 2) })
  let turns: Record<'bare' | 'peer' | 'ours', Run[][]>
  try {
    const ways = (pid: number, send: (chunk: number) => Promise<number>) => async () => {
      const out: Run[] = []
      for (const chunk of [size, CHUNK]) out.push(await measured(pid, () => send(Math.min(chunk, size))))
      return out
    }
    turns = await inTurns(runs, {
      bare: async () => [
        await measured(bare.pid, async () => {
          const started = performance.now()
          const answer = await send(`${bare.url}/ingest`, 'POST', {}, { path, start: 0, end: size })
          if (answer.status !== 200) throw new Error(`bare: ${answer.status}`)
          return (performance.now() - started) / 1000
        }),
      ],
      peer: ways(peer.pid, async (chunk) => (await tusIngest(peer.url, path, size, chunk)).seconds),
      ours: ways(server.pid, async (chunk) => {
        const { seconds, id } = await tusIngest(server.url, path, size, chunk)
        // Its transfer is waited for, outside the time but inside the CPU: no turn runs under it.
        const done = await waitDone(server.url, id)
        if (done.status !== 'COMPLETED') throw new Error(`tus upload ended ${done.status}`)
        return seconds
      }),
    })
  } finally {
    await Promise.all([bare.stop(), peer.stop(), server.stop()])
  }
  const { seconds: bareSeconds, cpu: bareCpu } = byWay(turns.bare)[0]!
  const peerSides = byWay(turns.peer)
  const ourSides = byWay(turns.ours)
  const gib = size / 1024 ** 3
  const perGiB = (cpu: number) => `${(cpu / gib).toFixed(2)} s/GiB`
  return SIDES.flatMap((what, i) => {
    const ours = ourSides[i]!
    const theirs = peerSides[i]!
    const cpu = `${perGiB(ours.cpu)} (tus peer ${perGiB(theirs.cpu)}, bare ${perGiB(bareCpu)})`
    const measure = `tus ingest, ${label} ${what}: creation → last answer`
    return [
      {
        figure: FIGURE,
        measure,
        value: ours.seconds,
        unit: 's',
        baseline: { name: `bare @tus/server + file-store, ${what}`, value: theirs.seconds },
        ratio: theirs.seconds / ours.seconds,
        target: '≥ 1.0x',
        pass: theirs.seconds / ours.seconds >= 1,
        cpu,
      },
      {
        figure: FIGURE,
        measure,
        value: ours.seconds,
        unit: 's',
        baseline: { name: 'bare Node stream to disk, one request', value: bareSeconds },
        ratio: bareSeconds / ours.seconds,
        target: '≥ 0.9x',
        pass: bareSeconds / ours.seconds >= 0.9,
        cpu,
      },
    ]
  })
}
