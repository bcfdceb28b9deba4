/**
 * The load the figures put on the server, in a process of its own, so that the process that measures does
 * not starve the server (or the clients) of a core. Started by bench/swarm.ts as
 *
 *   node --import tsx bench/client-process.ts <mode> '<json args>'
 *
 * It writes one JSON message a line on stdout and reads one JSON command a line on stdin; it exits when
 * stdin closes (its parent has gone). Modes:
 *
 *   subscribe  `count` graphql-ws subscribers (raw sockets) following `id` (or every upload); reports a
 *              histogram of delivery latencies (arrival − the event's updatedAt, in whole ms) between
 *              `collect` and `report`
 *   stalled    `count` raw WebSockets that subscribe to every upload and then never read another byte
 *   upload     `count` multipart uploads of one file with `concurrency` in flight, after `go`
 *   tiny       `clients` loops uploading a `size`-byte body for `seconds`, after one uncounted upload each and `go`: REST multipart at
 *              speed=0, or with `protocol: 'tus'` a tus creation-with-upload (the body in the creating POST)
 *   probe      a tiny request (GET /healthz) every `everyMs`, at most `inflight` at once; `stop` answers with
 *              the arrival time of every response (epoch ms), from which event-loop blocks are read
 */
import { request, Agent } from 'node:http'
import { connect, type Socket } from 'node:net'
import { createInterface } from 'node:readline'
import { now, postMultipart } from './lib.js'

type Json = Record<string, unknown>

const [mode = '', rawArgs = '{}'] = process.argv.slice(2)
const args = JSON.parse(rawArgs) as Json
const out = (message: Json) => process.stdout.write(`${JSON.stringify(message)}\n`)

const handlers = new Map<string, (command: Json) => void | Promise<void>>()
createInterface({ input: process.stdin })
  .on('line', (line) => {
    const command = JSON.parse(line) as Json
    const handler = handlers.get(String(command.cmd))
    if (handler) void Promise.resolve(handler(command)).catch(fail)
  })
  .on('close', () => process.exit(0))

function fail(error: unknown): void {
  out({ type: 'error', message: (error as Error)?.message ?? String(error) })
}

const go = () => new Promise<void>((resolve) => handlers.set('go', () => resolve()))

// ---- subscribe -------------------------------------------------------------------------------------------

/** A masked client frame (RFC 6455 §5.2); a zero mask key leaves the payload as it is. */
function frame(payload: Buffer | string, opcode = 0x1): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload
  const header =
    body.length < 126
      ? Buffer.from([0x80 | opcode, 0x80 | body.length])
      : Buffer.from([0x80 | opcode, 0x80 | 126, body.length >> 8, body.length & 0xff])
  return Buffer.concat([header, Buffer.alloc(4), body])
}

const UPGRADE =
  'GET /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n' +
  'Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n'
const NEXT = Buffer.from('"next"')
const IN_PROGRESS = Buffer.from('"IN_PROGRESS"')
const UPDATED_AT = Buffer.from('"updatedAt":"')

/**
 * graphql-ws subscribers on raw sockets with the least parsing that measures them (ws's per-message work
 * made ten thousand subscribers in two processes the bottleneck): each chunk read is stamped once, its
 * frames split by length, pings answered (the server drops a socket that does not pong), and a progress
 * event's updatedAt found by a byte search.
 */
