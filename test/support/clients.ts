import { createCipheriv, createHash } from 'node:crypto'
import { request } from 'node:http'
import { connect, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { createClient, type Client } from 'graphql-ws'
import WebSocket from 'ws'

/**
 * The suite's one seed. Everything "random" in the tests derives from it, so a failure happens again on the
 * next run, with the same bytes and the same choices.
 */
export const SEED = 20261125

const BYTES_KEY = createHash('sha256').update(`test bytes ${SEED}`).digest()
let bytesCalls = 0

/**
 * `size` bytes that look random (no pattern a parser or a compressor could lean on) but are the same on every
 * run: the AES-256-CTR keystream of a fixed key. Each call starts its own stretch of the stream (the call's
 * number in the counter's high half), so two calls never return the same bytes. Runs at memory speed.
 */
export function bytes(size: number): Buffer<ArrayBuffer> {
  const iv = Buffer.alloc(16)
  iv.writeUInt32BE(++bytesCalls, 0)
  const cipher = createCipheriv('aes-256-ctr', BYTES_KEY, iv)
  return Buffer.concat([cipher.update(Buffer.alloc(size)), cipher.final()]) as Buffer<ArrayBuffer>
}

/** A seeded stand-in for Math.random (mulberry32): the same seed, the same sequence in [0, 1). */
export function seededRandom(seed: number = SEED): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}

export interface JsonResponse<T = Record<string, unknown>> {
  status: number
  body: T
}

async function json<T>(response: Response): Promise<JsonResponse<T>> {
  return { status: response.status, body: (await response.json()) as T }
}

export interface StartedBody {
  upload_id: string
  status: string
  total_size: number
  speed: number
}

/** POST /api/upload as a browser or curl -F would: multipart with the file in the `file` field. */
export async function restUpload(
  url: string,
  content: Uint8Array<ArrayBuffer>,
  {
    filename = 'data.bin',
    speed,
    headers = {},
  }: { filename?: string; speed?: number | string; headers?: Record<string, string> } = {},
): Promise<JsonResponse<StartedBody>> {
  const form = new FormData()
  form.append('file', new Blob([content]), filename)
  const query = speed === undefined ? '' : `?speed=${encodeURIComponent(String(speed))}`
  return json(await fetch(`${url}/api/upload${query}`, { method: 'POST', body: form, headers }))
}

export async function api<T = Record<string, unknown>>(url: string, method: string, path: string) {
  return json<T>(await fetch(`${url}${path}`, { method }))
}

export interface GraphQLResponse<T = Record<string, unknown>> {
  data?: T | null
  errors?: { message: string; extensions?: { code?: string } }[]
}

export async function gql<T = Record<string, unknown>>(
  url: string,
  query: string,
  variables: Record<string, unknown> = {},
): Promise<GraphQLResponse<T>> {
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ query, variables }),
  })
  return (await response.json()) as GraphQLResponse<T>
}

/** A GraphQL multipart request (operations, map, one file part). */
export async function gqlUpload<T = Record<string, unknown>>(
  url: string,
  query: string,
  variables: Record<string, unknown>,
  content: Uint8Array<ArrayBuffer>,
  filename = 'data.bin',
): Promise<{ status: number; body: GraphQLResponse<T> }> {
  const form = new FormData()
  form.append('operations', JSON.stringify({ query, variables: { ...variables, file: null } }))
  form.append('map', JSON.stringify({ 0: ['variables.file'] }))
  form.append('0', new Blob([content]), filename)
  const response = await fetch(`${url}/graphql`, { method: 'POST', body: form })
  return { status: response.status, body: (await response.json()) as GraphQLResponse<T> }
}

/** A multipart body written by hand, for what FormData will not send (odd names, cut-off bodies). */
export function multipart(
  parts: { name: string; filename?: string; content: string | Buffer }[],
  boundary = 'b0undary',
) {
  const chunks: Buffer[] = []
  for (const part of parts) {
    const disposition = `form-data; name="${part.name}"${part.filename === undefined ? '' : `; filename="${part.filename}"`}`
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Disposition: ${disposition}\r\n\r\n`))
    chunks.push(Buffer.from(part.content))
    chunks.push(Buffer.from('\r\n'))
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`))
  return { body: Buffer.concat(chunks), contentType: `multipart/form-data; boundary=${boundary}` }
}

