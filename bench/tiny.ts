import { setTimeout as sleep } from 'node:timers/promises'
import { cpuSecondsOf, gql, now, startServer, type Row } from './lib.js'
import { startSwarm } from './swarm.js'

const FIGURE = '13 tiny'

/**
 * 13: `clients` clients at once, each uploading 16-byte files over REST (multipart, speed=0) one after
 * another for `seconds`, from a child process: how many uploads a second reach COMPLETED within that
 * window (from each record's completedAt, read from the final list once nothing is running).
 */
export async function tiny(clients = 16, seconds = 5): Promise<Row[]> {
  const server = await startServer()
  const sender = startSwarm('tiny', { url: server.url, clients, seconds, size: 16 })
  try {
    await sender.next('waiting')
    const cpuBefore = await cpuSecondsOf(server.pid)
    sender.send({ cmd: 'go' })
    const done = await sender.next<{ started: number; ended: number; statuses: Record<string, number> }>(
      'done',
      seconds * 1000 + 60_000,
    )
    const cores = ((await cpuSecondsOf(server.pid)) - cpuBefore) / ((done.ended - done.started) / 1000)
    for (const deadline = now() + 30_000; now() < deadline;) {
      const { uploadCounts } = await gql<{ uploadCounts: { inProgress: number } }>(
        server.url,
        '{ uploadCounts { inProgress } }',
      )
      if (uploadCounts.inProgress === 0) break
      await sleep(100)
    }
    const { uploads } = await gql<{ uploads: { status: string; completedAt: string | null }[] }>(
      server.url,
      '{ uploads { status completedAt } }',
    )
    const window = (done.ended - done.started) / 1000
    const inWindow = uploads.filter(
      (u) =>
        u.status === 'COMPLETED' &&
        Date.parse(u.completedAt!) >= done.started - 1 &&
        Date.parse(u.completedAt!) <= done.ended,
    ).length
    const perSecond = inWindow / window
    const answered = Object.entries(done.statuses)
      .map(([status, n]) => `${n}×${status}`)
      .join(', ')
    return [
      {
        figure: FIGURE,
        measure: `${clients} clients uploading 16 B files for ${seconds} s: completed per second`,
        value: perSecond,
        unit: 'uploads/s',
        target: `≥ 1000/s (answers ${answered}; ${uploads.length} records, server ${cores.toFixed(2)} cores)`,
        pass: perSecond >= 1000,
      },
    ]
  } finally {
    await sender.stop()
    await server.stop()
  }
}
