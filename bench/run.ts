/**
 * npm run bench: builds the server, then measures every figure against a baseline taken in the same run, and
 * prints a table. Writes the same figures to bench/results.json and BENCHMARKS.md.
 *
 *   BENCH_SIZE_MB  size of the ingest/transfer file (default 1024)
 *   BENCH_RUNS     runs per figure; medians are quoted (default 3)
 *   BENCH_ONLY     comma-separated figures to run: ingest,throttle,control,concurrency,fanout,status,cluster,
 *                  scale,cap,state,tiny,idle,tus,hooks
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
import { hooks } from './hooks.js'
import { idle } from './idle.js'
import { ingestAndTransfer } from './ingest.js'
import { makeFile, MiB, ROOT, type Row } from './lib.js'
import { scale } from './scale.js'
import { state } from './state.js'
import { status } from './status.js'
import { throttle } from './throttle.js'
import { tiny } from './tiny.js'
import { tus } from './tus.js'

const size = Number(process.env.BENCH_SIZE_MB ?? 1024) * MiB
const runs = Number(process.env.BENCH_RUNS ?? 3)
const only = process.env.BENCH_ONLY?.split(',')
const wanted = (name: string) => !only || only.includes(name)

const format = (n: number) =>
  Math.abs(n) >= 100 ? n.toFixed(0) : Math.abs(n) >= 10 ? n.toFixed(1) : n.toFixed(2)

function table(rows: Row[]): string {
  const head = ['figure', 'measure', 'value', 'baseline', 'ratio', 'target', '']
  const lines = rows.map((r) => [
    r.figure,
    r.measure,
    `${format(r.value)} ${r.unit}`,
    r.baseline ? `${r.baseline.name}: ${format(r.baseline.value)} ${r.unit}` : '',
    r.ratio === undefined ? '' : `${r.ratio.toFixed(2)}x`,
    r.target,
    r.pass === undefined ? '' : r.pass ? 'ok' : 'MISS',
  ])
  return [head, head.map(() => '---'), ...lines].map((cells) => `| ${cells.join(' | ')} |`).join('\n')
}

/** A figure that fails is reported as a row, so one failure does not cost the rest of the run. */
async function figure(name: string, run: () => Promise<Row[]>): Promise<void> {
  if (!wanted(name)) return
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
      return await ingestAndTransfer(file, size, runs, scratch)
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
  await figure('throttle', () => throttle(runs, scratch))
  await figure('control', () => control(Math.max(5, runs), scratch))
  await figure('concurrency', () => concurrency(scratch))
  await figure('fanout', () => fanout(scratch))
  await figure('status', () => status(scratch))
  await figure('cluster', () => cluster(scratch))
  await figure('scale', () => scale(scratch))
  await figure('cap', () => cap(scratch))
  await figure('state', () => state(scratch, runs))
  await figure('tiny', () => tiny())
  await figure('idle', () => idle())
  await figure('hooks', () => hooks())

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
  await writeFile(join(ROOT, 'bench', 'results.json'), JSON.stringify({ machine, rows }, null, 2) + '\n')
  if (!only) {
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
BENCH_ONLY=throttle npm run bench  # one figure: ingest, throttle, control, concurrency, fanout, status,
                                   # cluster, scale, cap, state, tiny, idle, tus, hooks
BENCH_SIZE_MB=256 BENCH_RUNS=5 npm run bench
\`\`\`

What each figure does is written at the top of its file in \`bench/\`.

${await readFile(join(ROOT, 'bench', 'notes.md'), 'utf8')}`,
    )
    // Formatted as the lint check wants it, so a fresh table never fails CI.
    await promisify(execFile)('npx', ['prettier', '--write', 'BENCHMARKS.md'], { cwd: ROOT })
  }
} finally {
  await rm(scratch, { recursive: true, force: true })
}