/** A raw HTTP request, as curl would send it; resolves with the status and parsed JSON body. */
export function rawRequest(
  url: string,
  path: string,
  {
    method = 'POST',
    headers = {},
    body,
  }: { method?: string; headers?: Record<string, string>; body?: Buffer },
): Promise<JsonResponse> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { method, headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString()
        resolve({
          status: res.statusCode ?? 0,
          body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
        })
      })
    })
    req.on('error', reject)
    req.end(body)
  })
}

export interface SocketAnswer {
  /** 0 when the server closed without answering. */
  status: number
  headers: string
  body: string
  /** performance.now() when the server closed the connection. */
  closedAt: number
}

/**
 * An HTTP/1.1 request written by hand on a socket, for what fetch will not do: headers or a body that arrive
 * piece by piece, or a body that is never finished. `closed` resolves once the server has closed the
 * connection, with whatever it answered. The caller writes; a write after the server closed is ignored.
 */
export function socketRequest(url: string, head: string): { socket: Socket; closed: Promise<SocketAnswer> } {
  const socket = connect(Number(new URL(url).port), '127.0.0.1')
  // A server that closes while we still send resets us; what it answered before that is in `chunks`.
  socket.on('error', () => undefined)
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  const closed = new Promise<SocketAnswer>((resolve) =>
    socket.once('close', () => {
      const text = Buffer.concat(chunks).toString()
      const split = text.indexOf('\r\n\r\n')
      resolve({
        status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0),
        headers: split === -1 ? text : text.slice(0, split),
        body: split === -1 ? '' : text.slice(split + 4),
        closedAt: performance.now(),
      })
    }),
  )
  socket.write(head)
  return { socket, closed }
}

/** `promise`, or a failure saying `what` did not happen within `ms`: a wait that cannot pass by timing out. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([promise, late])
  } finally {
    clearTimeout(timer)
  }
}

export function wsClient(url: string): Client {
  return createClient({
    url: url.replace(/^http/, 'ws') + '/graphql',
    webSocketImpl: WebSocket,
    retryAttempts: 0,
    lazy: true,
  })
}

/** Every event of a graphql-ws subscription until it completes. */
export async function collectWs<T>(client: Client, query: string, variables: Record<string, unknown> = {}) {
  const events: T[] = []
  for await (const result of client.iterate<T>({ query, variables })) {
    if (result.errors) throw new Error(JSON.stringify(result.errors))
    events.push(result.data as T)
  }
  return events
}

/** Polls `check` until it returns a value that is not undefined/false, or fails after `timeoutMs`. */
export async function waitFor<T>(
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 10_000,
) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value !== undefined && value !== false) return value
    if (Date.now() > deadline) throw new Error(`waitFor timed out after ${timeoutMs} ms`)
    await sleep(20)
  }
}

/** Waits until an upload (named `filename`, if given) is on record RECEIVING with `size` bytes of it in; its id. */
export async function receivingUpload(url: string, size = 1, filename?: string): Promise<string> {
  const found = await waitFor(async () =>
    (
      await gql<{ uploads: { id: string; filename: string; receivedSize: number }[] }>(
        url,
        '{ uploads(status: [RECEIVING]) { id filename receivedSize } }',
      )
    ).data?.uploads.find(
      (upload) => upload.receivedSize >= size && (filename === undefined || upload.filename === filename),
    ),
  )
  return found.id
}

export interface UploadStatusBody {
  status: string
  filename: string
  uploaded_size: number
  total_size: number
  current_speed: number
  target_speed: number
}

export const statusOf = (url: string, id: string) =>
  api<UploadStatusBody>(url, 'GET', `/api/upload/${id}/status`)

export const waitForStatus = (url: string, id: string, status: string, timeoutMs?: number) =>
  waitFor(async () => {
    const { body } = await statusOf(url, id)
    return body.status === status ? body : undefined
  }, timeoutMs)