async function subscribe({ wsUrl, id, count, batch = 200 }: Json): Promise<void> {
  const target = new URL(String(wsUrl))
  const query =
    typeof id === 'string'
      ? `subscription { uploadProgress(id: "${id}") { status uploadedSize updatedAt } }`
      : 'subscription { uploadProgress { id status uploadedSize updatedAt } }'
  const subscribeFrame = frame(JSON.stringify({ id: '1', type: 'subscribe', payload: { query } }))
  const initFrame = frame('{"type":"connection_init"}')
  const histogram = new Map<number, number>()
  let collecting = false
  let events = 0
  let errors = 0
  let open = 0
  const closes: Record<string, number> = {}
  const sockets: Socket[] = []

  const one = () =>
    new Promise<void>((resolve) => {
      const socket = connect(Number(target.port), target.hostname)
      socket.setNoDelay(true)
      sockets.push(socket)
      let upgraded = false
      let acked = false
      let first = true
      let closedWith: number | undefined
      let pending: Buffer | undefined
      socket.on('error', () => {
        errors++
        resolve()
      })
      socket.on('close', () => {
        if (acked) open--
        const code = String(closedWith ?? 'tcp')
        closes[code] = (closes[code] ?? 0) + 1
        resolve()
      })
      socket.write(UPGRADE)
      socket.write(initFrame)
      const text = (payload: Buffer, arrived: number) => {
        if (!acked) {
          if (payload.includes('connection_ack')) {
            acked = true
            open++
            socket.write(subscribeFrame)
            resolve()
          }
          return
        }
        if (payload.indexOf(NEXT) < 0) return
        // The first event is the upload's state at subscription time, not a delivery.
        if (first) {
          first = false
          return
        }
        if (!collecting || payload.indexOf(IN_PROGRESS) < 0) return
        const at = payload.indexOf(UPDATED_AT)
        if (at < 0) return
        const from = at + UPDATED_AT.length
        const stamped = Date.parse(payload.toString('latin1', from, payload.indexOf(0x22, from)))
        const latency = Math.max(0, arrived - stamped)
        histogram.set(latency, (histogram.get(latency) ?? 0) + 1)
        events++
      }
      socket.on('data', (chunk: Buffer) => {
        const arrived = Date.now()
        let buf = pending ? Buffer.concat([pending, chunk]) : chunk
        pending = undefined
        if (!upgraded) {
          const end = buf.indexOf('\r\n\r\n')
          if (end < 0) {
            pending = buf
            return
          }
          if (!buf.toString('latin1', 0, 12).includes('101')) {
            errors++
            socket.destroy()
            return
          }
          upgraded = true
          buf = buf.subarray(end + 4)
        }
        while (buf.length >= 2) {
          const opcode = buf[0]! & 0x0f
          let length = buf[1]! & 0x7f
          let offset = 2
          if (length === 126) {
            if (buf.length < 4) break
            length = buf.readUInt16BE(2)
            offset = 4
          } else if (length === 127) {
            if (buf.length < 10) break
            length = Number(buf.readBigUInt64BE(2))
            offset = 10
          }
          if (buf.length < offset + length) break
          const payload = buf.subarray(offset, offset + length)
          if (opcode === 0x1) text(payload, arrived)
          else if (opcode === 0x9) socket.write(frame(Buffer.from(payload), 0xa))
          else if (opcode === 0x8) {
            closedWith = payload.length >= 2 ? payload.readUInt16BE(0) : 1005
            socket.end()
          }
          buf = buf.subarray(offset + length)
        }
        if (buf.length > 0) pending = Buffer.from(buf)
      })
    })

  const total = Number(count)
  for (let i = 0; i < total; i += Number(batch)) {
    await Promise.all(Array.from({ length: Math.min(Number(batch), total - i) }, one))
  }
  handlers.set('collect', () => {
    histogram.clear()
    events = 0
    collecting = true
  })
  handlers.set('report', () => {
    collecting = false
    out({ type: 'report', histogram: [...histogram], events, errors, closes, open })
  })
  handlers.set('close', () => {
    for (const socket of sockets) socket.destroy()
    out({ type: 'closed' })
  })
  out({ type: 'ready', connected: open, errors, closes })
}

// ---- stalled ---------------------------------------------------------------------------------------------

async function stalled({ url, count, batch = 100 }: Json): Promise<void> {
  const target = new URL(String(url))
  const destroyers: (() => void)[] = []
  let failures = 0
  const one = () =>
    new Promise<void>((resolve) => {
      const socket = connect(Number(target.port), target.hostname)
      let seen = ''
      socket.on('error', () => {
        failures++
        resolve()
      })
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
        destroyers.push(() => socket.destroy())
        resolve()
      })
    })
  const total = Number(count)
  for (let i = 0; i < total; i += Number(batch)) {
    await Promise.all(Array.from({ length: Math.min(Number(batch), total - i) }, one))
  }
  handlers.set('close', () => {
    for (const destroy of destroyers) destroy()
    out({ type: 'closed' })
  })
  out({ type: 'ready', connected: destroyers.length, failures })
}

// ---- upload ----------------------------------------------------------------------------------------------

