import { Counter, Gauge, type Registry } from 'prom-client'
import type { Outbox, OutboxStats } from '../seams/outbox/index.js'

export type DeliveryOutcome = 'delivered' | 'failed' | 'dead_lettered'

export interface HookMetrics {
  delivery(event: string, outcome: DeliveryOutcome): void
  /** Takes this app's outbox out of the figures (an app that closes, in a process that may start another). */
  remove(): void
}

const names = [
  'hook_deliveries_total',
  'hook_pending_events',
  'hook_oldest_pending_age_seconds',
  'hook_dead_letters',
] as const

/** The outboxes of the apps open in this process: one in a deployment, several in a test process. */
const sources = new Map<Registry, Set<() => Promise<OutboxStats | undefined>>>()

/**
 * The hooks' figures in `registry` (the app's, in /metrics): deliveries by event and outcome as they
 * happen, and the outbox's pending count, oldest pending age and dead letters, read from it when scraped
 * (across every instance, with Redis: the outbox is shared). The metrics are registered once per registry,
 * whatever number of apps open in the process.
 */
export function hookMetrics(registry: Registry, outbox: Outbox, now: () => number = Date.now): HookMetrics {
  let outboxes = sources.get(registry)
  if (!outboxes) sources.set(registry, (outboxes = new Set()))
  if (outboxes.size === 0) register(registry, outboxes, now)
  // One read of the outbox serves the three gauges of a scrape.
  let read: { at: number; stats: Promise<OutboxStats | undefined> } | undefined
  const stats = () => {
    if (!read || now() - read.at > 250) read = { at: now(), stats: outbox.stats().catch(() => undefined) }
    return read.stats
  }
  outboxes.add(stats)
  const deliveries = registry.getSingleMetric('hook_deliveries_total') as Counter<'event' | 'outcome'>
  return {
    delivery: (event, outcome) => deliveries.inc({ event, outcome }),
    remove: () => {
      outboxes.delete(stats)
      if (outboxes.size === 0) names.forEach((name) => registry.removeSingleMetric(name))
    },
  }
}

function register(
  registry: Registry,
  outboxes: Set<() => Promise<OutboxStats | undefined>>,
  now: () => number,
) {
  new Counter({
    name: 'hook_deliveries_total',
    help: 'Hook notification attempts by event and outcome (delivered, failed: retried later, dead_lettered)',
    labelNames: ['event', 'outcome'] as const,
    registers: [registry],
  })
  const gauge = (name: string, help: string, value: (all: OutboxStats[]) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      async collect() {
        // An outbox that cannot answer now leaves the last figure standing: a scrape must not fail.
        const all = await Promise.all([...outboxes].map((stats) => stats()))
        if (all.every((stats) => stats !== undefined)) this.set(value(all as OutboxStats[]))
      },
    })
  const sum = (all: OutboxStats[], of: (stats: OutboxStats) => number) => all.reduce((n, s) => n + of(s), 0)
  gauge('hook_pending_events', 'Hook notifications waiting for delivery', (all) => sum(all, (s) => s.pending))
  gauge(
    'hook_oldest_pending_age_seconds',
    'Seconds since the oldest waiting hook notification was queued (a resent dead letter counts from its resending)',
    (all) => {
      const oldest = Math.min(...all.map((s) => s.oldestQueuedAt ?? Infinity))
      return oldest === Infinity ? 0 : Math.max(0, (now() - oldest) / 1000)
    },
  )
  gauge(
    'hook_dead_letters',
    'Hook notifications given up on after HOOKS_MAX_AGE (kept; retry them by id)',
    (all) => sum(all, (s) => s.dead),
  )
}
