import type { ServerResponse } from 'node:http'

/** A JSON answer with its length: every non-GraphQL answer of the server goes out this way. */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const json = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) })
  res.end(json)
}
