import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  cpuSecondsOf,
  gql,
  KiB,
  makeFile,
  median,
  memoryOf,
  MiB,
  now,
  percentile,
  startServer,
  type Row,
  type Times,
} from './lib.js'
import { startSwarm } from './swarm.js'

const FIGURE = '10 scale'

/**
 * 10: `count` throttled uploads at once (64 KiB at 32 KiB/s: 2 s each), sent from a child process with 50 in
 * flight. Each upload's own time (completedAt − receivedAt, from its record) against the ideal 2 s, so the
 * spread of start times does not count; and the server's CPU from the first upload sent to the last done.
 */
export async function scale(scratch: string, count = 1000): Promise<Row[]> {
  const speed = 32 * KiB
  const size = 64 * KiB
  const ideal = size / speed
  const file = join(scratch, 'scale')
  await makeFile(file, size)
  // When each transfer started: the server logs upload.started as it starts the run (after the arrival is
  // saved), so the time from receivedAt to it is creation's share of the error, not the pacing's.
  const startedAt = new Map<string, number>()
  const server = await startServer(
    {},
    {
      onLine(line) {
        if (!line.includes('"upload.started"')) return
        try {
          const { id, time } = JSON.parse(line) as { id: string; time: string }
          startedAt.set(id, Date.parse(time))
        } catch {
          return
        }
      },
    },
  )
  const sender = startSwarm('upload', { url: server.url, path: file, size, count, concurrency: 50, speed })
  try {
    await sender.next('waiting')
    const cpuBefore = await cpuSecondsOf(server.pid)
    const began = now()
    sender.send({ cmd: 'go' })
    const sent = await sender.next<{ ids: string[]; failed: number; failures: string[]; ms: number }>('done')
    if (sent.failed > 0) throw new Error(`${sent.failed} uploads refused: ${sent.failures.join('; ')}`)
    // A count four times a second: the bench must not be the load it measures.
    for (;;) {
      const { uploadCounts } = await gql<{ uploadCounts: { inProgress: number } }>(
        server.url,
        '{ uploadCounts { inProgress } }',
      )
      if (uploadCounts.inProgress === 0) break
      if (now() - began > 120_000)
        throw new Error(`${uploadCounts.inProgress} uploads still running after 120 s`)
      await sleep(250)
    }
    const wall = (now() - began) / 1000
    const cores = ((await cpuSecondsOf(server.pid)) - cpuBefore) / wall
    const { peak } = await memoryOf(server.pid)
    const { uploads } = await gql<{ uploads: (Times & { id: string })[] }>(
      server.url,
      '{ uploads { id status createdAt receivedAt completedAt } }',
    )
    const notDone = uploads.filter((u) => u.status !== 'COMPLETED')
    if (notDone.length > 0) throw new Error(`${notDone.length} uploads ended ${notDone[0]!.status}`)
    const errors = uploads.map(
      (u) =>
        (Math.abs((Date.parse(u.completedAt!) - Date.parse(u.receivedAt!)) / 1000 - ideal) / ideal) * 100,
    )
    const p99 = percentile(errors, 99)
    const fromStart = uploads.map((u) => {
      const at = startedAt.get(u.id)
      if (at === undefined) throw new Error(`upload ${u.id}: no upload.started in the server's log`)
      return (Math.abs((Date.parse(u.completedAt!) - at) / 1000 - ideal) / ideal) * 100
    })
    const late = uploads.map((u) => startedAt.get(u.id)! - Date.parse(u.receivedAt!))
    return [
      {
        figure: FIGURE,
        measure: `${count} × 64 KiB at 32 KiB/s: completion-time error, median`,
        value: median(errors),
        unit: '%',
        target: `(created in ${(sent.ms / 1000).toFixed(2)} s, 50 in flight)`,
      },
      {
        figure: FIGURE,
        measure: `${count} × 64 KiB at 32 KiB/s: completion-time error, p99`,
        value: p99,
        unit: '%',
        target: `< 3 % (worst ${Math.max(...errors).toFixed(2)} %)`,
        pass: p99 < 3,
      },
      {
        figure: FIGURE,
        measure: `${count} × 64 KiB at 32 KiB/s: completion-time error from the transfer's start, p99`,
        value: percentile(fromStart, 99),
        unit: '%',
        target: `(median ${median(fromStart).toFixed(2)} %, worst ${Math.max(...fromStart).toFixed(2)} %; receivedAt → start: median ${median(late).toFixed(0)} ms, p99 ${percentile(late, 99).toFixed(0)} ms)`,
      },
      {
        figure: FIGURE,
        measure: `${count} transfers: server CPU over ${wall.toFixed(1)} s`,
        value: cores,
        unit: 'cores',
        target: `< 0.5 core (peak RSS ${(peak / MiB).toFixed(0)} MiB)`,
        pass: cores < 0.5,
        cpu: `${(((cores * wall) / count) * 1000).toFixed(2)} ms/upload (created, moved, verified)`,
      },
    ]
  } finally {
    await sender.stop()
    await server.stop()
  }
}
