import fc from 'fast-check'
import { Agent, request } from 'node:http'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import WebSocket from 'ws'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { api, waitFor } from './support/clients.js'
import { spawnServer, type ChildServer } from './support/child.js'

let root: string
let storage: string
let server: ChildServer
const agent = new Agent({ keepAlive: true, maxSockets: 8 })
/** Fixed, so CI is deterministic; set FUZZ_SEED to explore further (a failure prints its seed and path). */
const seed = Number(process.env.FUZZ_SEED ?? 20261125)

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'uploads-fuzz-'))
  storage = join(root, 'storage')
  server = await spawnServer(storage, { MAX_UPLOAD_SIZE: String(256 * 1024), DEFAULT_UPLOAD_SPEED: '0' })
  // If the server dies, say why: that is the finding.
  void server.exited.then(({ code, signal }) => {
    if (signal !== 'SIGKILL') console.error(`server exited (${code ?? signal}):\n${server.output()}`)
  })
})
afterAll(async () => {
  agent.destroy()
  server.child.kill('SIGKILL')
  await rm(root, { recursive: true, force: true })
})

/**
 * Sends one request; status 0 when the server closed the connection instead of answering. A subscription
 * answers with an event stream that stays open while uploads can change: its status is the answer.
 */
function send(
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: Buffer,
): Promise<{ status: number; text: string }> {
  // Node's client sends a GET, DELETE or OPTIONS body unframed (no length, not chunked): say its length.
  const framed = body === undefined ? headers : { ...headers, 'content-length': String(body.length) }
  return new Promise((resolve) => {
    const req = request(`${server.url}${path}`, { method, headers: framed, agent }, (res) => {
      if (/^text\/event-stream/.test(res.headers['content-type'] ?? '')) {
        resolve({ status: res.statusCode ?? 0, text: '' })
        return void res.destroy()
      }
      let text = ''
      res.on('data', (chunk: Buffer) => (text += chunk.toString()))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }))
      res.on('error', () => resolve({ status: 0, text }))
    })
    req.on('error', () => resolve({ status: 0, text: '' }))
    req.end(body)
  })
}

// ---- generators ------------------------------------------------------------------------------------------

const hostile = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom(
    '..',
    '../../etc/passwd',
    '..\\..\\x',
    '/',
    '__proto__',
    'constructor',
    '',
    '\u0000',
    'uploads.json',
  ),
  fc.constantFrom('.uploads.json', '.staging', 'x'.repeat(400), 'e\u0301', '\u202ecod.exe', 'a/b/c'),
)
const speed = fc.oneof(
  fc.integer({ min: -5, max: 5_000_000 }).map(String),
  fc.constantFrom('0', '-1', '1.5', '1e9', 'NaN', '', ' ', '99999999999999999999999', '0x10'),
  hostile,
)
/** Header-safe text for a part header (quotes, CR and LF would end the header; those cases come from `raw`). */
const headerText = hostile.map((s) => s.replace(/["\r\n]/g, '_'))
const part = fc.record({
  name: fc.oneof(fc.constantFrom('file', 'operations', 'map', '0', '1'), headerText),
  filename: fc.option(headerText, { nil: undefined }),
  content: fc.oneof(
    fc.uint8Array({ maxLength: 3000 }).map((a) => Buffer.from(a)),
    fc.jsonValue().map((v) => Buffer.from(JSON.stringify(v) ?? 'null')),
  ),
})

function multipartBody(parts: { name: string; filename?: string; content: Buffer }[], cut: number | null) {
  const boundary = 'fuzzb0undary'
  const chunks = parts.flatMap((p) => [
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"${p.filename === undefined ? '' : `; filename="${p.filename}"`}\r\n\r\n`,
    ),
    p.content,
    Buffer.from('\r\n'),
  ])
  const body = Buffer.concat([...chunks, Buffer.from(`--${boundary}--\r\n`)])
  return { body: cut === null ? body : body.subarray(0, Math.floor(body.length * cut)), boundary }
}

const body = fc.oneof(
  fc.constant({ type: 'none' as const }),
  fc.record({
    type: fc.constant('multipart' as const),
    parts: fc.array(part, { maxLength: 4 }),
    cut: fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: null }),
  }),
  fc.record({ type: fc.constant('raw' as const), bytes: fc.uint8Array({ maxLength: 2000 }) }),
  fc.record({ type: fc.constant('json' as const), value: fc.jsonValue() }),
)
const contentType = fc.constantFrom(
  'multipart/form-data; boundary=fuzzb0undary',
  'multipart/form-data',
  'multipart/form-data; boundary=other',
  'application/json',
  'text/plain',
  'application/x-www-form-urlencoded',
)

