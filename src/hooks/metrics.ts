import { Counter, Gauge, type Registry } from 'prom-client'
import type { Outbox, OutboxStats } from '../seams/outbox/index.js'

export type DeliveryOutcome = 'delivered' | 'failed' | 'dead_lettered'

export interface HookMetrics {
  delivery(event: string, outcome: DeliveryOutcome): void
  /** Takes the figures out of the registry again (an app that closes, in a process that may start another). */
  remove(): void
}

/**
 * The hooks' figures in `registry` (the app's, in /metrics): deliveries by event and outcome as they
 * happen, and the outbox's pending count, oldest pending age and dead letters, read from it when scraped
 * (across every instance, with Redis: the outbox is shared).
 */
export function hookMetrics(registry: Registry, outbox: Outbox, now: () => number = Date.now): HookMetrics {
  const deliveries = new Counter({
    name: 'hook_deliveries_total',
    help: 'Hook notification attempts by event and outcome (delivered, failed: retried later, dead_lettered)',
    labelNames: ['event', 'outcome'] as const,
    registers: [registry],
  })
  // One read of the outbox serves the three gauges of a scrape.
  let read: { at: number; stats: Promise<OutboxStats | undefined> } | undefined
  const stats = () => {
    if (!read || now() - read.at > 250) read = { at: now(), stats: outbox.stats().catch(() => undefined) }
    return read.stats
  }
  const gauge = (name: string, help: string, value: (stats: OutboxStats) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      async collect() {
        // An outbox that cannot answer now leaves the last figure standing: a scrape must not fail.
        const current = await stats()
        if (current) this.set(value(current))
      },
    })
  gauge('hook_pending_events', 'Hook notifications waiting for delivery', (s) => s.pending)
  gauge('hook_oldest_pending_age_seconds', 'Age of the oldest hook notification waiting for delivery', (s) =>
    s.oldestCreatedAt === null ? 0 : Math.max(0, (now() - s.oldestCreatedAt) / 1000),
  )
  gauge(
    'hook_dead_letters',
    'Hook notifications given up on after HOOKS_MAX_AGE (kept; retry them by id)',
    (s) => s.dead,
  )
  const names = [
    'hook_deliveries_total',
    'hook_pending_events',
    'hook_oldest_pending_age_seconds',
    'hook_dead_letters',
  ]
  return {
    delivery: (event, outcome) => deliveries.inc({ event, outcome }),
    remove: () => names.forEach((name) => registry.removeSingleMetric(name)),
  }
}
