import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { routeOf } from '../src/metrics.js'
import { spawnServer, type ChildServer } from './support/child.js'
import { api, bytes, restUpload, waitFor, waitForStatus, wsClient } from './support/clients.js'
import { tusCreate, tusPatch } from './support/tus.js'

let dir: string
let server: ChildServer
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'uploads-observability-'))
  server = await spawnServer(dir)
})
afterAll(async () => {
  server.child.kill('SIGKILL')
  await rm(dir, { recursive: true, force: true })
})

const metric = (text: string, line: RegExp) =>
  Number(new RegExp(`^${line.source} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN)

const scrape = async () => (await fetch(`${server.url}/metrics`)).text()
const UPLOADS_200 = /http_request_duration_seconds_count\{method="POST",route="\/api\/upload",status="200"\}/

describe('/metrics (Prometheus)', () => {
  it('counts bytes received and stored, uploads by status, transfers, subscriptions and request durations', async () => {
    const before = await scrape()
    const { body } = await restUpload(server.url, bytes(50_000), { speed: 0 })
    await waitForStatus(server.url, body.upload_id, 'completed')
    const response = await fetch(`${server.url}/metrics`)
    expect(response.headers.get('content-type')).toMatch(/text\/plain/)
    const after = await response.text()
    // A counter or gauge not shown yet is 0.
    const grew = (line: RegExp) => metric(after, line) - (metric(before, line) || 0)
    expect(grew(/upload_bytes_received_total/)).toBe(50_000)
    expect(grew(/upload_bytes_stored_total/)).toBe(50_000)
    expect(grew(/uploads\{status="COMPLETED"\}/)).toBe(1)
    expect(grew(UPLOADS_200)).toBe(1)
    expect(after).toMatch(/^process_resident_memory_bytes \d+/m)

    // One transfer running and one subscription open, then neither.
    const running = await restUpload(server.url, bytes(50_000), { speed: 1000 })
    const client = wsClient(server.url)
    const events = client.iterate({ query: `subscription { uploadProgress { id } }` })
    await events.next()
    try {
      const busy = await scrape()
      expect(metric(busy, /upload_active_transfers/)).toBe(1)
      expect(metric(busy, /graphql_subscriptions/)).toBe(1)
      expect(metric(busy, /uploads\{status="IN_PROGRESS"\}/)).toBe(1)
    } finally {
      await events.return?.()
      await client.dispose()
      await api(server.url, 'POST', `/api/upload/${running.body.upload_id}/cancel`)
    }
    const idle = await waitFor(async () => {
      const text = await scrape()
      return metric(text, /graphql_subscriptions/) === 0 ? text : undefined
    })
    expect(metric(idle, /upload_active_transfers/)).toBe(0)
    expect(metric(idle, /uploads\{status="CANCELED"\}/)).toBe(1)
  })

  it('labels routes without ids, so the label set stays small', () => {
    expect(routeOf('/api/upload/0b0e0b8c-5b8a-4a57-9c62-5a2f3e0e7b11/pause')).toBe('/api/upload/:id/pause')
    expect(routeOf('/api/files/abc/download')).toBe('/api/files/:id/download')
    expect(routeOf('/api/files/abc')).toBe('/api/files/:id')
    expect(routeOf('/graphql')).toBe('/graphql')
    expect(routeOf('/wp-admin/../../etc')).toBe('other')
    expect(routeOf('/files/abc/more')).toBe('other')
    expect(routeOf('/filesystem')).toBe('other')
  })

  it('labels tus requests with their route: the creation endpoint, and an upload’s URL without its id', async () => {
    const count = (text: string, method: string, route: string, status: number) =>
      metric(
        text,
        new RegExp(
          `http_request_duration_seconds_count\\{method="${method}",route="${route.replaceAll('/', '\\/')}",status="${status}"\\}`,
        ),
      ) || 0
    const before = await scrape()
    const content = bytes(10_000)
    const created = await tusCreate(server.url, content.length)
    expect(created.status).toBe(201)
    expect((await tusPatch(created.location, 0, content)).status).toBe(204)
    const after = await scrape()
    expect(count(after, 'POST', '/files', 201) - count(before, 'POST', '/files', 201)).toBe(1)
    expect(count(after, 'PATCH', '/files/:id', 204) - count(before, 'PATCH', '/files/:id', 204)).toBe(1)
    await waitForStatus(server.url, created.id, 'completed')
  })
})

describe('structured logs', () => {
  it('writes one JSON object per line: start-up, and each step of an upload’s life', async () => {
    const { body } = await restUpload(server.url, bytes(20_000), { speed: 10_000, filename: 'logged.txt' })
    await api(server.url, 'POST', `/api/upload/${body.upload_id}/pause`)
    await api(server.url, 'POST', `/api/upload/${body.upload_id}/resume?speed=0`)
    await waitForStatus(server.url, body.upload_id, 'completed')
    // stdout is a pipe and the answer a socket: the log line may arrive after the answer that followed it.
    await waitFor(() => server.output().includes(`"event":"upload.completed","id":"${body.upload_id}"`))
    const lines = server
      .output()
      .split('\n')
      .filter(Boolean)
      .map(
        (line) =>
          JSON.parse(line) as { time: string; level: string; event: string; id?: string; filename?: string },
      )
    expect(lines[0]).toMatchObject({ level: 'info', event: 'server.started', url: server.url })
    const mine = lines.filter((line) => line.id === body.upload_id).map((line) => line.event)
    expect(mine).toEqual([
      'upload.receiving',
      'upload.started',
      'upload.paused',
      'upload.resumed',
      'upload.completed',
    ])
    for (const line of lines) expect(Date.parse(line.time)).not.toBeNaN()
  })
})

describe('readable logs', () => {
  it('LOG_FORMAT=pretty shows the same events readable, one per line with their fields, not JSON', async () => {
    const prettyDir = await mkdtemp(join(tmpdir(), 'uploads-pretty-'))
    const child = spawn(process.execPath, ['dist/main.js'], {
      env: { ...process.env, NODE_ENV: 'production', UPLOAD_DIR: prettyDir, PORT: '0', LOG_FORMAT: 'pretty' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
    try {
      await waitFor(() => /INFO.*server\.started/.test(output))
      expect(output).toMatch(/^\s+url: "http:\/\/127\.0\.0\.1:\d+"$/m)
      expect(output.split('\n').some((line) => line.startsWith('{'))).toBe(false)
    } finally {
      child.kill('SIGKILL')
      await once(child, 'exit')
      await rm(prettyDir, { recursive: true, force: true })
    }
  })
})

describe('errors a client causes on its socket', () => {
  it('a WebSocket message over the limit closes that socket (1009) and is one JSON log line, nothing raw on stderr', async () => {
    const { default: WebSocket } = await import('ws')
    const socket = new WebSocket(server.url.replace(/^http/, 'ws') + '/graphql', 'graphql-transport-ws')
    await new Promise((resolve) => socket.on('open', resolve))
    const before = server.output().length
    socket.send(JSON.stringify({ type: 'connection_init', payload: { pad: 'x'.repeat(70_000) } }))
    const code = await new Promise<number>((resolve) => socket.on('close', (c) => resolve(c)))
    expect(code).toBe(1009)
    await waitFor(() => /"event":"ws.client_error"/.test(server.output().slice(before)))
    const lines = server.output().slice(before).split('\n').filter(Boolean)
    for (const line of lines) expect(() => JSON.parse(line), line.slice(0, 200)).not.toThrow()
    expect(server.output().slice(before)).not.toMatch(/Internal error emitted/)
  })
})

describe('clients that vanish mid-conversation', () => {
  it('leave no raw console output: a socket gone before its answers is no internal error', async () => {
    // Each socket asks, then is cut at once: the answers' writes fail (EPIPE, a reset) inside graphql-ws's
    // message handling, which used to print each one raw, with a stack.
    const url = `${server.url.replace(/^http/, 'ws')}/graphql`
    const vanish = () =>
      new Promise<void>((resolve) => {
        const socket = new WebSocket(url, 'graphql-transport-ws')
        socket.on('open', () => {
          socket.send(JSON.stringify({ type: 'connection_init' }))
          for (let i = 0; i < 5; i++)
            socket.send(
              JSON.stringify({ id: String(i), type: 'subscribe', payload: { query: '{ uploads { id } }' } }),
            )
          ;(socket as unknown as { _socket: { destroy(): void } })._socket.destroy()
          resolve()
        })
        socket.on('error', () => resolve())
      })
    for (let round = 0; round < 6; round++) await Promise.all(Array.from({ length: 200 }, vanish))
    // The server is still well, and said nothing that is not a JSON log line.
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200)
    const stray = server
      .output()
      .split('\n')
      .filter((line) => line.trim() !== '' && !line.startsWith('{'))
    expect(stray).toEqual([])
  })
})
