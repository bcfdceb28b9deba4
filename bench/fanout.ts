import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  attempt,
  cpuSecondsOf,
  KiB,
  makeFile,
  memoryOf,
  metric,
  MiB,
  postMultipart,
  startServer,
  type BenchServer,
  type Row,
} from './lib.js'
import {
  histogramCount,
  histogramPercentile,
  startSwarm,
  subscribers,
  type SubscriberReport,
  type Swarm,
} from './swarm.js'

const FIGURE = '7 fan-out'
/** Every upload here moves for 128 s (8 MiB at 64 KiB/s), ten progress events a second. */
const SIZE = 8 * MiB
const SPEED = 64 * KiB

const quantiles = (report: SubscriberReport) => ({
  p50: histogramPercentile(report.histogram, 50),
  p99: histogramPercentile(report.histogram, 99),
  events: histogramCount(report.histogram),
})

/** Starts an upload of `file` that moves for 128 s; resolves with its id. */
const uploader = (server: BenchServer, file: string) => async () => {
  const answer = await postMultipart(`${server.url}/api/upload?speed=${SPEED}`, [], {
    field: 'file',
    path: file,
    size: SIZE,
    name: 'data.bin',
  })
  if (answer.status !== 200) throw new Error(`upload: ${answer.status} ${answer.text}`)
  return (JSON.parse(answer.text) as { upload_id: string }).upload_id
}

/**
 * 1000 readers on one upload, 20 more uploads moving; then 500 sockets that subscribe to every upload and
 * never read, for `stallSeconds`: the server's RSS floor, and the readers' latency against before.
 */
async function stalledReaders(file: string, stallSeconds: number): Promise<Row[]> {
  const server = await startServer({}, { manyFiles: true })
  const wsUrl = server.url.replace(/^http/, 'ws') + '/graphql'
  const start = uploader(server, file)
  const swarms: Swarm[] = []
  let readers: Awaited<ReturnType<typeof subscribers>> | undefined
  try {
    return await attempt(FIGURE, 'sockets that never read', async () => {
      const id = await start()
      readers = await subscribers(wsUrl, id, 1000)
      // More uploads, so the stalled sockets are offered far more than they would ever read.
      await Promise.all(Array.from({ length: 20 }, start))
      await sleep(1000)
      readers.collect()
      await sleep(5000)
      const without = quantiles(await readers.report())

      const subscriptionsBefore = await metric(server.url, 'graphql_subscriptions').catch(() => undefined)
      const stalled = startSwarm('stalled', { url: server.url, count: 500 }, true)
      swarms.push(stalled)
      const ready = await stalled.next<{ connected: number; failures: number }>('ready')
      if (ready.connected < 500) throw new Error(`only ${ready.connected} of 500 stalled sockets connected`)
      const subscriptionsWith = await metric(server.url, 'graphql_subscriptions').catch(() => undefined)
      readers.collect()
      // Memory saws up and down as garbage is made and collected; a backlog would raise the floor.
      // Compare the lowest RSS of the first 5 s with the lowest of the last 5 s.
      const samples: { t: number; rss: number }[] = []
      const began = performance.now()
      const subscriptions: [number, number | undefined][] = []
      while (performance.now() - began < stallSeconds * 1000) {
        const t = performance.now() - began
        samples.push({ t, rss: (await memoryOf(server.pid)).rss })
        if (samples.length % 8 === 1)
          subscriptions.push([t, await metric(server.url, 'graphql_subscriptions').catch(() => undefined)])
        await sleep(250)
      }
      // The shape of it, for whoever reads the log: RSS floor per 5 s, and open subscriptions over time.
      const floors = Array.from({ length: Math.ceil(stallSeconds / 5) }, (_, i) =>
        Math.round(
          Math.min(...samples.filter((x) => x.t >= i * 5000 && x.t < (i + 1) * 5000).map((x) => x.rss)) / MiB,
        ),
      )
      console.error(
        `(fan-out, never-reading sockets: RSS floor per 5 s ${floors.join(' ')} MiB; subscriptions ${subscriptions
          .map(([t, n]) => `${(t / 1000).toFixed(0)}s:${n}`)
          .join(' ')})`,
      )
      const withStalled = await readers.report()
      const busy = quantiles(withStalled)
      const floor = (from: number, to: number) =>
        Math.min(...samples.filter((s) => s.t >= from && s.t < to).map((s) => s.rss))
      const end = stallSeconds * 1000
      const floorGrowth = floor(end - 5000, end) - floor(0, 5000)
      const closed = await metric(server.url, 'graphql_ws_slow_consumers_closed_total').catch(() => undefined)
      const subscriptionsAfter = await metric(server.url, 'graphql_subscriptions').catch(() => undefined)
      stalled.send({ cmd: 'close' })
      await stalled.next('closed').catch(() => undefined)
      return [
        {
          figure: FIGURE,
          measure: `+500 sockets that never read, ${stallSeconds} s, 21 uploads moving: others' latency p99`,
          value: busy.p99,
          unit: 'ms',
          baseline: { name: 'same, without them', value: without.p99 },
          ratio: without.p99 / busy.p99,
          target: `unchanged within 20 % (p50 ${busy.p50} vs ${without.p50} ms; ${withStalled.open} of 1000 readers open)`,
          pass: busy.p99 <= 1.2 * without.p99,
        },
        {
          figure: FIGURE,
          measure: `+500 sockets that never read: growth of the RSS floor over ${stallSeconds} s`,
          value: floorGrowth / MiB,
          unit: 'MiB',
          target: 'flat (< 16 MiB)',
          pass: floorGrowth < 16 * MiB,
        },
        {
          figure: FIGURE,
          measure: '+500 sockets that never read: closed by the server as slow consumers (1013)',
          value: closed ?? NaN,
          unit: 'sockets',
          target:
            (closed === undefined
              ? '(graphql_ws_slow_consumers_closed_total not in /metrics'
              : '(graphql_ws_slow_consumers_closed_total') +
            `; open subscriptions ${subscriptionsBefore} → ${subscriptionsWith} → ${subscriptionsAfter} at the end)`,
        },
      ]
    })
  } finally {
    await Promise.all(swarms.map((s) => s.stop()))
    await readers?.stop()
    await server.stop()
  }
}

