import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { makeFile, percentile, postMultipart, ROOT, startServer, waitDone, type Row } from './lib.js'

const SECRET = 'bench-hooks-secret-0123456789'
const UPLOADS = 200
const BACKLOG = 10_000
/** Events per upload in the backlog: each upload's go out in order, uploads side by side. */
const PER_UPLOAD = 4

/** A receiver that acknowledges every notification at once and notes when each arrived (ms, wall clock). */
async function receiver(): Promise<{
  url: string
  arrived: Map<string, number>
  server: Server
  wait(n: number): Promise<number>
}> {
  const arrived = new Map<string, number>()
  const waiting: { n: number; resolve: (at: number) => void }[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const at = Date.now()
      const body = JSON.parse(Buffer.concat(chunks).toString()) as { eventId: string; upload: { id: string } }
      arrived.set(body.upload.id + ':' + body.eventId, at)
      res.writeHead(204).end()
      for (const w of waiting.splice(0))
        if (arrived.size >= w.n) w.resolve(at)
        else waiting.push(w)
    })
  })
  server.listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/hooks`,
    arrived,
    server,
    wait: (n) =>
      new Promise((resolve) => (arrived.size >= n ? resolve(Date.now()) : waiting.push({ n, resolve }))),
  }
}

/**
 * Completion to delivery (issue 23): small uploads one after another on one instance, each `completed`
 * notification's arrival at a receiver on loopback against the record's completedAt. Then a backlog of
 * 10,000 notifications written into a stopped server's store, and how fast a start delivers them.
 */
export async function hookDelivery(scratch: string): Promise<Row[]> {
  const hooks = await receiver()
  const env = { HOOKS_URL: hooks.url, HOOKS_SECRET: SECRET, HOOKS_EVENTS: 'completed' }
  const latencies: number[] = []
  const server = await startServer(env)
  try {
    const file = join(scratch, 'hook-small')
    await makeFile(file, 4096)
    for (let i = 0; i < UPLOADS; i++) {
      const answer = await postMultipart(`${server.url}/api/upload?speed=0`, [], {
        field: 'file',
        path: file,
        size: 4096,
        name: 'small.bin',
      })
      const { upload_id: id } = JSON.parse(answer.text) as { upload_id: string }
      const times = await waitDone(server.url, id, 2)
      await hooks.wait(i + 1)
      const at = [...hooks.arrived].find(([key]) => key.startsWith(`${id}:`))?.[1]
      if (at === undefined || !times.completedAt) throw new Error(`no completed notification for ${id}`)
      latencies.push(at - Date.parse(times.completedAt))
    }
  } finally {
    await server.stop()
  }

  // The backlog: written by the store itself (as a stopped server's state would hold it), then delivered.
  const dir = await mkdtemp(join(tmpdir(), 'bench-hook-backlog-'))
  let rate: number
  try {
    const { LocalStore } = (await import(
      pathToFileURL(join(ROOT, 'dist/seams/records/local.js')).href
    )) as typeof import('../src/seams/records/local.js')
    const store = await LocalStore.open(join(dir, '.uploads.json'))
    const outbox = store.outbox()
    const now = Date.now()
    for (let u = 0; u < BACKLOG / PER_UPLOAD; u++) {
      const uploadId = `backlog-${u}`
      await outbox.add(
        Array.from({ length: PER_UPLOAD }, (_, k) => {
          const eventId = `${uploadId}-${k}`
          const body = JSON.stringify({
            eventId,
            type: 'completed',
            upload: {
              id: uploadId,
              filename: 'f.bin',
              size: 4096,
              speed: 0,
              status: 'COMPLETED',
              metadata: {},
            },
          })
          return { eventId, uploadId, type: 'completed' as const, body, createdAt: now }
        }),
      )
    }
    await store.close()
    hooks.arrived.clear()
    const backlogServer = await startServer({ ...env, UPLOAD_DIR: dir })
    try {
      const first = await hooks.wait(1)
      const last = await hooks.wait(BACKLOG)
      rate = (BACKLOG - 1) / ((last - first) / 1000)
    } finally {
      await backlogServer.stop()
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
    hooks.server.close()
  }
  const p99 = percentile(latencies, 99)
  return [
    {
      figure: 'hook-delivery',
      measure: `completion to delivery at the receiver, p50 (${UPLOADS} uploads, one instance)`,
      value: percentile(latencies, 50),
      unit: 'ms',
      target: '',
    },
    {
      figure: 'hook-delivery',
      measure: 'completion to delivery at the receiver, p99',
      value: p99,
      unit: 'ms',
      target: '< 100 ms',
      pass: p99 < 100,
    },
    {
      figure: 'hook-delivery',
      measure: `deliveries a second from a backlog of ${BACKLOG} (${PER_UPLOAD} per upload)`,
      value: rate,
      unit: '/s',
      target: '',
    },
  ]
}
