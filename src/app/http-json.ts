import type { ServerResponse } from 'node:http'

/**
 * A JSON body as the server writes it: ending with a newline, so `curl`'s output ends its line and the
 * shell's prompt does not land on it (JSON parsers skip the trailing whitespace).
 */
export const jsonText = (body: unknown): string => `${JSON.stringify(body)}\n`

/** A JSON answer with its length: every non-GraphQL answer of the server goes out this way. */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const json = jsonText(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) })
  res.end(json)
}
