import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  attempt,
  KiB,
  makeFile,
  median,
  MiB,
  ms,
  now,
  percentile,
  postMultipart,
  sizeOf,
  startServer,
  type BenchServer,
  type Row,
} from './lib.js'
import { startRedis } from './redis.js'
import { histogramCount, histogramPercentile, subscribers } from './swarm.js'

const FIGURE = '9 cluster'
/** The lease an owner holds on a running upload (README, Several instances). */
const LEASE_S = 5

async function post(url: string): Promise<number> {
  const started = now()
  const response = await fetch(url, { method: 'POST' })
  const text = await response.text()
  if (response.status !== 200) throw new Error(`POST ${url}: ${response.status} ${text.slice(0, 200)}`)
  return now() - started
}

async function statusOf(url: string, id: string): Promise<{ status: string; uploaded_size: number }> {
  const response = await fetch(`${url}/api/upload/${id}/status`)
  if (response.status !== 200) throw new Error(`status via ${url}: ${response.status}`)
  return (await response.json()) as { status: string; uploaded_size: number }
}

/**
 * 9: three instances on one folder and one Redis (AOF, fsync always). (a) pause and resume answered by an
 * instance that does not own the transfer, against the same sent to its owner; (b) how long after its owner
 * is SIGKILLed another instance carries a running upload on; (c) delivery latency to 1000 graphql-ws
 * subscribers on a non-owner, following an upload that runs on the owner (arrival − the owner's updatedAt).
 */
