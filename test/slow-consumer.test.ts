import type { Socket } from 'node:net'
import WebSocket from 'ws'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { api, bytes, multipart, rawRequest, waitFor, wsClient } from './support/clients.js'
import { startServer, type TestServer } from './support/server.js'

/**
 * A graphql-ws socket whose peer stops reading is given a bounded amount of the server's memory, then
 * closed (1013), logged and counted, while everyone else on the same upload carries on. The bound is on
 * what waits in this process; the kernel's socket buffers (megabytes on loopback) fill first, so each
 * event here is made large (a 16 KB file name, selected 15 times) to reach the bound in seconds.
 */
let server: TestServer
let id: string
beforeAll(async () => {
  server = await startServer()
  const { body, contentType } = multipart([
    { name: 'file', filename: `${'n'.repeat(16_000)}.bin`, content: bytes(400_000) },
  ])
  const answer = await rawRequest(server.url, '/api/upload?speed=20000', {
    headers: { 'content-type': contentType },
    body,
  })
  id = String(answer.body.upload_id)
})
afterAll(async () => {
  await api(server.url, 'POST', `/api/upload/${id}/cancel`)
  await server.stop()
})

const SELECTION = Array.from({ length: 15 }, (_, i) => `f${i}: filename`).join(' ')
const QUERY = `subscription ($id: ID) { uploadProgress(id: $id) { uploadedSize ${SELECTION} } }`
const metric = async (name: string) =>
  Number(
    new RegExp(`^${name} (\\S+)$`, 'm').exec(await (await fetch(`${server.url}/metrics`)).text())?.[1] ?? NaN,
  )

describe('a graphql-ws subscriber that stops reading', () => {
  it(
    'is closed with 1013 after its backlog waits too long, and the others never notice',
    { timeout: 40_000 },
    async () => {
      const before = await metric('graphql_ws_slow_consumers_closed_total')
      const stalled = new WebSocket(`${server.url.replace('http', 'ws')}/graphql`, 'graphql-transport-ws')
      const closed = new Promise<void>((resolve) => stalled.on('close', () => resolve()))
      stalled.on('error', () => undefined)
      await new Promise<void>((resolve) => {
        stalled.on('open', () => stalled.send(JSON.stringify({ type: 'connection_init' })))
        stalled.on('message', (data: Buffer) => {
          if (JSON.parse(data.toString()).type !== 'connection_ack') return
          stalled.send(
            JSON.stringify({ id: '1', type: 'subscribe', payload: { query: QUERY, variables: { id } } }),
          )
          // From here on it reads nothing: its TCP window fills, then the server's writes wait.
          ;(stalled as unknown as { _socket: Socket })._socket.pause()
          resolve()
        })
      })

      const reader = wsClient(server.url)
      const arrivals: number[] = []
      const reading = (async () => {
        for await (const _ of reader.iterate({ query: QUERY, variables: { id } }))
          arrivals.push(performance.now())
      })().catch(() => undefined)

      await waitFor(async () => (await metric('graphql_ws_slow_consumers_closed_total')) > before, 30_000)
      // Reading again, it finds the server gone: cut off a second after the close frame it never read.
      ;(stalled as unknown as { _socket: Socket })._socket.resume()
      await closed
      // The reader kept getting about ten events a second all along.
      const last5s = arrivals.filter((t) => t > performance.now() - 5000)
      expect(last5s.length).toBeGreaterThan(30)
      await reader.dispose()
      await reading
    },
  )
})
