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
  /** Server CPU per operation (from /proc/<pid>/stat), ours and the baseline's, as text. */
  cpu?: string
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

/**
 * Runs each side `rounds` times, in turns, each run after `settle()`: round r starts at side r (ABC, BCA,
 * CAB…), so that every side meets each place in the order as often as the others. Sides that each ran all
 * their runs in a row measured the order as much as themselves: on these VMs the figure's first writes are
 * the quick ones (the tus figure's bare stream took 1.43 s going first and 4.03 s going last, and ours 3.63
 * against 4.65 s). With as many rounds as sides, each side runs once at each place. Resolves with each
 * side's runs, in its order.
 */
export async function inTurns<K extends string, T>(
  rounds: number,
  sides: Record<K, () => Promise<T>>,
): Promise<Record<K, T[]>> {
  const names = Object.keys(sides) as K[]
  const runs = Object.fromEntries(names.map((name) => [name, [] as T[]])) as Record<K, T[]>
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < names.length; i++) {
      const name = names[(round + i) % names.length]!
      await settle()
      runs[name].push(await sides[name]())
    }
  }
  return runs
}

/**
 * Whose built server startServer runs: this tree's dist/ unless a figure is being compared with another
 * build (BENCH_PARENT, see run.ts), when run.ts points it at that tree for the parent's turns.
 */
export const serverTree = { root: ROOT }

/** The built server (dist/), in its own process, on an ephemeral port, storing into a fresh folder. */
export interface BenchServer {
  url: string
  dir: string
  pid: number
  child: ChildProcess
  stop(): Promise<void>
}

export interface StartOptions {
  /** Spawned through `bash -c 'ulimit -n …; exec node …'`, for servers that hold thousands of sockets. */
  manyFiles?: boolean
  /** Every line the server writes to stdout (its JSON log), as it comes. */
  onLine?: (line: string) => void
}

/**
 * With `env.UPLOAD_DIR` the server stores there and the folder is the caller's to remove (several instances
 * share one); without it, a fresh folder is made and removed on stop.
 */
export async function startServer(
  env: Record<string, string> = {},
  options: StartOptions = {},
): Promise<BenchServer> {
  const own = env.UPLOAD_DIR === undefined
  const dir = env.UPLOAD_DIR ?? (await mkdtemp(join(tmpdir(), 'bench-uploads-')))
  // BENCH_PROF_DIR: every server the figures start writes a CPU profile there when it stops (SIGTERM).
  const profile = process.env.BENCH_PROF_DIR
  const main = join(serverTree.root, 'dist', 'main.js')
  const child = spawnNode([...(profile ? ['--cpu-prof', `--cpu-prof-dir=${profile}`] : []), main], {
    env: { NODE_ENV: 'production', UPLOAD_DIR: dir, PORT: '0', HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
    manyFiles: options.manyFiles,
  })
  const url = await new Promise<string>((resolve, reject) => {
    let out = ''
    let found = false
    let partial = ''
    child.stdout!.on('data', (chunk: Buffer) => {
      if (options.onLine) {
        const lines = (partial + chunk.toString()).split('\n')
        partial = lines.pop() ?? ''
        for (const line of lines) options.onLine(line)
      }
      if (found) return // keep reading (a full pipe would block the server), but hold nothing
      out = (out + chunk.toString()).slice(-64 * 1024)
      const match = /"url":"(http:\/\/[\d.]+:\d+)"/.exec(out)
      if (match?.[1]) {
        found = true
        resolve(match[1])
      }
    })
    child.once('exit', () => reject(new Error(`server exited: ${out.slice(-2000)}`)))
  })
  return {
    url,
    dir,
    pid: child.pid!,
    child,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve))
        const began = performance.now()
        child.kill('SIGTERM')
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
        await exited
        clearTimeout(timer)
        const took = performance.now() - began
        if (took > 2000) console.error(`(server took ${Math.round(took)} ms to shut down)`)
      }
      if (own) await rm(dir, { recursive: true, force: true })
    },
  }
}

/** Every process the bench spawned and has not seen exit: killed if the bench itself exits first. */
const spawned = new Set<ChildProcess>()
process.once('exit', () => {
  for (const child of spawned) child.kill('SIGKILL')
})
/** Kills `child` if the bench exits before it does. */
export function track<T extends ChildProcess>(child: T): T {
  spawned.add(child)
  child.once('exit', () => spawned.delete(child))
  return child
}