async function upload({
  url,
  path,
  size,
  count,
  concurrency,
  speed,
  name = 'data.bin',
}: Json): Promise<void> {
  out({ type: 'waiting' })
  await go()
  const started = now()
  const ids: string[] = []
  const failures: string[] = []
  let next = 0
  const worker = async () => {
    while (next < Number(count)) {
      next++
      try {
        const answer = await postMultipart(`${String(url)}/api/upload?speed=${Number(speed)}`, [], {
          field: 'file',
          path: String(path),
          size: Number(size),
          name: String(name),
        })
        if (answer.status !== 200) failures.push(`${answer.status} ${answer.text.slice(0, 200)}`)
        else ids.push((JSON.parse(answer.text) as { upload_id: string }).upload_id)
      } catch (error) {
        failures.push((error as Error).message)
      }
    }
  }
  await Promise.all(Array.from({ length: Number(concurrency) }, worker))
  out({ type: 'done', ids, failures: failures.slice(0, 10), failed: failures.length, ms: now() - started })
}

// ---- tiny ------------------------------------------------------------------------------------------------

async function tiny({ url, clients, seconds, size = 16, protocol = 'rest' }: Json): Promise<void> {
  const tus = protocol === 'tus'
  const target = new URL(tus ? `${String(url)}/files/` : `${String(url)}/api/upload?speed=0`)
  const agent = new Agent({ keepAlive: true, maxSockets: Number(clients) })
  const boundary = 'benchtinyb0undary'
  const bytes = Buffer.alloc(Number(size), 0x61)
  // tus: creation-with-upload, the whole body in the POST that creates the upload.
  const body = tus
    ? bytes
    : Buffer.concat([
        Buffer.from(
          `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="tiny.bin"\r\n` +
            'Content-Type: application/octet-stream\r\n\r\n',
        ),
        bytes,
        Buffer.from(`\r\n--${boundary}--\r\n`),
      ])
  const headers = tus
    ? {
        'tus-resumable': '1.0.0',
        'upload-length': String(bytes.length),
        'upload-metadata': `filename ${Buffer.from('tiny.bin').toString('base64')},speed ${Buffer.from('0').toString('base64')}`,
        'content-type': 'application/offset+octet-stream',
        'content-length': body.length,
      }
    : { 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': body.length }
  const post = () =>
    new Promise<number>((resolve) => {
      const req = request(target, { method: 'POST', agent, headers }, (res) => {
        res.resume()
        // A tus creation-with-upload that did not take every byte is not an upload done.
        const whole = !tus || res.headers['upload-offset'] === String(bytes.length)
        res.on('end', () => resolve(whole ? (res.statusCode ?? 0) : -2))
      })
      req.on('error', () => resolve(-1))
      req.end(body)
    })
  // One upload per client first, not counted: the server's code for it loaded (ours loads tus's on first
  // use, a peer at its start) and every keep-alive connection open, for both sides alike.
  await Promise.all(Array.from({ length: Number(clients) }, post))
  out({ type: 'waiting' })
  await go()
  const started = now()
  const deadline = started + Number(seconds) * 1000
  const statuses: Record<string, number> = {}
  const loop = async () => {
    while (now() < deadline) {
      const status = await post()
      statuses[status] = (statuses[status] ?? 0) + 1
    }
  }
  await Promise.all(Array.from({ length: Number(clients) }, loop))
  agent.destroy()
  out({ type: 'done', started, ended: now(), statuses })
}

// ---- probe -----------------------------------------------------------------------------------------------

function probe({ url, everyMs = 2, inflight = 4 }: Json): void {
  const agent = new Agent({ keepAlive: true, maxSockets: Number(inflight) })
  const target = new URL(`${String(url)}/healthz`)
  const times: number[] = []
  let outstanding = 0
  let errors = 0
  const timer = setInterval(() => {
    if (outstanding >= Number(inflight)) return
    outstanding++
    const req = request(target, { agent }, (res) => {
      res.resume()
      res.on('end', () => {
        times.push(now())
        outstanding--
      })
    })
    req.on('error', () => {
      errors++
      outstanding--
    })
    req.end()
  }, Number(everyMs))
  handlers.set('stop', () => {
    clearInterval(timer)
    agent.destroy()
    out({ type: 'times', times, errors })
  })
  out({ type: 'ready' })
}

const modes: Record<string, (args: Json) => void | Promise<void>> = {
  subscribe,
  stalled,
  upload,
  tiny,
  probe,
}
const run = modes[mode]
if (!run) {
  fail(new Error(`unknown mode ${mode}`))
  process.exit(1)
}
void Promise.resolve(run(args)).catch(fail)
