import { TUS_PATH } from './tus/path.js'
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

/** Added to per chunk by transfers: a plain number on the hot path, read into the counter when scraped. */
export const stored = { bytes: 0 }

new Counter({
  name: 'upload_bytes_stored_total',
  help: 'Bytes written into storage by transfers (verified on the way)',
  registers: [registry],
  collect() {
    this.reset()
    this.inc(stored.bytes)
  },
})

const requestDuration = new Histogram({
  name: 'http_request_duration_seconds',
  help: 'HTTP requests by method, route and status',
  labelNames: ['method', 'route', 'status'] as const,
  buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
  registers: [registry],
})

export interface LiveState {
  countByStatus(): Promise<Partial<Record<string, number>>>
  activeTransfers(): number
  subscriptions(): number
  /** graphql-ws sockets closed for reading too slowly (fanout.ts). */
  slowConsumersClosed(): number
  /** What storage did that a transfer had to wait out or fail on, by outcome (S3: see s3-bucket.ts). */
  storageOutcomes?(): Readonly<Record<string, number>> | undefined
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
  async collect() {
    // A store that cannot answer now (Redis away) leaves the last counts standing: a scrape must not fail.
    const counts = await live?.countByStatus().catch(() => undefined)
    if (counts === undefined) return
    this.reset()
    for (const [status, count] of Object.entries(counts)) this.set({ status }, count ?? 0)
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
new Counter({
  name: 'graphql_ws_slow_consumers_closed_total',
  help: 'graphql-ws sockets closed (1013) because they had too much unsent data for too long',
  registers: [registry],
  collect() {
    this.reset()
    this.inc(live?.slowConsumersClosed() ?? 0)
  },
})
new Counter({
  name: 'upload_storage_outcomes_total',
  help: "Storage requests that did not simply succeed, by outcome: retried (storage away, tried again), unavailable (away past the SDK's own tries), refused (4xx: the upload fails)",
  labelNames: ['outcome'] as const,
  registers: [registry],
  collect() {
    const counts = live?.storageOutcomes?.()
    if (counts === undefined) return
    this.reset()
    for (const [outcome, count] of Object.entries(counts)) this.inc({ outcome }, count)
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

const PAGES = new Set([
  '/',
  '/api',
  '/api/upload',
  '/api/uploads',
  '/api/files',
  '/api/limits',
  '/api/limits/total-speed',
  '/graphql',
  '/healthz',
  '/readyz',
  '/metrics',
  '/api/openapi.json',
  '/api/docs',
])
const ACTIONS = new Set(['pause', 'resume', 'speed', 'cancel', 'status', 'download'])

/**
 * A route label with ids taken out, so the label set stays small whatever clients request. Runs on every
 * request, so it slices instead of splitting and matching.
 */
export function routeOf(pathname: string): string {
  if (pathname.startsWith(TUS_PATH)) return tusRouteOf(pathname.slice(TUS_PATH.length))
  const base = pathname.startsWith('/api/upload/')
    ? '/api/upload'
    : pathname.startsWith('/api/files/')
      ? '/api/files'
      : undefined
  if (base === undefined) return PAGES.has(pathname) ? pathname : 'other'
  const rest = pathname.slice(base.length + 1)
  const slash = rest.indexOf('/')
  if (slash === -1) return rest === '' ? 'other' : `${base}/:id`
  const action = rest.slice(slash + 1)
  return ACTIONS.has(action) ? `${base}/:id/${action}` : 'other'
}

/** tus: the creation endpoint (`/files`, `/files/`), and an upload's URL (`/files/{id}`). */
function tusRouteOf(rest: string): string {
  if (rest === '' || rest === '/') return TUS_PATH
  return rest.startsWith('/') && rest.indexOf('/', 1) === -1 ? `${TUS_PATH}/:id` : 'other'
}

type Observer = { observe(seconds: number): void }
/** One labelled child per (method, route, status): prom-client would otherwise hash the labels on every request. */
const observers = new Map<string, Observer>()

/** Records how long a request took, from its arrival (`started`, performance.now()) to now. */
export function observeRequest(method: string, pathname: string, status: number, started: number): void {
  const route = routeOf(pathname)
  const key = `${method} ${route} ${status}`
  let observer = observers.get(key)
  if (!observer) {
    observer = requestDuration.labels(method, route, String(status))
    observers.set(key, observer)
  }
  observer.observe((performance.now() - started) / 1000)
}