export async function cluster(scratch: string, pairs = 30, subscriberCount = 1000): Promise<Row[]> {
  const redis = await startRedis()
  const dir = await mkdtemp(join(tmpdir(), 'bench-cluster-'))
  const instances: BenchServer[] = []
  let started = 0
  const startInstance = async () => {
    const server = await startServer({
      REDIS_URL: redis.url,
      UPLOAD_DIR: dir,
      INSTANCE_ID: `bench-${String.fromCharCode(97 + started++)}`,
    })
    instances.push(server)
    return server
  }
  const file = join(scratch, 'cluster')
  await makeFile(file, 32 * MiB)
  const upload = async (via: BenchServer, speed: number, size = 32 * MiB) => {
    const answer = await postMultipart(`${via.url}/api/upload?speed=${speed}`, [], {
      field: 'file',
      path: file,
      size,
      name: 'data.bin',
    })
    if (answer.status !== 200) throw new Error(`upload via ${via.url}: ${answer.status} ${answer.text}`)
    return (JSON.parse(answer.text) as { upload_id: string }).upload_id
  }
  const cancel = (via: BenchServer, id: string) =>
    fetch(`${via.url}/api/upload/${id}/cancel`, { method: 'POST' }).then((r) => r.text())

  const rows: Row[] = []
  try {
    await Promise.all([startInstance(), startInstance(), startInstance()])
    const [a, b] = instances as [BenchServer, BenchServer, BenchServer]

    rows.push(
      ...(await attempt(FIGURE, 'pause/resume via a non-owner', async () => {
        const id = await upload(a, 256 * KiB) // 128 s: it runs throughout
        await sleep(300)
        const via = { owner: [] as number[], other: [] as number[] }
        const pauses: number[] = []
        const resumes: number[] = []
        // The first command each way is not counted (REST operations compile on first use, and so on);
        // the first one carried to the owner is reported beside the figures.
        const cold = { other: 0, owner: 0 }
        for (const [name, server] of [
          ['other', b],
          ['owner', a],
        ] as const) {
          cold[name] = await post(`${server.url}/api/upload/${id}/pause`)
          await sleep(20)
          await post(`${server.url}/api/upload/${id}/resume`)
          await sleep(20)
        }
        for (let i = 0; i < pairs; i++) {
          // Interleaved, so that the machine's noise falls on both alike.
          for (const [name, server] of [
            ['other', b],
            ['owner', a],
          ] as const) {
            const paused = await post(`${server.url}/api/upload/${id}/pause`)
            await sleep(20)
            const resumed = await post(`${server.url}/api/upload/${id}/resume`)
            via[name].push(paused, resumed)
            if (name === 'other') {
              pauses.push(paused)
              resumes.push(resumed)
            }
            await sleep(20)
          }
        }
        await cancel(a, id)
        const row = (label: string, value: number, base: number): Row => ({
          figure: FIGURE,
          measure: `pause+resume answer via a non-owner (${pairs} pairs), ${label}`,
          value,
          unit: 'ms',
          baseline: { name: `via the owner, ${label}`, value: base },
          ratio: base / value,
          target: `< 20 ms (pause ${ms(percentile(pauses, label === 'p99' ? 99 : 50))}, resume ${ms(percentile(resumes, label === 'p99' ? 99 : 50))} ms; first pause, not counted: ${ms(cold.other)} ms, via the owner ${ms(cold.owner)} ms)`,
          pass: value < 20,
        })
        return [
          row('median', median(via.other), median(via.owner)),
          row('p99', percentile(via.other, 99), percentile(via.owner, 99)),
        ]
      })),
    )

    rows.push(
      ...(await attempt(FIGURE, `${subscriberCount} subscribers on a non-owner`, async () => {
        const id = await upload(a, 256 * KiB)
        const wsUrl = b.url.replace(/^http/, 'ws') + '/graphql'
        const crowd = await subscribers(wsUrl, id, subscriberCount)
        try {
          if (crowd.connected < subscriberCount)
            throw new Error(`only ${crowd.connected} of ${subscriberCount} subscribers connected`)
          await sleep(500)
          crowd.collect()
          await sleep(4000)
          const report = await crowd.report()
          if (histogramCount(report.histogram) === 0) throw new Error('no progress event arrived')
          const p50 = histogramPercentile(report.histogram, 50)
          const p99 = histogramPercentile(report.histogram, 99)
          return [
            {
              figure: FIGURE,
              measure: `${subscriberCount} subscribers on a non-owner: delivery latency p50`,
              value: p50,
              unit: 'ms',
              target: `(${histogramCount(report.histogram)} events over 4 s)`,
            },
            {
              figure: FIGURE,
              measure: `${subscriberCount} subscribers on a non-owner: delivery latency p99`,
              value: p99,
              unit: 'ms',
              target: '< 100 ms',
              pass: p99 < 100,
            },
          ]
        } finally {
          await crowd.stop()
          await cancel(a, id)
        }
      })),
    )

    rows.push(
      ...(await attempt(FIGURE, 'adoption after SIGKILL of the owner', async () => {
        const times: number[] = []
        for (let trial = 0; trial < 3; trial++) {
          const [victim, watcher] = instances as [BenchServer, BenchServer]
          const id = await upload(victim, MiB)
          const part = join(dir, '.transfers', id)
          const deadline = now() + 5000
          while ((await sizeOf(part)) <= 0 && now() < deadline) await sleep(20)
          await sleep(1200) // at least one checkpoint of its byte count
          const exited = new Promise((resolve) => victim.child.once('exit', resolve))
          victim.child.kill('SIGKILL')
          const killed = now()
          await exited
          instances.splice(instances.indexOf(victim), 1)
          // A reading that fails (Redis busy, say) is no reading: the poll goes on.
          const read = () =>
            statusOf(watcher.url, id).then(
              (s) => s.uploaded_size,
              () => -1,
            )
          let previous = await read()
          let adopted: number | undefined
          while (now() - killed < 30_000) {
            await sleep(20)
            const current = await read()
            if (current < 0) continue
            if (previous >= 0 && current > previous) {
              adopted = now() - killed
              break
            }
            previous = current
          }
          if (adopted === undefined) throw new Error(`trial ${trial + 1}: not carried on within 30 s`)
          times.push(adopted)
          await cancel(watcher, id)
          await startInstance() // three again
        }
        const value = median(times) / 1000
        return [
          {
            figure: FIGURE,
            measure: 'SIGKILL of the owner → another instance moves its upload (median of 3)',
            value,
            unit: 's',
            target: `< lease + 5 s (${LEASE_S + 5} s); runs ${times.map((t) => (t / 1000).toFixed(2)).join(', ')} s`,
            pass: value < LEASE_S + 5,
          },
        ]
      })),
    )
    return rows
  } finally {
    await Promise.all(instances.map((s) => s.stop()))
    await redis.stop()
    await rm(dir, { recursive: true, force: true })
  }
}
