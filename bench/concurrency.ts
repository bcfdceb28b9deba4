import { join } from 'node:path'
import {
  cpuSecondsOf,
  KiB,
  makeFile,
  median,
  percentile,
  postMultipart,
  startServer,
  waitDone,
  type Row,
} from './lib.js'

/** 6: 200 uploads at 256 KiB/s each, all at once: how close each finishes to its ideal time, and the CPU used. */
export async function concurrency(scratch: string, count = 200): Promise<Row[]> {
  const speed = 256 * KiB
  const size = 512 * KiB // 2 s each
  const file = join(scratch, 'concurrent')
  await makeFile(file, size)
  const server = await startServer()
  try {
    const answers = await Promise.all(
      Array.from({ length: count }, () =>
        postMultipart(`${server.url}/api/upload?speed=${speed}`, [], {
          field: 'file',
          path: file,
          size,
          name: 'data.bin',
        }),
      ),
    )
    const cpuBefore = await cpuSecondsOf(server.pid)
    const started = performance.now()
    const ids = answers.map((a) => (JSON.parse(a.text) as { upload_id: string }).upload_id)
    const done = await Promise.all(ids.map((id) => waitDone(server.url, id, 100)))
    const wall = (performance.now() - started) / 1000
    const cores = ((await cpuSecondsOf(server.pid)) - cpuBefore) / wall
    const errors = done.map(
      (d) => (Math.abs((Date.parse(d.completedAt!) - Date.parse(d.createdAt)) / 1000 - 2) / 2) * 100,
    )
    const worst = Math.max(...errors)
    return [
      {
        figure: '6 many at once',
        measure: `${count} × 512 KiB at 256 KiB/s: completion-time error, median / p99`,
        value: median(errors),
        unit: '%',
        target: `each < 2 % (p99 ${percentile(errors, 99).toFixed(2)} %, worst ${worst.toFixed(2)} %)`,
        pass: worst < 2,
      },
      {
        figure: '6 many at once',
        measure: `${count} transfers running: server CPU (polling clients included)`,
        value: cores,
        unit: 'cores',
        target: '< 0.5 core',
        pass: cores < 0.5,
      },
    ]
  } finally {
    await server.stop()
  }
}
