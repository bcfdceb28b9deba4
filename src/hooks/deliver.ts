import { setTimeout as sleep } from 'node:timers/promises'
import { log } from '../log.js'
import type { Outbox, PendingEvent } from '../seams/outbox/index.js'
import type { HooksConfig } from './config.js'
import type { HookMetrics } from './metrics.js'
import { sign, SIGNATURE_HEADER } from './sign.js'

export interface DelivererOptions {
  outbox: Outbox
  config: Pick<HooksConfig, 'url' | 'secret' | 'notifyTimeoutMs' | 'maxAgeMs'>
  /** The bytes of an attempt (hooks/notify.ts attemptBody: a fresh link in a completed event). @default the event's body */
  bodyOf?: (event: PendingEvent) => string
  metrics?: HookMetrics
  /** Uniform in [0, 1), for the jitter: tests pass a seeded one. @default Math.random */
  random?: () => number
  /** @default Date.now */
  now?: () => number
  /** Deliveries under way at once, each of a different upload. @default 16 */
  concurrency?: number
  /** The first retry comes about this long after a failure, and each next one twice as long. @default 1000 */
  baseDelayMs?: number
  /** Retries are never further apart than this. @default 300000 (5 min) */
  maxDelayMs?: number
  /** How often the outbox is looked at when nothing wakes the deliverer (events of other instances, retries due). @default 500 */
  pollMs?: number
}

/** How much longer than HOOKS_NOTIFY_TIMEOUT a claim lasts: the ack after a delivery must land within it. */
const LEASE_MARGIN_MS = 5_000

/**
 * Exponential backoff with "equal jitter": half the doubled delay, plus up to as much again at random, so
 * instances retrying a receiver that came back do not all arrive in the same instant.
 */
export function backoff(attempts: number, random: () => number, baseMs: number, maxMs: number): number {
  const delay = Math.min(maxMs, baseMs * 2 ** Math.min(attempts, 30))
  return Math.round(delay / 2 + random() * (delay / 2))
}

/**
 * Sends what the outbox holds, at least once each: an event is acknowledged only after a 2xx, retried with
 * backoff until HOOKS_MAX_AGE, then dead-lettered. Only an upload's head is ever claimed, so one upload's
 * events go out in order while others' go out beside them.
 */
export class Deliverer {
  private readonly inFlight = new Set<Promise<void>>()
  private timer: NodeJS.Timeout | undefined
  private pumping = false
  private again = false
  private stopped = false
  /** Ends the deliveries under way when the server stops: unacknowledged, they are sent again later. */
  private aborter = new AbortController()
  private readonly random: () => number
  private readonly now: () => number
  private readonly concurrency: number
  private readonly baseDelayMs: number
  private readonly maxDelayMs: number

  constructor(private readonly options: DelivererOptions) {
    this.random = options.random ?? Math.random
    this.now = options.now ?? Date.now
    this.concurrency = options.concurrency ?? 16
    this.baseDelayMs = options.baseDelayMs ?? 1000
    this.maxDelayMs = options.maxDelayMs ?? 300_000
  }

  start(): void {
    if (this.stopped) this.aborter = new AbortController()
    this.stopped = false
    this.timer ??= setInterval(() => this.kick(), this.options.pollMs ?? 500).unref()
    this.kick()
  }

  /** Look now: an event was just added, or a delivery ended and its upload's next may be due. */
  kick(): void {
    if (this.stopped) return
    if (this.pumping) {
      this.again = true
      return
    }
    void this.pump()
  }

  /**
   * Takes no more, and ends the deliveries under way at once (a shutdown must not wait out a slow
   * receiver): none of them is acknowledged, so each is sent again, after a restart or by another instance
   * once its claim lapses. Under at-least-once, a receiver may then hear one twice (same eventId).
   */
  async stop(): Promise<void> {
    this.stopped = true
    clearInterval(this.timer)
    this.timer = undefined
    this.aborter.abort()
    await Promise.all(this.inFlight)
  }

