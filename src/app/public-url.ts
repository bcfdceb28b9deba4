/**
 * The address clients reach this service at, for links it hands out (GraphQL's `downloadUrl`): PUBLIC_URL
 * when it is set; otherwise what a trusted proxy (TRUST_PROXY) says the client asked for, in `Forwarded` or
 * `X-Forwarded-Proto` and `X-Forwarded-Host`; otherwise unknown, and links stay relative to the server.
 * Forwarded headers from anyone else are ignored: a client could name any host in them.
 */
import type { IncomingMessage } from 'node:http'
import { isIP } from 'node:net'

export interface PublicAddress {
  /** PUBLIC_URL, without a trailing slash. */
  publicUrl: string | undefined
  /** Addresses of the proxies whose forwarded headers are believed. */
  trustProxy: string[]
}

/** `::ffff:127.0.0.1` (an IPv4 peer on a dual-stack socket) is 127.0.0.1. */
export const normaliseIp = (ip: string) => ip.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '').toLowerCase()

export const isIpAddress = (value: string) => isIP(value) !== 0

const HOST =
  /^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:.]+\])(?::\d{1,5})?$/i

/** The last value of a comma-separated header: the one the proxy next to us added. */
const last = (value: string | string[] | undefined): string | undefined => {
  const joined = Array.isArray(value) ? value.join(',') : value
  return joined?.split(',').at(-1)?.trim() || undefined
}

/** `proto` and `host` of the last element of RFC 7239's Forwarded header. */
function forwarded(header: string | string[] | undefined): { proto?: string; host?: string } {
  const element = last(header)
  if (!element) return {}
  const pairs: Record<string, string> = {}
  for (const pair of element.split(';')) {
    const at = pair.indexOf('=')
    if (at < 0) continue
    const value = pair.slice(at + 1).trim()
    pairs[pair.slice(0, at).trim().toLowerCase()] = value.replace(/^"(.*)"$/, '$1')
  }
  return { proto: pairs.proto, host: pairs.host }
}

/** The origin the client used, as the trusted proxy in front of this server reports it, if it does. */
function fromProxy(req: IncomingMessage, trusted: string[]): string | undefined {
  const peer = req.socket.remoteAddress
  if (!peer || !trusted.includes(normaliseIp(peer))) return undefined
  const standard = forwarded(req.headers.forwarded)
  const proto = (standard.proto ?? last(req.headers['x-forwarded-proto']))?.toLowerCase()
  const host = standard.host ?? last(req.headers['x-forwarded-host'])
  if ((proto !== 'http' && proto !== 'https') || !host || !HOST.test(host)) return undefined
  return `${proto}://${host.toLowerCase()}`
}

/** `path` (absolute, from the server's root) as a full URL when the public address is known. */
export function publicLink(address: PublicAddress, path: string, req: IncomingMessage | undefined): string {
  const base = address.publicUrl ?? (req && fromProxy(req, address.trustProxy))
  return base ? `${base}${path}` : path
}
