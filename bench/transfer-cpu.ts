/**
 * The verified unthrottled transfer's CPU, by thread: a file is uploaded at speed=0, and from its answer to
 * COMPLETED the server's main thread and the whole process are sampled (/proc/<pid>/task/<pid>/stat and
 * /proc/<pid>/stat). Wall time is receivedAt → completedAt, as in the bench's transfer row. With
 * BENCH_PARENT, the parent tree's server and this one's run in turns, so a change is measured against its
 * parent on the same machine at the same time.
 *
 *   node --import tsx bench/transfer-cpu.ts [MiB=256] [rounds=3]
 */
import { readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  cpuSecondsOf,
  gql,
  makeFile,
  MiB,
  postMultipart,
  ROOT,
  serverTree,
  startServer,
  type Times,
} from './lib.js'

const size = Number(process.argv[2] ?? 256) * MiB
const rounds = Number(process.argv[3] ?? 3)
const trees = [
  ...(process.env.BENCH_PARENT ? [{ label: 'parent', root: process.env.BENCH_PARENT }] : []),
  { label: 'this', root: ROOT },
]

async function threadCpu(pid: number, tid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8')).split(') ')[1]!.split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

const file = join(tmpdir(), `transfer-cpu-${process.pid}.bin`)
await makeFile(file, size)
const results: Record<string, { wall: number; main: number; all: number }[]> = {}
try {
  for (let round = 0; round < rounds; round++) {
    const turns = round % 2 === 0 ? trees : [...trees].reverse()
    for (const tree of turns) {
      serverTree.root = tree.root
      const server = await startServer({ MAX_UPLOAD_SIZE: String(size * 2) })
      try {
        const r = await postMultipart(`${server.url}/api/upload?speed=0`, [], {
          field: 'file',
          path: file,
          size,
          name: 'data.bin',
        })
        const main0 = await threadCpu(server.pid, server.pid)
        const all0 = await cpuSecondsOf(server.pid)
        const id = (JSON.parse(r.text) as { upload_id: string }).upload_id
        let upload: Times
        for (;;) {
          ;({ upload } = await gql<{ upload: Times }>(
            server.url,
            `{ upload(id: "${id}") { status createdAt receivedAt completedAt } }`,
          ))
          if (upload.status !== 'IN_PROGRESS') break
          await sleep(50)
        }
        const main = (await threadCpu(server.pid, server.pid)) - main0
        const all = (await cpuSecondsOf(server.pid)) - all0
        if (upload.status !== 'COMPLETED') throw new Error(`ended ${upload.status}`)
        const wall = (Date.parse(upload.completedAt!) - Date.parse(upload.receivedAt!)) / 1000
        ;(results[tree.label] ??= []).push({ wall, main, all })
        console.log(
          `${tree.label} round ${round + 1}: ${wall.toFixed(2)} s, main thread ${main.toFixed(2)} s CPU, process ${all.toFixed(2)} s`,
        )
      } finally {
        await server.stop()
      }
    }
  }
} finally {
  await rm(file, { force: true })
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const gib = size / 1024 ** 3
for (const [label, runs] of Object.entries(results))
  console.log(
    `${label}: median ${median(runs.map((r) => r.wall)).toFixed(2)} s; main thread ${(median(runs.map((r) => r.main)) / gib).toFixed(2)} s/GiB, process ${(median(runs.map((r) => r.all)) / gib).toFixed(2)} s/GiB`,
  )