/**
 * Node (this one) in its own process, in the project's folder. With `manyFiles`, through bash so that its
 * open-files limit is raised first (as far as the hard limit allows).
 */
export function spawnNode(
  args: string[],
  options: {
    env?: Record<string, string>
    stdio?: ('ignore' | 'pipe' | 'inherit')[]
    manyFiles?: boolean | undefined
  } = {},
): ChildProcess {
  const env = { ...process.env, ...options.env }
  const stdio = options.stdio ?? ['pipe', 'pipe', 'inherit']
  const quoted = [process.execPath, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ')
  const child = options.manyFiles
    ? spawn('bash', ['-c', `ulimit -n 65536 2>/dev/null || ulimit -n hard; exec ${quoted}`], {
        cwd: ROOT,
        env,
        stdio,
      })
    : spawn(process.execPath, args, { cwd: ROOT, env, stdio })
  return track(child)
}

/** Ends a child process: SIGTERM, then SIGKILL if it has not gone within `graceMs`. */
export async function endProcess(child: ChildProcess, graceMs = 3000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
  await exited
  clearTimeout(timer)
}

/** Polls `url`/readyz until it answers 200 (every `everyMs`); rejects after `timeoutMs`. */
export async function waitReady(url: string, timeoutMs = 30_000, everyMs = 5): Promise<void> {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    const ok = await fetch(`${url}/readyz`).then(
      (r) => r.status === 200,
      () => false,
    )
    if (ok) return
    if (performance.now() > deadline) throw new Error(`${url}/readyz did not answer 200 in ${timeoutMs} ms`)
    await sleep(everyMs)
  }
}

/** A row that says what failed, so one failure does not cost the rest of the figure. */
export function failed(figure: string, measure: string, error: unknown): Row {
  console.error(error)
  return {
    figure,
    measure: `${measure}: failed: ${(error as Error)?.message ?? String(error)}`.slice(0, 300),
    value: NaN,
    unit: '',
    target: '',
    pass: false,
  }
}

/** Runs one part of a figure; a failure becomes a failing row. */
export async function attempt(figure: string, measure: string, run: () => Promise<Row[]>): Promise<Row[]> {
  try {
    return await run()
  } catch (error) {
    return [failed(figure, measure, error)]
  }
}

/** Epoch milliseconds with sub-millisecond resolution; comparable across processes on one machine. */
export const now = () => performance.timeOrigin + performance.now()

/** A value from a Prometheus text exposition, or undefined when the metric is not there. */
export async function metric(url: string, name: string): Promise<number | undefined> {
  const text = await fetch(`${url}/metrics`).then((r) => r.text())
  const found = new RegExp(`^${name}(?:\\{[^}]*\\})?\\s+([\\d.eE+-]+)`, 'm').exec(text)
  return found?.[1] === undefined ? undefined : Number(found[1])
}

/** A time in ms, or a count, as text for a table cell. */
export const ms = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2))

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
  /** When its last byte arrived and its transfer started: the start of every transfer figure. */
  receivedAt: string | null
  completedAt: string | null
}

/** Polls until the upload has ended; resolves with its record's timestamps. */
export async function waitDone(url: string, id: string, everyMs = 5): Promise<Times> {
  for (;;) {
    const { upload } = await gql<{ upload: Times }>(
      url,
      `{ upload(id: "${id}") { status createdAt receivedAt completedAt } }`,
    )
    if (upload.status !== 'RECEIVING' && upload.status !== 'IN_PROGRESS' && upload.status !== 'PAUSED')
      return upload
    await sleep(everyMs)
  }
}

export const sizeOf = (path: string) =>
  stat(path).then(
    (s) => s.size,
    () => -1,
  )

/** A peer or baseline server in its own process, as ours runs in its own. */
export interface PeerServer {
  url: string
  pid: number
  stop(): Promise<void>
}

/**
 * `node --import tsx bench/<script> ...args`, resolved once it prints `... on http://host:port`. Used for the
 * bare baseline (bench/bare.ts) and the peers (bench/peers.ts).
 */
