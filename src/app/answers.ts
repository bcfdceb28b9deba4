import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { errorCatalogue, type ErrorCode } from '../errors.js'
import { log } from '../log.js'
import type { Asset } from './assets.js'
import { jsonText, sendJson } from './http-json.js'
import { requestIdOf } from './request-id.js'

/**
 * Every answer the server writes itself, outside GraphQL's own (yoga's and graphql-ws's): one error body,
 * `{"detail": "..."}`, written here and nowhere else, with its status from the error catalogue where the
 * refusal has a code. REST, tus's JSON answers, the probes, pages and the edge's refusals all come here.
 */

/** What went wrong inside, for the log line of a 5xx (the client hears only `detail`). */
export interface Failure {
  /** The log line's event: `rest.error`, `tus.error`, `asset.missing`... */
  event: string
  error: unknown
}

/**
 * An error answer: `{"detail": "..."}` with its status. A 5xx is the server's fault: logged, with its error
 * and the request's id (which the answer's `x-request-id` carries). Answering before the body has arrived
 * (413, 422, 403): the connection ends after it, once the rest of the body has been read and dropped, within
 * a bound (closeInStages, linger.ts).
 */
export function sendDetail(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  detail: string,
  failure?: Failure,
): void {
  if (status >= 500) {
    log('error', failure?.event ?? 'http.error', {
      requestId: requestIdOf(req),
      method: req.method,
      path: req.url,
      status,
      error: failure?.error ?? detail,
    })
  }
  if (!req.complete) res.setHeader('connection', 'close')
  sendJson(res, status, { detail })
}

/** A refusal with a code of the catalogue: its status from there. */
export const sendCoded = (
  req: IncomingMessage,
  res: ServerResponse,
  code: ErrorCode,
  detail: string,
  failure?: Failure,
) => sendDetail(req, res, errorCatalogue[code], detail, failure)

export const notFound = (req: IncomingMessage, res: ServerResponse) => sendDetail(req, res, 404, 'Not Found')

export function methodNotAllowed(
  req: IncomingMessage,
  res: ServerResponse,
  allowed: readonly string[],
  detail = 'Method Not Allowed',
): void {
  res.setHeader('allow', allowed.join(', '))
  sendDetail(req, res, 405, detail)
}

const TOKEN_MISSING = 'Missing or wrong access token: send Authorization: Bearer <API_TOKEN>'

/**
 * A request the edge refuses before any route sees it (no token, another site's page, a Host not served
 * here), said in the caller's protocol: a GraphQL error with its code on /graphql, `{"detail"}` on every
 * other route (/metrics too).
 */
export function refuse(
  req: IncomingMessage,
  res: ServerResponse,
  code: 'UNAUTHENTICATED' | 'FORBIDDEN',
  graphql: boolean,
  message = TOKEN_MISSING,
): void {
  if (code === 'UNAUTHENTICATED') res.setHeader('www-authenticate', 'Bearer')
  if (!graphql) return sendCoded(req, res, code, message)
  if (!req.complete) res.setHeader('connection', 'close')
  sendJson(res, errorCatalogue[code], { errors: [{ message, extensions: { code } }] })
}

/**
 * A WebSocket handshake refused before it reaches graphql-ws: there is no response object yet, so the
 * answer is written on the socket, in the same `{"detail"}` body as every other refusal.
 */
export function refuseUpgrade(socket: Duplex, status: 403 | 404, detail: string): void {
  const body = jsonText({ detail })
  const reason = status === 404 ? 'Not Found' : 'Forbidden'
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  )
}

/** /readyz: ready, or why not (503). */
export function sendReadiness(res: ServerResponse, reason: string | undefined): void {
  sendJson(res, reason ? 503 : 200, reason ? { status: 'unavailable', detail: reason } : { status: 'ready' })
}

export const sendHealthy = (res: ServerResponse) => sendJson(res, 200, { status: 'ok' })

/** A page or one of its files. Everything the page needs comes from here: no inline script, no third party. */
export function sendAsset(req: IncomingMessage, res: ServerResponse, found: Asset): void {
  res.writeHead(200, {
    'content-type': found.type,
    'content-length': Buffer.byteLength(found.body),
    'content-security-policy':
      found.csp ?? "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:",
    'x-content-type-options': 'nosniff',
  })
  res.end(req.method === 'HEAD' ? undefined : found.body)
}

/** The same page at its one address (a trailing slash dropped). */
export const redirectTo = (res: ServerResponse, location: string) =>
  void res.writeHead(308, { location }).end()

/**
 * A failure after the handler took the request: said as a 500 if nothing was sent yet; half an answer
 * cannot be mended, so it is cut.
 */
export function sendInternalError(req: IncomingMessage, res: ServerResponse, failure: Failure): void {
  if (!res.headersSent) return sendDetail(req, res, 500, 'Internal Server Error', failure)
  log('error', failure.event, {
    requestId: requestIdOf(req),
    method: req.method,
    path: req.url,
    error: failure.error,
  })
  res.destroy()
}
