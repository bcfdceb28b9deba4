import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { createReadStream } from 'node:fs'
import { mkdtemp, open, readFile, rm, stat } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

export const ROOT = fileURLToPath(new URL('..', import.meta.url))
export const MiB = 1024 * 1024
export const KiB = 1024

/** One line of the table: a figure, its baseline measured in the same run, and the target it is held to. */
export interface Row {
  figure: string
  measure: string
  value: number
  unit: string
  baseline?: { name: string; value: number }
  /** value / baseline, or baseline / value for times, so that higher is always better. */
  ratio?: number
  target: string
  pass?: boolean
}

export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}
export const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!
}

/**
 * Writes out every dirty page first: without it, a run pays for the writeback of the one before it, and
 * whatever is measured second (ours or the baseline) looks slower.
 */
export const settle = () => new Promise<void>((resolve) => execFile('sync', () => resolve()))

export async function repeat(times: number, fn: () => Promise<number>): Promise<number> {
  const results: number[] = []
  for (let i = 0; i < times; i++) {
    await settle()
    results.push(await fn())
  }
  return median(results)
}

/** The built server (dist/), in its own process, on an ephemeral port, storing into a fresh folder. */
export interface BenchServer {
  url: string
  dir: string
  pid: number
  child: ChildProcess
  stop(): Promise<void>
}

export async function startServer(env: Record<string, string> = {}): Promise<BenchServer> {
  const dir = await mkdtemp(join(tmpdir(), 'bench-uploads-'))
  const child = spawn(process.execPath, ['dist/main.js'], {
    cwd: ROOT,
    env: { ...process.env, NODE_ENV: 'production', UPLOAD_DIR: dir, PORT: '0', HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const url = await new Promise<string>((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      const found = /"url":"(http:\/\/[\d.]+:\d+)"/.exec(out)
      if (found?.[1]) resolve(found[1])
    })
    child.once('exit', () => reject(new Error(`server exited: ${out}`)))
  })
  return {
    url,
    dir,
    pid: child.pid!,
    child,
    async stop() {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      const began = performance.now()
      child.kill('SIGTERM')
      await exited
      const took = performance.now() - began
      if (took > 2000) console.error(`(server took ${Math.round(took)} ms to shut down)`)
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/** Resident memory now and at its peak (VmHWM), in bytes. */
export async function memoryOf(pid: number): Promise<{ rss: number; peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) * 1024
  return { rss: kb('VmRSS'), peak: kb('VmHWM') }
}

/** CPU seconds (user + system) a process has used so far. */
export async function cpuSecondsOf(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100 // utime, stime in clock ticks (100 Hz)
}

/** Makes a file of random-ish bytes without holding it in memory. */
export async function makeFile(path: string, size: number): Promise<void> {
  const handle = await open(path, 'w')
  const block = Buffer.alloc(MiB)
  for (let i = 0; i < block.length; i += 4) block.writeUInt32LE((i * 2654435761) >>> 0, i)
  try {
    for (let written = 0; written < size; written += block.length) {
      await handle.write(block, 0, Math.min(block.length, size - written))
    }
  } finally {
    await handle.close()
  }
}

/**
 * POSTs a file as multipart/form-data, streamed from disk (never held in memory), with the given text fields
 * before it. Resolves with the status, the answer's text and the seconds until the answer was complete.
 */
export function postMultipart(
  url: string,
  fields: [string, string][],
  file: { field: string; path: string; size: number; name: string },
  headers: Record<string, string> = {},
): Promise<{ status: number; text: string; seconds: number }> {
  const boundary = 'benchb0undary'
  const head = Buffer.from(
    fields
      .map(([k, v]) => `--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`)
      .join('') +
      `--${boundary}\r\nContent-Disposition: form-data; name="${file.field}"; filename="${file.name}"\r\n` +
      'Content-Type: application/octet-stream\r\n\r\n',
  )
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`)
  const started = performance.now()
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        headers: {
          ...headers,
          'content-type': `multipart/form-data; boundary=${boundary}`,
          'content-length': head.length + file.size + tail.length,
        },
      },
      (res) => {
        let text = ''
        res.on('data', (chunk: Buffer) => (text += chunk.toString()))
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, text, seconds: (performance.now() - started) / 1000 }),
        )
      },
    )
    req.on('error', reject)
    req.write(head)
    const body = createReadStream(file.path, { highWaterMark: MiB, end: file.size - 1 })
    body.on('end', () => req.end(tail))
    body.pipe(req, { end: false })
  })
}

export async function gql<T>(
  url: string,
  query: string,
  variables: Record<string, unknown> = {},
): Promise<T> {
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query, variables }),
  })
  const body = (await response.json()) as { data: T; errors?: unknown[] }
  if (body.errors) throw new Error(JSON.stringify(body.errors))
  return body.data
}

export interface Times {
  status: string
  createdAt: string
  completedAt: string | null
}

/** Polls until the upload has ended; resolves with its record's timestamps. */
export async function waitDone(url: string, id: string, everyMs = 5): Promise<Times> {
  for (;;) {
    const { upload } = await gql<{ upload: Times }>(
      url,
      `{ upload(id: "${id}") { status createdAt completedAt } }`,
    )
    if (upload.status !== 'IN_PROGRESS' && upload.status !== 'PAUSED') return upload
    await sleep(everyMs)
  }
}

export const sizeOf = (path: string) =>
  stat(path).then(
    (s) => s.size,
    () => -1,
  )

/** The baseline server (bench/bare.ts) in its own process, as ours runs in its own. */
export async function startBare(dir: string): Promise<{ url: string; stop: () => void }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/bare.ts', dir], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const url = await new Promise<string>((resolve) =>
    child.stdout.on('data', (chunk: Buffer) => {
      const found = /on (http:\/\/[\d.]+:\d+)/.exec(chunk.toString())
      if (found?.[1]) resolve(found[1])
    }),
  )
  return { url, stop: () => void child.kill() }
}
