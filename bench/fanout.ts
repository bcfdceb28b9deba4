import { connect } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import WebSocket from 'ws'
import {
  cpuSecondsOf,
  makeFile,
  memoryOf,
  MiB,
  percentile,
  postMultipart,
  startServer,
  type Row,
} from './lib.js'

const FOLLOW = (id: string) =>
  `subscription { uploadProgress(id: "${id}") { status uploadedSize updatedAt } }`

/** A graphql-ws subscriber that records, for each progress event, how long after its publication it arrived. */
function subscriber(wsUrl: string, id: string, latencies: number[]): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl, 'graphql-transport-ws')
    let first = true
    ws.on('open', () => ws.send(JSON.stringify({ type: 'connection_init' })))
    ws.on('error', reject)
    ws.on('message', (data: Buffer) => {
      const message = JSON.parse(data.toString()) as {
        type: string
        payload?: { data?: { uploadProgress: { status: string; updatedAt: string } } }
      }
      if (message.type === 'connection_ack') {
        ws.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: FOLLOW(id) } }))
        resolve(ws)
      } else if (message.type === 'next') {
        const upload = message.payload?.data?.uploadProgress
        if (upload && !first && upload.status === 'IN_PROGRESS')
          latencies.push(Date.now() - Date.parse(upload.updatedAt))
        first = false
      }
    })
  })
}

/** A masked client text frame (RFC 6455 §5.2); a zero mask key leaves the payload as it is. */
function frame(text: string): Buffer {
  const payload = Buffer.from(text)
  const header =
    payload.length < 126
      ? Buffer.from([0x81, 0x80 | payload.length])
      : Buffer.from([0x81, 0x80 | 126, payload.length >> 8, payload.length & 0xff])
  return Buffer.concat([header, Buffer.alloc(4), payload])
}

/** A WebSocket that subscribes to every upload's progress and then never reads another byte. */
function stalledReader(url: URL): Promise<() => void> {
  return new Promise((resolve) => {
    const socket = connect(Number(url.port), url.hostname)
    let seen = ''
    socket.write(
      'GET /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n' +
        'Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n',
    )
    socket.write(frame(JSON.stringify({ type: 'connection_init' })))
    socket.on('data', (chunk: Buffer) => {
      seen += chunk.toString('latin1')
      if (!seen.includes('connection_ack')) return
      socket.removeAllListeners('data')
      socket.write(
        frame(
          JSON.stringify({
            id: '1',
            type: 'subscribe',
            payload: {
              query:
                'subscription { uploadProgress { id status uploadedSize totalSize currentSpeed targetSpeed filename updatedAt } }',
            },
          }),
        ),
      )
      socket.pause()
      resolve(() => socket.destroy())
    })
  })
}

/**
 * 7: 1000 graphql-ws subscribers on one upload: delivery latency from publication, server CPU and memory;
 * then again with 100 more sockets subscribed to everything that never read: memory must stay flat.
 */
export async function fanout(scratch: string, count = 1000): Promise<Row[]> {
  const server = await startServer()
  const wsUrl = server.url.replace(/^http/, 'ws') + '/graphql'
  const file = join(scratch, 'fanout')
  await makeFile(file, 40 * MiB)
  const start = async (size: number, speed: number) => {
    const answer = await postMultipart(`${server.url}/api/upload?speed=${speed}`, [], {
      field: 'file',
      path: file,
      size,
      name: 'data.bin',
    })
    return (JSON.parse(answer.text) as { upload_id: string }).upload_id
  }
  try {
    const id = await start(40 * MiB, 2 * MiB) // 20 s of progress, ten events a second
    const quiet: number[] = []
    const sockets: WebSocket[] = []
    for (let i = 0; i < count; i += 50) {
      sockets.push(
        ...(await Promise.all(
          Array.from({ length: Math.min(50, count - i) }, () => subscriber(wsUrl, id, quiet)),
        )),
      )
    }
    await sleep(500)
    quiet.length = 0
    const memBefore = await memoryOf(server.pid)
    const cpuBefore = await cpuSecondsOf(server.pid)
    await sleep(4000)
    const cores = ((await cpuSecondsOf(server.pid)) - cpuBefore) / 4
    const memWith = await memoryOf(server.pid)
    const p50 = percentile(quiet, 50)
    const p99 = percentile(quiet, 99)

    const stalled = await Promise.all(Array.from({ length: 100 }, () => stalledReader(new URL(server.url))))
    // More uploads, so the stalled sockets are offered far more than they would ever read.
    await Promise.all(Array.from({ length: 20 }, () => start(40 * MiB, 2 * MiB)))
    const busy: number[] = []
    const collect = sockets.map((ws) => {
      const listener = (data: Buffer) => {
        const message = JSON.parse(data.toString()) as {
          type: string
          payload?: { data?: { uploadProgress: { status: string; updatedAt: string } } }
        }
        const upload = message.payload?.data?.uploadProgress
        if (message.type === 'next' && upload?.status === 'IN_PROGRESS')
          busy.push(Date.now() - Date.parse(upload.updatedAt))
      }
      ws.on('message', listener)
      return () => ws.off('message', listener)
    })
    // Memory saws up and down as garbage is made and collected (a collection every ~6 s here); a backlog
    // would raise the floor. Compare the lowest RSS of the first 5 s with the lowest of the last 5 s of 20 s.
    const samples: { t: number; rss: number }[] = []
    const began = performance.now()
    while (performance.now() - began < 20_000) {
      samples.push({ t: performance.now() - began, rss: (await memoryOf(server.pid)).rss })
      await sleep(250)
    }
    const floor = (from: number, to: number) =>
      Math.min(...samples.filter((s) => s.t >= from && s.t < to).map((s) => s.rss))
    const floorGrowth = floor(15_000, 20_000) - floor(0, 5000)
    for (const off of collect) off()
    for (const close of stalled) close()
    for (const ws of sockets) ws.terminate()

    return [
      {
        figure: '7 fan-out',
        measure: `${count} subscribers: delivery latency p50`,
        value: p50,
        unit: 'ms',
        target: '(p99 < 50 ms)',
      },
      {
        figure: '7 fan-out',
        measure: `${count} subscribers: delivery latency p99`,
        value: p99,
        unit: 'ms',
        target: '< 50 ms',
        pass: p99 < 50,
      },
      {
        figure: '7 fan-out',
        measure: `${count} subscribers: server CPU, RSS growth`,
        value: cores,
        unit: 'cores',
        target: `(RSS +${((memWith.rss - memBefore.rss) / MiB).toFixed(1)} MiB over 4 s)`,
      },
      {
        figure: '7 fan-out',
        measure: `+100 sockets that never read: others' latency p99`,
        value: percentile(busy, 99),
        unit: 'ms',
        target: '< 50 ms',
        pass: percentile(busy, 99) < 50,
      },
      {
        figure: '7 fan-out',
        measure: '+100 sockets that never read: growth of the RSS floor over 20 s',
        value: floorGrowth / MiB,
        unit: 'MiB',
        target: 'flat (< 16 MiB)',
        pass: floorGrowth < 16 * MiB,
      },
    ]
  } finally {
    await server.stop()
  }
}