function bodyOf(
  b:
    | { type: 'none' }
    | { type: 'multipart'; parts: { name: string; filename?: string; content: Buffer }[]; cut: number | null }
    | { type: 'raw'; bytes: Uint8Array }
    | { type: 'json'; value: unknown },
): Buffer | undefined {
  if (b.type === 'none') return undefined
  if (b.type === 'multipart') return multipartBody(b.parts, b.cut).body
  if (b.type === 'raw') return Buffer.from(b.bytes)
  return Buffer.from(JSON.stringify(b.value) ?? 'null')
}

const restPath = fc
  .tuple(
    fc.constantFrom(
      '/api/upload',
      '/api/upload/{id}/pause',
      '/api/upload/{id}/resume',
      '/api/upload/{id}/cancel',
      '/api/upload/{id}/status',
      '/api/upload/{id}/{id}',
      '/api/uploads',
      '/api/files',
      '/api/files/{id}',
      '/api/{id}',
      '/api',
    ),
    hostile,
    fc.option(speed, { nil: undefined }),
  )
  .map(([template, id, s]) => {
    const path = template.replaceAll('{id}', encodeURIComponent(id))
    return s === undefined ? path : `${path}?speed=${encodeURIComponent(s)}`
  })

const OPERATIONS = [
  'mutation ($file: File!, $speed: SafeInt) { uploadFile(file: $file, speed: $speed) { id status } }',
  'mutation ($id: ID!, $speed: SafeInt) { resumeUpload(id: $id, speed: $speed) { id } }',
  'mutation ($id: ID!) { pauseUpload(id: $id) { id } }',
  'mutation ($id: ID!) { cancelUpload(id: $id) { id } }',
  'mutation ($id: ID!) { deleteFile(id: $id) { id } }',
  'query ($id: ID!) { upload(id: $id) { id status uploadedSize } }',
  '{ uploads { id } files { id } }',
  'subscription ($id: ID) { uploadProgress(id: $id) { id } }',
]
const query = fc.oneof(
  fc.constantFrom(...OPERATIONS),
  hostile,
  fc.integer({ min: 1, max: 400 }).map((n) => `${'{ uploads '.repeat(n)}${'}'.repeat(n)}`),
  fc
    .integer({ min: 1, max: 60 })
    .map((n) => `{ ${Array.from({ length: n }, (_, i) => `a${i}: uploads { id }`).join(' ')} }`),
)
const variables = fc.oneof(
  fc.jsonValue(),
  fc.record(
    { id: fc.oneof(hostile, fc.jsonValue()), speed: fc.oneof(fc.jsonValue(), fc.integer()) },
    { requiredKeys: [] },
  ),
)

// ---- properties ------------------------------------------------------------------------------------------

async function unfinishedIds(): Promise<Set<string>> {
  const { body } = await api<{ uploads: { upload_id: string; status: string }[] }>(
    server.url,
    'GET',
    '/api/uploads',
  )
  return new Set(
    body.uploads.filter((u) => u.status === 'in_progress' || u.status === 'paused').map((u) => u.upload_id),
  )
}

/** Once requests have ended: no staging file of a body, no transfer or staging file that no running upload owns. */
async function assertNothingLeftBehind() {
  expect(server.child.exitCode).toBeNull()
  expect(await readdir(root)).toEqual(['storage'])
  await waitFor(async () => {
    const staging = await readdir(join(storage, '.staging'))
    const unfinished = await unfinishedIds()
    const transfers = await readdir(join(storage, '.transfers')).catch(() => [])
    return staging.every((name) => unfinished.has(name)) && transfers.every((name) => unfinished.has(name))
  })
}

