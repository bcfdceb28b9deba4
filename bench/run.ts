/**
 * npm run bench: builds the server, then measures every figure against a baseline taken in the same run, and
 * prints a table. Writes the same figures to bench/results.json and BENCHMARKS.md.
 *
 *   BENCH_SIZE_MB  size of the file for memory, transfer, GraphQL ingest and tus (default 1024)
 *   BENCH_INGEST_MB  size of the REST ingest against the bare streams (default 512)
 *   BENCH_CONNECTIONS, BENCH_STATUS_SECONDS, BENCH_STATUS_ROUNDS, BENCH_TINY_SECONDS  see status.ts, tiny.ts
 *   BENCH_STALL_SECONDS  how long fan-out's never-reading sockets stay (default 60)
 *   BENCH_PROF_DIR  every server the figures start (ours, peers, baselines) writes a --cpu-prof profile there
 *   BENCH_RUNS     runs per figure; medians are quoted (default 3)
 *   BENCH_PARENT   another tree with its own build (say `git worktree add /tmp/base HEAD~1 && npm run build`
 *                  there): every figure runs against its server and this tree's in turns, BENCH_PARENT_ROUNDS
 *                  times (default 2; parent first in odd rounds, this tree first in even ones), rows labelled
 *                  [parent] and [this], so a change is measured against its parent in one run
 *   BENCH_ONLY     comma-separated figures to run: ingest,throttle,control,concurrency,fanout,status,cluster,
 *                  scale,cap,state,tiny,idle,tus,hook-delivery,hooks,s3,usage
 *   BENCH_S3_MB    size of the file for the s3 figure's unthrottled transfer, into moto (default 256); the s3
 *                  figure also times throttled transfers (256 KiB/s, 4 MiB/s) and adoption after a SIGKILL
 */
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { cpus, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { cap } from './cap.js'
import { cluster } from './cluster.js'
import { concurrency } from './concurrency.js'
import { control } from './control.js'
import { fanout } from './fanout.js'
import { hookDelivery } from './hook-delivery.js'
import { hooks } from './hooks.js'
import { idle } from './idle.js'
import { ingestAndTransfer } from './ingest.js'
import { attempt, makeFile, MiB, ROOT, serverTree, type Row } from './lib.js'
import { s3, s3Adoption, s3Throttle } from './s3.js'
import { scale } from './scale.js'
import { state } from './state.js'
import { status } from './status.js'
import { throttle } from './throttle.js'
import { tiny } from './tiny.js'
import { tus } from './tus.js'
import { usage } from './usage.js'

const size = Number(process.env.BENCH_SIZE_MB ?? 1024) * MiB
const ingestSize = Number(process.env.BENCH_INGEST_MB ?? 512) * MiB
const runs = Number(process.env.BENCH_RUNS ?? 3)
const only = process.env.BENCH_ONLY?.split(',')
const wanted = (name: string) => !only || only.includes(name)

const format = (n: number) =>
  Math.abs(n) >= 100 ? n.toFixed(0) : Math.abs(n) >= 10 ? n.toFixed(1) : n.toFixed(2)

function table(rows: Row[]): string {
  const head = ['figure', 'measure', 'value', 'baseline', 'ratio', 'target', '', 'server CPU per operation']
  const lines = rows.map((r) => [
    r.figure,
    r.measure,
    `${format(r.value)} ${r.unit}`,
    r.baseline ? `${r.baseline.name}: ${format(r.baseline.value)} ${r.unit}` : '',
    r.ratio === undefined ? '' : `${r.ratio.toFixed(2)}x`,
    r.target,
    r.pass === undefined ? '' : r.pass ? 'ok' : 'MISS',
    r.cpu ?? '',
  ])
  return [head, head.map(() => '---'), ...lines].map((cells) => `| ${cells.join(' | ')} |`).join('\n')
}

const parent = process.env.BENCH_PARENT
const parentRounds = Number(process.env.BENCH_PARENT_ROUNDS ?? 2)

/** A figure that fails is reported as a row, so one failure does not cost the rest of the run. */
async function figure(name: string, run: () => Promise<Row[]>): Promise<void> {
  if (!wanted(name)) return
  if (!parent) return once(name, run)
  for (let round = 1; round <= parentRounds; round++) {
    const turns = [
      { label: 'parent', root: parent },
      { label: 'this', root: ROOT },
    ]
    if (round % 2 === 0) turns.reverse()
    for (const turn of turns) {
      serverTree.root = turn.root
      const from = rows.length
      await once(name, run)
      for (const row of rows.slice(from)) row.figure = `${row.figure} [${turn.label} ${round}]`
    }
  }
  serverTree.root = ROOT
}

async function once(name: string, run: () => Promise<Row[]>): Promise<void> {
  try {
    rows.push(...(await run()))
  } catch (error) {
    console.error(error)
    rows.push({
      figure: name,
      measure: `failed: ${(error as Error).message}`,
      value: NaN,
      unit: '',
      target: '',
      pass: false,
    })
  }
}

const rows: Row[] = []
const scratch = await mkdtemp(join(tmpdir(), 'bench-scratch-'))
try {
  const started = Date.now()
  await figure('ingest', async () => {
    const file = join(scratch, 'big')
    await makeFile(file, size)
    try {
      return await ingestAndTransfer(file, size, runs, scratch, ingestSize)
    } finally {
      await rm(file)
    }
  })
  await figure('tus', async () => {
    const file = join(scratch, 'big')
    await makeFile(file, size)
    try {
      return await tus(file, size, runs, scratch)
    } finally {
      await rm(file)
    }
  })
  await figure('s3', async () => {
    const s3Size = Number(process.env.BENCH_S3_MB ?? 256) * MiB
    const file = join(scratch, 's3')
    await makeFile(file, s3Size)
    try {
      return [
        ...(await s3(file, s3Size, runs)),
        // Each its own attempt, so one failing does not cost the others.
        ...(await attempt('s3', 'throttled into moto', () => s3Throttle(scratch, runs))),
        ...(await attempt('s3', 'SIGKILL of the owner', () => s3Adoption(runs))),
      ]
    } finally {
      await rm(file)
    }
  })
  await figure('throttle', () => throttle(runs, scratch))
  await figure('control', () => control(Math.max(5, runs), scratch))
  await figure('concurrency', () => concurrency(scratch))
  await figure('fanout', () => fanout(scratch, [1000, 10_000], Number(process.env.BENCH_STALL_SECONDS ?? 60)))
  await figure('status', () => status(scratch))
  await figure('cluster', () => cluster(scratch))
  await figure('scale', () => scale(scratch))
  await figure('cap', () => cap(scratch))
  await figure('state', () => state(scratch, runs))
  await figure('tiny', () => tiny(scratch, runs))
  await figure('idle', () => idle())
  await figure('hook-delivery', () => hookDelivery(scratch))
  await figure('hooks', () => hooks())
  await figure('usage', () => usage(scratch))

  const machine = {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 1024 ** 3),
    node: process.version,
    date: new Date().toISOString(),
    seconds: Math.round((Date.now() - started) / 1000),
    sizeMiB: size / MiB,
    runs,
  }
  const markdown = table(rows)
  console.log(`\n${markdown}\n`)
  console.log(
    `${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, Node ${machine.node}; ${machine.seconds} s`,
  )
  if (!only && !parent) {
    // A run of some figures prints them and leaves the last full run's files as they are.
    await writeFile(join(ROOT, 'bench', 'results.json'), JSON.stringify({ machine, rows }, null, 2) + '\n')
    await writeFile(
      join(ROOT, 'BENCHMARKS.md'),
      `# Benchmarks

The latest full run of \`npm run bench\` (medians of ${runs} runs; ${size / MiB} MiB for ingest and transfer). Every
throughput figure stands beside a baseline measured in the same run on the same machine, and is quoted as a
ratio (higher is better), because these machines are shared and noisy.

Machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, Node ${machine.node}, ${machine.date}.

${markdown}

## Reproduce

\`\`\`sh
npm ci
npm run bench                      # builds, then runs every figure (about ${Math.ceil(machine.seconds / 60)} min); writes bench/results.json and this file
BENCH_ONLY=throttle npm run bench  # some figures only (printed; the files are left as they are): ingest, tus,
                                   # throttle, control, concurrency, fanout, status, cluster, scale, cap, state,
                                   # tiny, idle, hook-delivery, hooks, s3 (BENCH_S3_MB, default 256)
BENCH_SIZE_MB=256 BENCH_INGEST_MB=128 BENCH_RUNS=1 BENCH_TINY_SECONDS=3 BENCH_STATUS_SECONDS=3 \\
  BENCH_STALL_SECONDS=10 npm run bench   # a quick run with smaller sizes and shorter loads
\`\`\`

Each row that has a peer or baseline measured it in the same run, from the same client, with the server in
its own process: \`@tus/server\` + \`@tus/file-store\` bare and a plain graphql-yoga with our SDL answering from
memory (bench/peers.ts), a bare Node handler and bare streams to disk, with and without sha256
(bench/bare.ts). The last column is the server's CPU per operation (user + system of every thread, from
\`/proc/<pid>/stat\` before and after), for ours and the peer: it moves less with a busy machine than
operations a second do. In the ingest, transfer and tus figures every side keeps what each of its runs
stored until the figure ends, as a server keeps what it stores (on these VMs, writing into memory just
freed costs a fraction of writing into memory the host has taken back, so a side that removed its files
would be measured on cheaper memory; see \`keptIn\` in bench/lib.ts). Their sides, and those of the small-files
figure, take turns, round r starting at side r (\`inTurns\`): run one after another, a figure's first side
wrote its GiB nearly three times as fast as its last.

To see where a server's time goes: build (\`npm run build\`), start \`node --cpu-prof --cpu-prof-dir=prof
dist/main.js\` (a peer: \`node --cpu-prof --import tsx bench/peers.ts tus <dir>\`), load it, stop it with
SIGTERM or SIGINT, then \`node --import tsx bench/profile-top.ts prof/<file>.cpuprofile\` prints the frames
and packages with the most self time.

What each figure does is written at the top of its file in \`bench/\`.

${await readFile(join(ROOT, 'bench', 'notes.md'), 'utf8')}`,
    )
    // Formatted as the lint check wants it, so a fresh table never fails CI.
    await promisify(execFile)('npx', ['prettier', '--write', 'BENCHMARKS.md'], { cwd: ROOT })
  }
} finally {
  await rm(scratch, { recursive: true, force: true })
}
