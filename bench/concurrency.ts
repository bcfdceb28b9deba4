import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  cpuSecondsOf,
  gql,
  KiB,
  makeFile,
  median,
  percentile,
  postMultipart,
  startServer,
  type Row,
  type Times,
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
    // One list query four times a second: the bench must not be the load it measures.
    let done: Times[] = []
    for (;;) {
      const { uploads } = await gql<{ uploads: (Times & { id: string })[] }>(
        server.url,
        '{ uploads { id status createdAt receivedAt completedAt } }',
      )
      done = uploads.filter((u) => ids.includes(u.id))
      if (done.every((u) => u.status !== 'IN_PROGRESS' && u.status !== 'RECEIVING')) break
      await sleep(250)
    }
    const wall = (performance.now() - started) / 1000
    const cores = ((await cpuSecondsOf(server.pid)) - cpuBefore) / wall
    const errors = done.map(
      (d) => (Math.abs((Date.parse(d.completedAt!) - Date.parse(d.receivedAt!)) / 1000 - 2) / 2) * 100,
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
        measure: `${count} transfers running: server CPU`,
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
