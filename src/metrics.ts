import type { IncomingMessage, ServerResponse } from 'node:http'
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'

/**
 * Prometheus metrics, in one registry. Counters are process-wide; the gauges read the live state of the
 * service they are bound to when scraped, so they cost nothing between scrapes.
 */
export const registry = new Registry()
collectDefaultMetrics({ register: registry })

export const bytesReceived = new Counter({
  name: 'upload_bytes_received_total',
  help: 'Bytes of uploaded files received and staged',
  registers: [registry],
})

export const bytesStored = new Counter({
  name: 'upload_bytes_stored_total',
  help: 'Bytes written into storage by transfers (verified on the way)',
  registers: [registry],
})

const requestDuration = new Histogram({
  name: 'http_request_duration_seconds',
  help: 'HTTP requests by method, route and status',
  labelNames: ['method', 'route', 'status'] as const,
  buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
  registers: [registry],
})

export interface LiveState {
  countByStatus(): Record<string, number>
  activeTransfers(): number
  subscriptions(): number
}

let live: LiveState | undefined

/** Binds the gauges to a running service (the latest one started, in tests that start several). */
export function observe(state: LiveState): void {
  live = state
}

new Gauge({
  name: 'uploads',
  help: 'Uploads by status',
  labelNames: ['status'] as const,
  registers: [registry],
  collect() {
    this.reset()
    for (const [status, count] of Object.entries(live?.countByStatus() ?? {})) this.set({ status }, count)
  },
})
new Gauge({
  name: 'upload_active_transfers',
  help: 'Transfers moving bytes now',
  registers: [registry],
  collect() {
    this.set(live?.activeTransfers() ?? 0)
  },
})
new Gauge({
  name: 'graphql_subscriptions',
  help: 'Open uploadProgress subscriptions (WebSocket and SSE)',
  registers: [registry],
  collect() {
    this.set(live?.subscriptions() ?? 0)
  },
})

/** A route label with ids taken out, so the label set stays small whatever clients request. */
export function routeOf(pathname: string): string {
  const parts = pathname.split('/')
  if (parts[1] === 'api' && (parts[2] === 'upload' || parts[2] === 'files') && parts.length > 3)
    parts[3] = ':id'
  const route = parts.slice(0, 5).join('/')
  return /^\/(api(\/[a-z]+(\/:id(\/[a-z]+)?)?)?|graphql|healthz|readyz|metrics)?$/.test(route)
    ? route
    : 'other'
}

/** Times a request from its arrival to the end of its answer. */
export function timeRequest(req: IncomingMessage, res: ServerResponse, pathname: string): void {
  const end = requestDuration.startTimer()
  res.once('finish', () =>
    end({ method: req.method ?? 'GET', route: routeOf(pathname), status: res.statusCode }),
  )
}