describe('fuzzing with generated malformed requests', () => {
  it('REST: no 5xx, whatever the method, path, id, speed, headers and body', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('GET', 'POST', 'DELETE', 'PUT', 'PATCH', 'OPTIONS'),
        restPath,
        contentType,
        body,
        async (method, path, type, b) => {
          const { status } = await send(method, path, { 'content-type': type }, bodyOf(b))
          expect(status, 'a reset socket (0) hides whatever went wrong').toBeGreaterThan(0)
          expect(status).toBeLessThan(500)
        },
      ),
      { numRuns: 1500, seed },
    )
    await assertNothingLeftBehind()
  })

  it('GraphQL over JSON: no 5xx and no INTERNAL_SERVER_ERROR', async () => {
    await fc.assert(
      fc.asyncProperty(
        query,
        variables,
        fc.option(hostile, { nil: undefined }),
        async (q, v, operationName) => {
          const payload = Buffer.from(JSON.stringify({ query: q, variables: v, operationName }))
          const { status, text } = await send(
            'POST',
            '/graphql',
            { 'content-type': 'application/json', accept: 'application/json' },
            payload,
          )
          expect(status, 'a reset socket (0) hides whatever went wrong').toBeGreaterThan(0)
          expect(status).toBeLessThan(500)
          expect(text).not.toContain('INTERNAL_SERVER_ERROR')
        },
      ),
      { numRuns: 1000, seed },
    )
    await assertNothingLeftBehind()
  })

  it('GraphQL multipart: no 5xx, whatever operations, map and parts say', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.tuple(query, variables).map(([q, v]) => JSON.stringify({ query: q, variables: v })),
          hostile,
          fc.jsonValue().map((v) => JSON.stringify(v) ?? 'null'),
        ),
        fc.oneof(
          fc.constant('{"0":["variables.file"]}'),
          fc
            .dictionary(
              fc.oneof(fc.constantFrom('0', '1'), hostile),
              fc.array(
                fc.oneof(
                  hostile,
                  fc.constantFrom('variables.file', 'variables', '0.variables.file', '__proto__.x'),
                ),
              ),
            )
            .map((m) => JSON.stringify(m)),
          hostile,
        ),
        fc.array(part, { maxLength: 3 }),
        fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: null }),
        async (operations, map, parts, cut) => {
          const all = [
            { name: 'operations', content: Buffer.from(operations) },
            { name: 'map', content: Buffer.from(map) },
            ...parts,
          ]
          const { body: payload, boundary } = multipartBody(all, cut)
          const { status, text } = await send(
            'POST',
            '/graphql',
            { 'content-type': `multipart/form-data; boundary=${boundary}` },
            payload,
          )
          expect(status, 'a reset socket (0) hides whatever went wrong').toBeGreaterThan(0)
          expect(status).toBeLessThan(500)
          expect(text).not.toContain('INTERNAL_SERVER_ERROR')
        },
      ),
      { numRuns: 500, seed },
    )
    await assertNothingLeftBehind()
  })

  it('graphql-ws: any sequence of messages leaves the server up and answering', async () => {
    const message = fc.oneof(
      fc.jsonValue().map((v) => JSON.stringify(v) ?? 'null'),
      hostile,
      fc
        .record({ id: fc.oneof(hostile, fc.jsonValue()), query, variables })
        .map(({ id, query: q, variables: v }) =>
          JSON.stringify({ type: 'subscribe', id, payload: { query: q, variables: v } }),
        ),
      fc.constantFrom(
        '{"type":"ping"}',
        '{"type":"pong"}',
        '{"type":"complete","id":"1"}',
        '{"type":"connection_init"}',
      ),
    )
    await fc.assert(
      fc.asyncProperty(fc.boolean(), fc.array(message, { maxLength: 6 }), async (init, messages) => {
        const socket = new WebSocket(server.url.replace(/^http/, 'ws') + '/graphql', 'graphql-transport-ws')
        await new Promise<void>((resolve) => {
          socket.once('open', () => resolve())
          socket.once('error', () => resolve())
        })
        if (socket.readyState === WebSocket.OPEN) {
          if (init) socket.send(JSON.stringify({ type: 'connection_init' }))
          for (const m of messages) if (socket.readyState === WebSocket.OPEN) socket.send(m)
          await new Promise((resolve) => setTimeout(resolve, 5))
        }
        socket.terminate()
      }),
      { numRuns: 300, seed },
    )
    expect((await api(server.url, 'GET', '/api/uploads')).status).toBe(200)
    await assertNothingLeftBehind()
  })
})