export async function startScript(script: string, args: string[]): Promise<PeerServer> {
  // BENCH_PROF_DIR: the peers and baselines profile themselves too, for a side-by-side read.
  const profile = process.env.BENCH_PROF_DIR
  const flags = profile ? ['--cpu-prof', `--cpu-prof-dir=${profile}`] : []
  const child = spawnNode([...flags, '--import', 'tsx', `bench/${script}`, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const url = await new Promise<string>((resolve, reject) => {
    let out = ''
    child.stdout!.on('data', (chunk: Buffer) => {
      out = (out + chunk.toString()).slice(-4096)
      const found = / on (http:\/\/[\d.]+:\d+)/.exec(out)
      if (found?.[1]) resolve(found[1])
    })
    child.once('exit', (code) => reject(new Error(`${script} ${args.join(' ')} exited (${code}): ${out}`)))
  })
  return { url, pid: child.pid!, stop: () => endProcess(child) }
}

/** The baseline server (bench/bare.ts): streams to `dir`. */
export const startBare = (dir: string) => startScript('bare.ts', [dir])

/**
 * @tus/server + @tus/file-store, bare (bench/peers.ts). With `dir` it stores there and the folder is the
 * caller's to remove (see keptIn); without it, a fresh folder is made and removed on stop.
 */
export async function startTusPeer(dir?: string): Promise<PeerServer> {
  const own = dir === undefined
  const into = dir ?? (await mkdtemp(join(tmpdir(), 'bench-tus-peer-')))
  const peer = await startScript('peers.ts', ['tus', into])
  return {
    ...peer,
    async stop() {
      await peer.stop()
      if (own) await rm(into, { recursive: true, force: true })
    },
  }
}

/** How long memory freed on these VMs takes to cost what memory never used costs (see keptIn). */
const COLD_MS = 12_000

/**
 * Runs `fn` with a fresh folder in `scratch` for every side of a throughput figure to store into (ours,
 * the peer's, the baseline's), removed only when the figure ends: each side keeps what every run of it
 * wrote, as a server keeps what it stores. On these VMs memory just freed is reused at once, while memory
 * the host has taken back (a few seconds after it was freed) costs about five times as much to write into
 * (`dd` of 512 MiB: 0.15 s right after a removal, 0.47 s 3 s after, 0.8-1.0 s from 10 s after). A side
 * that removed each run's file would write its next run into the pages it had just freed, and beat one that
 * kept its bytes for that alone; and so would whatever runs first after a figure's removal, unless it waits.
 * Removing many files costs the other way: this VM's ext4 has no journal, and there every file created
 * passes over each inode freed in the last 5 to 35 seconds (`recently_deleted` in `find_inode_bit`, read from
 * the inode table one by one). 16 B uploads right after 20,000 files were removed took 1.56 ms of server CPU
 * each against 1.20 ms (18 % of it in `ext4_create`, perf); so a small-files side that followed another's
 * removal paid for it.
 */
export async function keptIn<T>(scratch: string, fn: (dir: (name: string) => Promise<string>) => Promise<T>) {
  const root = await mkdtemp(join(scratch, 'kept-'))
  try {
    return await fn((name) => mkdtemp(join(root, `${name}-`)))
  } finally {
    await rm(root, { recursive: true, force: true })
    await sleep(COLD_MS)
  }
}

/**
 * A plain graphql-yoga with our SDL answering from memory (bench/peers.ts); `unlimited`: with its body limit
 * off, as ours has it.
 */
export const startYogaPeer = (unlimited = false) =>
  startScript('peers.ts', unlimited ? ['yoga', 'unlimited'] : ['yoga'])

/** Runs `fn` and returns its result with the CPU seconds (user + system, every thread) `pid` used meanwhile. */
export async function withCpu<T>(pid: number, fn: () => Promise<T>): Promise<{ result: T; cpu: number }> {
  const before = await cpuSecondsOf(pid)
  const result = await fn()
  return { result, cpu: (await cpuSecondsOf(pid)) - before }
}

/** CPU per operation as text: µs below 1 ms, ms above. */
export const perOp = (cpuSeconds: number, ops: number, op: string) => {
  const us = (cpuSeconds / ops) * 1e6
  return us >= 1000 ? `${(us / 1000).toFixed(2)} ms/${op}` : `${us.toFixed(1)} µs/${op}`
}