/** Server CPU per message delivered: what a round of sends to every subscriber costs, whatever the load. */
const perMessage = (cpuSeconds: number, messages: number) =>
  `${((cpuSeconds / messages) * 1e6).toFixed(1)} µs CPU per message delivered`

/**
 * 7: graphql-ws subscribers on one upload, from child processes (so that the bench does not starve the
 * server): delivery latency (arrival − the event's updatedAt) with 1000 and with 10,000 of them, and the
 * server's CPU and memory. Then, with 20 more uploads moving, 500 sockets that subscribe to every upload and
 * never read for `stallSeconds`: the server's RSS floor must stay flat, and the 1000 readers' latency must
 * stay as it was without them.
 */
export async function fanout(scratch: string, counts = [1000, 10_000], stallSeconds = 60): Promise<Row[]> {
  const server = await startServer({}, { manyFiles: true })
  const wsUrl = server.url.replace(/^http/, 'ws') + '/graphql'
  const file = join(scratch, 'fanout')
  await makeFile(file, SIZE)
  const start = uploader(server, file)
  const crowds: { stop(): Promise<void> }[] = []
  const rows: Row[] = []
  try {
    const id = await start()
    const [first = 1000, ...more] = counts
    const readers = await subscribers(wsUrl, id, first)
    crowds.push(readers)
    if (readers.connected < first)
      throw new Error(`only ${readers.connected} of ${first} subscribers connected`)
    await sleep(500)
    readers.collect()
    const memBefore = await memoryOf(server.pid)
    const cpuBefore = await cpuSecondsOf(server.pid)
    await sleep(4000)
    const cores = ((await cpuSecondsOf(server.pid)) - cpuBefore) / 4
    const memWith = await memoryOf(server.pid)
    const one = quantiles(await readers.report())
    if (one.events === 0) throw new Error('no progress event arrived')
    rows.push(
      {
        figure: FIGURE,
        measure: `${first} subscribers: delivery latency p50`,
        value: one.p50,
        unit: 'ms',
        target: `(${one.events} events over 4 s)`,
      },
      {
        figure: FIGURE,
        measure: `${first} subscribers: delivery latency p99`,
        value: one.p99,
        unit: 'ms',
        target: '< 50 ms',
        pass: one.p99 < 50,
      },
      {
        figure: FIGURE,
        measure: `${first} subscribers: server CPU, RSS growth`,
        value: cores,
        unit: 'cores',
        target: `(${perMessage(cores * 4, one.events)}; RSS ${(memWith.rss / MiB).toFixed(0)} MiB, +${((memWith.rss - memBefore.rss) / MiB).toFixed(1)} MiB over 4 s)`,
        cpu: perMessage(cores * 4, one.events),
      },
    )

    for (const total of more)
      rows.push(
        ...(await attempt(FIGURE, `${total} subscribers`, async () => {
          const extra = await subscribers(wsUrl, id, total - first, 4500)
          crowds.push(extra)
          try {
            const connected = readers.connected + extra.connected
            if (connected < total) throw new Error(`only ${connected} of ${total} subscribers connected`)
            await sleep(1000)
            readers.collect()
            extra.collect()
            const clientPids = [...readers.swarms, ...extra.swarms].map((s) => s.child.pid!)
            const clientCpu = async () =>
              (await Promise.all(clientPids.map((pid) => cpuSecondsOf(pid)))).reduce((a, b) => a + b, 0)
            const cpu = await cpuSecondsOf(server.pid)
            const clientsBefore = await clientCpu()
            await sleep(4000)
            const used = ((await cpuSecondsOf(server.pid)) - cpu) / 4
            const clientsUsed = ((await clientCpu()) - clientsBefore) / 4
            const rss = (await memoryOf(server.pid)).rss
            const [a, b] = await Promise.all([readers.report(), extra.report()])
            const all = quantiles({ ...a, histogram: [...a.histogram, ...b.histogram] })
            return [
              {
                figure: FIGURE,
                measure: `${total} subscribers: delivery latency p50`,
                value: all.p50,
                unit: 'ms',
                target: `(${all.events} events over 4 s)`,
              },
              {
                figure: FIGURE,
                measure: `${total} subscribers: delivery latency p99`,
                value: all.p99,
                unit: 'ms',
                target: '< 100 ms',
                pass: all.p99 < 100,
                cpu: perMessage(used * 4, all.events),
              },
              {
                figure: FIGURE,
                measure: `${total} subscribers: server CPU, RSS`,
                value: used,
                unit: 'cores',
                target: `(${perMessage(used * 4, all.events)}; RSS ${(rss / MiB).toFixed(0)} MiB; subscriber processes ${clientsUsed.toFixed(2)} cores)`,
              },
            ]
          } finally {
            crowds.splice(crowds.indexOf(extra), 1)
            await extra.stop()
          }
        })),
      )

    // The memory the 10,000 left behind would hide any growth: the never-reading sockets get a fresh server.
    await Promise.all(crowds.splice(0).map((c) => c.stop()))
    await server.stop()
    rows.push(...(await stalledReaders(file, stallSeconds)))
    return rows
  } finally {
    await Promise.all(crowds.map((c) => c.stop()))
    await server.stop()
  }
}
