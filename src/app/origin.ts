import type { IncomingMessage, ServerResponse } from 'node:http'
import { isIP } from 'node:net'
import { quote } from '../errors.js'

/**
 * Which browsers may drive the service. Scripts and curl send no `Origin` and are never refused here (the
 * token, when set, is their gate). A browser always sends `Origin` on a cross-origin POST, on a WebSocket
 * handshake and on every CORS request, so a page on another site is refused before anything runs, token or
 * not: CORS alone only hides the answer from such a page, it does not stop the request.
 *
 * (graphql-yoga's CSRF-prevention plugin was the other candidate: it asks every non-JSON request for a
 * custom header, which would break `curl -F` uploads to /graphql and would not cover /api or WebSockets.)
 */
export interface OriginPolicy {
  /** CORS_ORIGINS: origins allowed besides the service's own; `*` allows any. */
  corsOrigins: readonly string[]
  /** ALLOWED_HOSTS: Host names accepted besides loopback ones. A leading dot allows subdomains. */
  allowedHosts: readonly string[]
  /** Whether the service listens on a loopback address only: then the Host header is checked. */
  loopback: boolean
}

const LOOPBACK_NAMES = /^(localhost|[^.]+\.localhost|localhost\.localdomain)\.?$/i

/** A Host header's name part: `[::1]:8000` → `::1`, `Example.com:80` → `example.com`. */
export function hostName(host: string): string {
  const bracketed = /^\[([^\]]*)\](?::\d*)?$/.exec(host)
  if (bracketed) return (bracketed[1] ?? '').toLowerCase()
  const colon = host.lastIndexOf(':')
  return (colon === -1 || host.indexOf(':') !== colon ? host : host.slice(0, colon)).toLowerCase()
}

export function isLoopbackHost(name: string): boolean {
  if (LOOPBACK_NAMES.test(name)) return true
  if (isIP(name) === 4) return name.startsWith('127.')
  return name === '::1' || name === '0:0:0:0:0:0:0:1'
}

/** Whether a listening address is loopback only (the default 127.0.0.1, ::1, localhost). */
export const listensOnLoopback = (address: string) =>
  isLoopbackHost(address.replace(/^\[|\]$/g, '').toLowerCase())

function hostAllowed(host: string, allowed: readonly string[]): boolean {
  const name = hostName(host)
  return allowed.some((entry) =>
    entry.startsWith('.') ? name.endsWith(entry) || name === entry.slice(1) : name === entry,
  )
}

/**
 * Why a request must be refused with 403, or undefined when it may go on.
 * - DNS rebinding: a page on evil.example re-pointed at 127.0.0.1 is same-origin with us, but its requests
 *   carry `Host: evil.example`. On loopback, only loopback names and ALLOWED_HOSTS are accepted.
 * - Cross-site requests: an `Origin` that is neither ours (the Host it was sent to) nor in CORS_ORIGINS.
 */
export function refusal(req: IncomingMessage, policy: OriginPolicy): string | undefined {
  const host = req.headers.host
  if (host !== undefined && (policy.loopback || policy.allowedHosts.length > 0)) {
    const name = hostName(host)
    const ok = (policy.loopback && isLoopbackHost(name)) || hostAllowed(host, policy.allowedHosts)
    if (!ok) return `Host ${quote(host, 100)} is not served here; add it to ALLOWED_HOSTS to allow it`
  }
  const origin = req.headers.origin
  if (origin === undefined || policy.corsOrigins.includes('*') || policy.corsOrigins.includes(origin))
    return undefined
  if (host !== undefined && sameOrigin(origin, host)) return undefined
  return `Requests from origin ${quote(origin, 100)} are not allowed; add it to CORS_ORIGINS to allow it`
}

/** Whether `origin` names the host the request was sent to (http or https: a TLS proxy may sit in front). */
function sameOrigin(origin: string, host: string): boolean {
  try {
    const url = new URL(origin)
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return false
    return url.host.toLowerCase() === new URL(`${url.protocol}//${host}`).host.toLowerCase()
  } catch {
    return false // "null" (sandboxed frames, file://) and anything malformed
  }
}

const ALLOWED_METHODS = 'GET, HEAD, POST, PATCH, DELETE, OPTIONS'
// Besides the usual ones, tus's request headers: a page on an allowed origin sends them to /files/.
const ALLOWED_HEADERS =
  'authorization, content-type, accept, tus-resumable, upload-length, upload-offset, upload-metadata, upload-defer-length, upload-concat, x-http-method-override, x-requested-with'

/**
 * CORS headers for the origins in CORS_ORIGINS (browsers on other origins were refused by `refusal`).
 * Answers preflights itself; returns true when the request has been answered.
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
