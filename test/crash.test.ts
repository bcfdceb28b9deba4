import { mkdtemp, open, readFile, rm, stat } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { api, bytes, restUpload, statusOf, waitFor, waitForStatus, wsClient } from './support/clients.js'
import { spawnServer, type ChildServer } from './support/child.js'
import { readState as readStateIn } from './support/state.js'

let dir: string
let running: ChildServer[] = []
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'uploads-crash-'))
})
afterEach(async () => {
  for (const server of running) server.child.kill('SIGKILL')
  running = []
  await rm(dir, { recursive: true, force: true })
})

async function start(): Promise<ChildServer> {
  const server = await spawnServer(dir)
  running.push(server)
  return server
}

async function kill(server: ChildServer, signal: NodeJS.Signals) {
  server.child.kill(signal)
  return server.exited
}

const sizeOf = (path: string) => stat(path).then((s) => s.size)

const readState = () => readStateIn(dir)

describe('SIGKILL in the middle of a transfer', () => {
  it('the upload is running again at start-up, continues from the bytes on disk, and completes byte for byte', async () => {
    let server = await start()
    const content = bytes(200_000)
    const { body } = await restUpload(server.url, content, { speed: 100_000 })
    const part = join(dir, `${body.upload_id}_data.bin.part`)
    await waitFor(async () => ((await sizeOf(part).catch(() => 0)) > 50_000 ? true : undefined))
    await kill(server, 'SIGKILL')
    const onDisk = await sizeOf(part)

    server = await start()
    const startedAt = performance.now()
    expect((await statusOf(server.url, body.upload_id)).body.status).toBe('in_progress')
    // The bytes on disk are checked against staging in the background; within a second it goes on from them.
    await waitFor(
      async () => (await statusOf(server.url, body.upload_id)).body.uploaded_size >= onDisk || undefined,
    )
    expect(performance.now() - startedAt).toBeLessThan(1000)
    await waitForStatus(server.url, body.upload_id, 'completed')
    expect((await readFile(join(dir, `${body.upload_id}_data.bin`))).equals(content)).toBe(true)
  })

  it('a torn tail in .part (garbage after a power cut) is found, rewritten, and never completes as corrupt', async () => {
    let server = await start()
    const content = bytes(200_000)
    const { body } = await restUpload(server.url, content, { speed: 100_000 })
    const part = join(dir, `${body.upload_id}_data.bin.part`)
    await waitFor(async () => ((await sizeOf(part).catch(() => 0)) > 60_000 ? true : undefined))
    await kill(server, 'SIGKILL')
    const size = await sizeOf(part)
    const file = await open(part, 'r+')
    await file.write(Buffer.alloc(5000, 0xee), 0, 5000, size - 5000)
    await file.close()

    server = await start()
    await waitForStatus(server.url, body.upload_id, 'in_progress')
    await waitForStatus(server.url, body.upload_id, 'completed')
    expect((await readFile(join(dir, `${body.upload_id}_data.bin`))).equals(content)).toBe(true)
  })

  it('a paused upload comes back paused and resumes on request; ended ones keep their records', async () => {
    let server = await start()
    const done = await restUpload(server.url, bytes(100), { speed: 0 })
    await waitForStatus(server.url, done.body.upload_id, 'completed')
    const canceled = await restUpload(server.url, bytes(50_000), { speed: 1000 })
    await api(server.url, 'POST', `/api/upload/${canceled.body.upload_id}/cancel`)
    const content = bytes(50_000)
    const paused = await restUpload(server.url, content, { speed: 10_000 })
    await sleep(200)
    await api(server.url, 'POST', `/api/upload/${paused.body.upload_id}/pause`)
    await kill(server, 'SIGKILL')

    server = await start()
    expect((await statusOf(server.url, done.body.upload_id)).body.status).toBe('completed')
    expect((await statusOf(server.url, canceled.body.upload_id)).body.status).toBe('canceled')
    expect((await statusOf(server.url, paused.body.upload_id)).body.status).toBe('paused')
    await api(server.url, 'POST', `/api/upload/${paused.body.upload_id}/resume?speed=0`)
    await waitForStatus(server.url, paused.body.upload_id, 'completed')
    expect((await readFile(join(dir, `${paused.body.upload_id}_data.bin`))).equals(content)).toBe(true)
  })

  it('leaves a parseable state file whenever it strikes, however busy the writes', async () => {
    for (let round = 0; round < 4; round++) {
      const server = await start()
      const ids: string[] = []
      for (let i = 0; i < 12; i++)
        ids.push((await restUpload(server.url, bytes(20_000), { speed: 5000 })).body.upload_id)
      // State changes as fast as the clients can make them, while progress is checkpointed.
      const churn = (async () => {
        for (;;) {
          for (const id of ids) {
            await api(server.url, 'POST', `/api/upload/${id}/pause`).catch(() => undefined)
            await api(server.url, 'POST', `/api/upload/${id}/resume`).catch(() => undefined)
          }
        }
      })()
      await sleep(100 + Math.random() * 400)
      await kill(server, 'SIGKILL')
      void churn.catch(() => undefined)
      const state = await readState()
      expect(Object.keys(state.uploads).length).toBeGreaterThanOrEqual(round * 12)
    }
  })
})

describe('SIGTERM', () => {
  it('exits promptly even with a WebSocket client that has stopped reading', async () => {
    const server = await start()
    const { port } = new URL(server.url)
    const socket = connect(Number(port), '127.0.0.1')
    socket.write(
      'GET /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n' +
        'Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n',
    )
    await new Promise((resolve) => socket.once('data', resolve))
    socket.pause() // never reads again, so never answers the close handshake
    const began = performance.now()
    const exit = await kill(server, 'SIGTERM')
    expect(exit).toEqual({ code: 0, signal: null })
    expect(performance.now() - began).toBeLessThan(3000)
    socket.destroy()
  })

  it('closes sockets with 1001, checkpoints, exits 0 within 5 s, and the upload resumes at the next start', async () => {
    let server = await start()
    const content = bytes(150_000)
    const { body } = await restUpload(server.url, content, { speed: 50_000 })
    const client = wsClient(server.url)
    const closed = new Promise<number>((resolve) =>
      client.on('closed', (event) => resolve((event as CloseEvent).code)),
    )
    const events = client.iterate({
      query: `subscription { uploadProgress(id: "${body.upload_id}") { status } }`,
    })
    await events.next()
    const sse = fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ query: `subscription { uploadProgress { id status } }` }),
    }).then((response) => response.text())
    await sleep(300)

    const began = performance.now()
    const exit = await kill(server, 'SIGTERM')
    expect(performance.now() - began).toBeLessThan(5000)
    expect(exit).toEqual({ code: 0, signal: null })
    expect(await closed).toBe(1001)
    await expect(sse).resolves.toMatch(/event: complete/)

    const saved = (await readState()).uploads[body.upload_id]!
    expect(saved.status).toBe('IN_PROGRESS')
    expect(saved.uploadedSize).toBe(await sizeOf(join(dir, `${body.upload_id}_data.bin.part`)))

    server = await start()
    expect((await statusOf(server.url, body.upload_id)).body.status).toBe('in_progress')
    await waitForStatus(server.url, body.upload_id, 'completed')
    expect((await readFile(join(dir, `${body.upload_id}_data.bin`))).equals(content)).toBe(true)
    await client.dispose()
  })
})