  private async pump(): Promise<void> {
    this.pumping = true
    try {
      do {
        this.again = false
        const room = this.concurrency - this.inFlight.size
        if (room <= 0 || this.stopped) break
        // A claim outlasts the longest delivery, so a slow receiver is not sent the same event twice.
        const lease = this.options.config.notifyTimeoutMs + LEASE_MARGIN_MS
        const events = await this.options.outbox.claim(this.now(), room, lease)
        for (const event of events) {
          const delivery: Promise<void> = this.deliver(event).finally(() => {
            this.inFlight.delete(delivery)
            this.kick()
          })
          this.inFlight.add(delivery)
        }
        if (events.length === room) this.again = true
      } while (this.again && !this.stopped)
    } catch (error) {
      // The outbox cannot be read now (Redis away): the next poll tries again.
      log('warn', 'hook.outbox_unavailable', { error: (error as Error).message })
    } finally {
      this.pumping = false
    }
  }

  private async deliver(event: PendingEvent): Promise<void> {
    const { config, metrics } = this.options
    let failure: string
    // Held here, and read below, for as long as the delivery waits: on Node 20 a timeout signal that only
    // AbortSignal.any follows may be collected, and its timer then aborts nothing (nodejs/node#57736): a
    // receiver that answers late, or never, would hold the delivery until it did.
    const timeout = AbortSignal.timeout(config.notifyTimeoutMs)
    try {
      const body = this.options.bodyOf?.(event) ?? event.body
      const response = await fetch(config.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', [SIGNATURE_HEADER]: sign(config.secret, body) },
        body,
        signal: AbortSignal.any([timeout, this.aborter.signal]),
        redirect: 'error',
      })
      await response.body?.cancel().catch(() => undefined) // the answer's body means nothing to a notification
      if (response.ok) {
        // Delivered, whatever happens to the acknowledgement: the receiver has it.
        metrics?.delivery(event.type, 'delivered')
        return await this.acknowledge(event)
      }
      failure = `the hook answered ${response.status}`
    } catch (error) {
      // Stopped: not the receiver's failure, and nothing to record (the claim lapses).
      if (this.stopped) return
      if (timeout.aborted) failure = `no answer in ${config.notifyTimeoutMs} ms`
      else failure = ((error as Error).cause as Error | undefined)?.message ?? (error as Error).message
    }
    await this.failed(event, failure).catch((error: unknown) =>
      // Not recorded: the claim lapses, and the event is sent again then.
      log('warn', 'hook.outbox_unavailable', { eventId: event.eventId, error: (error as Error).message }),
    )
  }

  /**
   * Takes a delivered event off the outbox. One that cannot take it now (Redis away) is asked again while
   * the claim lasts; after that the claim lapses and the event is sent again: at least once, and the
   * receiver drops the repeat by its eventId. Never a failed delivery, never a dead letter.
   */
  private async acknowledge(event: PendingEvent): Promise<void> {
    const deadline = this.now() + LEASE_MARGIN_MS
    const fields = { eventId: event.eventId, type: event.type, uploadId: event.uploadId }
    for (let attempt = 1, wait = 100; ; attempt++, wait *= 2) {
      try {
        await this.options.outbox.ack(event)
        if (attempt > 1) log('info', 'hook.ack_recovered', { ...fields, attempts: attempt })
        return
      } catch (error) {
        const message = (error as Error).message
        const giveUp = this.stopped || this.now() + wait > deadline
        log('warn', 'hook.ack_failed', {
          ...fields,
          attempts: attempt,
          error: message,
          next: giveUp ? 'sent again once its claim lapses' : `asked again in ${wait} ms`,
        })
        if (giveUp) return
        await sleep(wait, undefined, { signal: this.aborter.signal }).catch(() => undefined)
      }
    }
  }

  private async failed(event: PendingEvent, failure: string): Promise<void> {
    const { config, outbox, metrics } = this.options
    const now = this.now()
    const fields = {
      eventId: event.eventId,
      type: event.type,
      uploadId: event.uploadId,
      requestId: event.requestId,
      attempts: event.attempts + 1,
      error: failure,
    }
    if (now - event.queuedAt >= config.maxAgeMs) {
      await outbox.deadLetter(event, failure, now)
      metrics?.delivery(event.type, 'dead_lettered')
      log('error', 'hook.dead_lettered', fields)
      return
    }
    const nextAt = now + backoff(event.attempts, this.random, this.baseDelayMs, this.maxDelayMs)
    await outbox.retry(event, nextAt, failure)
    metrics?.delivery(event.type, 'failed')
    log('warn', 'hook.delivery_failed', { ...fields, retryInMs: nextAt - now })
  }
}
