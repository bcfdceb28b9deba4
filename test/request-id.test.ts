import WebSocket from 'ws'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { setLogLevel } from '../src/log.js'
import { stopHashWorker } from '../src/core/transfer/hasher.js'
import { bytes, restUpload, waitFor } from './support/clients.js'
import { multipartHead, openRequest, partHead } from './support/raw.js'
import { captureLogLines } from './support/log-lines.js'
import { incomingBytes, startServer, type TestServer } from './support/server.js'

let server: TestServer
beforeAll(async () => {
  server = await startServer()
})
afterAll(() => server.stop())

/** The server's log lines (JSON on stdout) while a test runs. */
const log = captureLogLines()
afterEach(() => {
  log.clear()
  setLogLevel('warn')
})

/** A multipart upload whose hashing worker dies under it: a real server-side failure, on demand. */
async function failingUpload(
  path: string,
  parts: string,
): Promise<{ status: number; headers: string; body: string }> {
  // Bigger than one block, so that the worker hashes it (a body of a few KiB is hashed inline, see hasher.ts).
  const content = bytes(3_000_000)
  const tail = Buffer.from('\r\n--b0undary--\r\n')
  const head = Buffer.from(parts)
  const request = openRequest(server.url, multipartHead(path, head.length + content.length + tail.length))
  request.write(head)
  request.write(content.subarray(0, 1_500_000))
  // A whole block has passed the hash on its way to disk, so the worker holds this body's hash.
  await waitFor(async () => (await incomingBytes(server.dir)) >= 1024 * 1024)
  await stopHashWorker()
  request.write(Buffer.concat([content.subarray(1_500_000), tail]))
  const answer = await request.answer
  request.end()
  return answer
}

const idIn = (headers: string) => /\r\nx-request-id: (\S+)/i.exec(headers)?.[1]

describe('request ids', () => {
  it('every answer carries one: REST, GraphQL, pages, probes, and the WebSocket handshake', async () => {
    const ids = new Set<string>()
    for (const path of [
      '/api/uploads',
      '/graphql?query=%7Buploads%7Bid%7D%7D',
      '/',
      '/healthz',
      '/nowhere',
    ]) {
      const id = (await fetch(`${server.url}${path}`)).headers.get('x-request-id')
      expect(id, path).toMatch(/^[0-9a-f]{8}-[0-9a-z]+$/)
      ids.add(id!)
    }
    expect(ids.size).toBe(5)
    const socket = new WebSocket(`${server.url.replace('http', 'ws')}/graphql`, 'graphql-transport-ws')
    const handshake = await new Promise<string | undefined>((resolve) =>
      socket.once('upgrade', (res) => resolve(res.headers['x-request-id'] as string | undefined)),
    )
    socket.close()
    expect(handshake).toMatch(/^[0-9a-f]{8}-[0-9a-z]+$/)
  })

  it('keeps a valid id from a proxy in front, and replaces one that is not', async () => {
    const kept = await fetch(`${server.url}/api/uploads`, { headers: { 'x-request-id': 'nginx-4f2a.9' } })
    expect(kept.headers.get('x-request-id')).toBe('nginx-4f2a.9')
    const replaced = await fetch(`${server.url}/api/uploads`, {
      headers: { 'x-request-id': 'no spaces <allowed>' },
    })
    expect(replaced.headers.get('x-request-id')).not.toBe('no spaces <allowed>')
  })
})

describe('every 5xx is logged with its error and the request id', () => {
  it('on REST', async () => {
    const answer = await failingUpload('/api/upload?speed=0', partHead('file', 'doomed.bin'))
    expect(answer.status).toBe(500)
    const id = idIn(answer.headers)
    expect(id).toBeDefined()
    const logged = log.lines().filter((line) => line.requestId === id)
    expect(logged).toEqual([
      expect.objectContaining({
        level: 'error',
        event: 'rest.error',
        status: 500,
        error: expect.objectContaining({ message: expect.stringMatching(/hashing worker stopped/) }),
      }),
    ])
  })

  it('on GraphQL (once, with the real error the client only sees masked)', async () => {
    const operations = JSON.stringify({
      query: 'mutation ($file: File!) { uploadFile(file: $file) { id } }',
      variables: { file: null },
    })
    const answer = await failingUpload(
      '/graphql',
      `${partHead('operations')}${operations}\r\n${partHead('map')}{"0":["variables.file"]}\r\n${partHead('0', 'doomed.bin')}`,
    )
    expect(answer.body).toMatch(/INTERNAL_SERVER_ERROR/)
    expect(answer.body).not.toMatch(/hashing worker/)
    const id = idIn(answer.headers)
    const logged = log.lines().filter((line) => line.level === 'error')
    expect(logged).toEqual([
      expect.objectContaining({
        event: 'graphql.error',
        requestId: id,
        error: expect.objectContaining({ message: expect.stringMatching(/hashing worker stopped/) }),
      }),
    ])
  })

  it('a client error is not logged as a server error', async () => {
    const { status } = await restUpload(server.url, bytes(10), { speed: 'fast' })
    expect(status).toBe(422)
    expect(log.lines().filter((line) => line.level === 'error')).toEqual([])
  })
})
