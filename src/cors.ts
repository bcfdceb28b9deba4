import type { IncomingMessage, ServerResponse } from 'node:http'

const ALLOWED_METHODS = 'GET, POST, DELETE, OPTIONS'
const ALLOWED_HEADERS = 'authorization, content-type, accept'

/**
 * CORS for /api and /graphql alike: off unless origins are configured (browsers then refuse cross-origin
 * reads). Answers preflights itself; returns true when the request has been answered.
 */
export function applyCors(req: IncomingMessage, res: ServerResponse, allowed: readonly string[]): boolean {
  const origin = req.headers.origin
  const permitted = origin !== undefined && (allowed.includes('*') || allowed.includes(origin))
  if (permitted) {
    res.setHeader('access-control-allow-origin', allowed.includes('*') ? '*' : origin)
    res.setHeader('vary', 'origin')
  }
  if (req.method !== 'OPTIONS' || req.headers['access-control-request-method'] === undefined) return false
  if (permitted) {
    res.setHeader('access-control-allow-methods', ALLOWED_METHODS)
    res.setHeader('access-control-allow-headers', ALLOWED_HEADERS)
    res.setHeader('access-control-max-age', '600')
  }
  res.writeHead(204).end()
  return true
}
