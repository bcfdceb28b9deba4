import type { Notification } from '../../hooks/config.js'

/**
 * A notification as the state change that causes it writes it. `body` is the exact JSON sent (and signed)
 * on every attempt, so its eventId and contents never change between retries.
 */
export interface HookEvent {
  eventId: string
  uploadId: string
  type: Notification
  body: string
  /** When the state change happened (ms since the epoch). */
  createdAt: number
  /** The request that caused it, for the log lines of failed deliveries. */
  requestId?: string
}

/** An event waiting for delivery: the head of its upload's queue is the only one of it ever sent. */
export interface PendingEvent extends HookEvent {
  attempts: number
  /** Not sent again before this (ms). */
  nextAt: number
  /** When it entered the queue (its creation, or a requeue): HOOKS_MAX_AGE counts from here. */
  queuedAt: number
  lastError: string | null
}

export interface DeadLetter extends PendingEvent {
  deadAt: number
}

export interface OutboxStats {
  pending: number
  /** queuedAt of the oldest pending event (a requeued dead letter's age counts afresh); null with none. */
  oldestQueuedAt: number | null
  dead: number
}

/**
 * Where notifications wait for delivery: in order per upload, each upload's head claimed by one deliverer
 * at a time (so one instance sends it, and the next waits for it), and a dead deliverer's claims lapse
 * after `leaseMs` for another to take.
 *
 * Acknowledging, retrying and dead-lettering name the event: one that is no longer its upload's head (an
 * instance whose claim lapsed and was taken over, then finished anyway) changes nothing: the event was
 * sent twice, which at least once allows and the eventId lets receivers drop.
 */
export interface Outbox {
  /** Queues events at the tail of their uploads' queues; resolves once they are durable. */
  add(events: readonly HookEvent[]): Promise<void>
  /**
   * Up to `limit` heads that are due at `now` and not claimed, each now claimed for `leaseMs` (longer than a
   * delivery may take, or a slow one would be sent twice); oldest due first.
   */
  claim(now: number, limit: number, leaseMs: number): Promise<PendingEvent[]>
  /** Delivered: gone, and the next of its upload is due at once. */
  ack(event: PendingEvent): Promise<void>
  /** Not delivered: stays the head, with one more attempt, due again at `nextAt`; the claim is let go. */
  retry(event: PendingEvent, nextAt: number, error: string): Promise<void>
  /** Too old to retry: kept among the dead letters (counted), and the next of its upload goes on. */
  deadLetter(event: PendingEvent, error: string, now: number): Promise<void>
  stats(): Promise<OutboxStats>
  /** Oldest first, at most `limit`: for the operators' query. */
  pending(limit: number): Promise<PendingEvent[]>
  deadLetters(limit: number): Promise<DeadLetter[]>
  /**
   * A dead letter back at its upload's tail, due at `now`, with its age counted afresh: the event as now
   * queued, or undefined if there is no dead letter by that id.
   */
  requeue(eventId: string, now: number): Promise<PendingEvent | undefined>
  close(): Promise<void>
}
