import { readdir, readFile } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  endProcess,
  median,
  memoryOf,
  MiB,
  now,
  postMultipart,
  spawnNode,
  startServer,
  waitDone,
  waitReady,
  type Row,
} from './lib.js'

const FIGURE = '14 idle'

/** What the server depends on at run time: a bare Node that has imported only these is the baseline. */
const DEPENDENCIES = [
  'graphql',
  'graphql-yoga',
  'ws',
  'busboy',
  'lowdb',
  'prom-client',
  'graphql-ws',
  '@escape.tech/graphql-armor',
  'graphql-jit',
  'ioredis',
]

/** Resident memory of `pid` and every process below it (its threads, the hash worker among them, are in its own). */
async function treeRss(pid: number): Promise<number> {
  let rss = (await memoryOf(pid)).rss
  for (const line of await descendants(pid))
    rss += await memoryOf(Number(line.split(' ')[0])).then(
      (m) => m.rss,
      () => 0,
    )
  return rss
}

/** The processes whose parent is `pid` (and theirs), as "pid command". */
async function descendants(pid: number): Promise<string[]> {
  const found: string[] = []
  const parents = new Set([pid])
  const all: { pid: number; ppid: number; comm: string }[] = []
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const stat = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '')
    const close = stat.lastIndexOf(')')
    if (close < 0) continue
    const ppid = Number(stat.slice(close + 2).split(' ')[1])
    all.push({ pid: Number(name), ppid, comm: stat.slice(stat.indexOf('(') + 1, close) })
  }
  for (let grew = true; grew;) {
    grew = false
    for (const p of all)
      if (parents.has(p.ppid) && !parents.has(p.pid)) {
        parents.add(p.pid)
        found.push(`${p.pid} ${p.comm}`)
        grew = true
      }
  }
  return found
}

/**
 * 14: (a) resident memory of the idle server (3 s after /readyz first answers 200) against a bare Node that
 * has only imported the same dependencies; (b) time from spawn until /readyz answers 200, median of `runs`
 * fresh starts on an empty folder; and whether the server leaves any helper process running.
 */
export async function idle(runs = 5): Promise<Row[]> {
  const startups: number[] = []
  let rss = 0
  let helpers: string[] = []
  // Idle with everything a served upload loads (the REST and ingest code, the hashing worker's thread, alive
  // for 10 s after its last stream): what an idle server that has served costs, worker counted. 1 MiB, since
  // a body of 64 KiB or less is hashed on the main thread and starts no worker.
  let warmRss: number
  {
    const server = await startServer()
    try {
      await waitReady(server.url, 30_000, 2)
      const file = join(tmpdir(), `bench-idle-${process.pid}.bin`)
      await writeFile(file, Buffer.alloc(MiB, 7))
      const answer = await postMultipart(`${server.url}/api/upload?speed=0`, [], {
        field: 'file',
        path: file,
        size: MiB,
        name: 't',
      })
      await rm(file, { force: true })
      const { upload_id: id } = JSON.parse(answer.text) as { upload_id: string }
      await waitDone(server.url, id)
      await sleep(3000)
      warmRss = await treeRss(server.pid)
    } finally {
      await server.stop()
    }
  }
  for (let run = 0; run < runs; run++) {
    const began = now()
    const server = await startServer()
    try {
      await waitReady(server.url, 30_000, 2)
      startups.push(now() - began)
      if (run === 0) {
        await sleep(3000)
        rss = await treeRss(server.pid)
        helpers = await descendants(server.pid)
      }
    } finally {
      await server.stop()
    }
  }

  const script =
    DEPENDENCIES.map((d) => `await import(${JSON.stringify(d)})`).join('; ') +
    "; console.log('imported'); setInterval(() => {}, 1e6)"
  const bare = spawnNode(['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
  let bareRss: number
  try {
    await new Promise<void>((resolve, reject) => {
      bare.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('imported') && resolve())
      bare.once('exit', (code) => reject(new Error(`the bare import exited (${code})`)))
    })
    await sleep(3000)
    bareRss = (await memoryOf(bare.pid!)).rss
  } finally {
    await endProcess(bare)
  }

  const startup = median(startups) / 1000
  return [
    {
      figure: FIGURE,
      measure: 'RSS of the idle server, 3 s after ready',
      value: rss / MiB,
      unit: 'MiB',
      baseline: { name: 'bare node importing its dependencies', value: bareRss / MiB },
      ratio: bareRss / rss,
      target: `≤ 1.15x the baseline (${(rss / bareRss).toFixed(2)}x)`,
      pass: rss <= 1.15 * bareRss,
    },
    {
      figure: FIGURE,
      measure:
        'RSS of the server’s processes, idle 3 s after a 1 MiB upload (its hash worker alive, counted)',
      value: warmRss / MiB,
      unit: 'MiB',
      baseline: { name: 'bare node importing its dependencies', value: bareRss / MiB },
      ratio: bareRss / warmRss,
      target: '< 96 MiB',
      pass: warmRss < 96 * MiB,
    },
    {
      figure: FIGURE,
      measure: `spawn → /readyz 200 (median of ${runs})`,
      value: startup,
      unit: 's',
      target: `≤ 0.5 s (runs ${startups.map((s) => (s / 1000).toFixed(2)).join(', ')})`,
      pass: startup <= 0.5,
    },
    {
      figure: FIGURE,
      measure: 'helper processes left running by the idle server',
      value: helpers.length,
      unit: '',
      target: helpers.length ? `none (found ${helpers.join(', ')})` : 'none',
      pass: helpers.length === 0,
    },
  ]
}
