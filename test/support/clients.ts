import { randomBytes } from 'node:crypto'
import { request } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { createClient, type Client } from 'graphql-ws'
import WebSocket from 'ws'

export const bytes = (size: number): Buffer<ArrayBuffer> => randomBytes(size) as Buffer<ArrayBuffer>

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
  { filename = 'data.bin', speed }: { filename?: string; speed?: number | string } = {},
): Promise<JsonResponse<StartedBody>> {
  const form = new FormData()
  form.append('file', new Blob([content]), filename)
  const query = speed === undefined ? '' : `?speed=${encodeURIComponent(String(speed))}`
  return json(await fetch(`${url}/api/upload${query}`, { method: 'POST', body: form }))
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
