import type { DeadLetter, HookEvent, OutboxStats, PendingEvent } from './index.js'

/**
 * One change to an outbox, as data: what a line of the records journal holds (records/local.ts), beside
 * the record change that causes an `add` or alone.
 */
export type OutboxChange =
  | { add: HookEvent[] }
  | { ack: [uploadId: string, eventId: string] }
  | { retry: [uploadId: string, eventId: string, nextAt: number, error: string] }
  | { dead: [uploadId: string, eventId: string, error: string, at: number] }
  | { requeue: [eventId: string, at: number] }

/** What a snapshot of an outbox holds. */
export interface OutboxImage {
  pending: PendingEvent[]
  dead: DeadLetter[]
}

/**
 * The embedded outbox's memory: a queue per upload (Map order: oldest upload first), the dead letters, and
 * the claims, which live only here (a process that restarts has no deliveries under way).
 */
export class OutboxState {
  private readonly queues = new Map<string, PendingEvent[]>()
  private readonly dead = new Map<string, DeadLetter>()
  /** uploadId → the time its head's claim lapses. */
  private readonly claims = new Map<string, number>()
  /** The eventIds pending. */
  private readonly ids = new Set<string>()

  apply(change: OutboxChange): void {
    if ('add' in change) {
      // An event already queued (or dead) is not queued twice: a state change written again (its store's
      // answer lost, say) carries the same eventId, and its receiver hears it once.
      for (const event of change.add)
        if (!this.ids.has(event.eventId) && !this.dead.has(event.eventId))
          this.push(pendingOf(event, event.createdAt))
    } else if ('ack' in change) this.shift(...change.ack)
    else if ('retry' in change) {
      const [uploadId, eventId, nextAt, error] = change.retry
      const head = this.head(uploadId, eventId)
      if (!head) return
      this.replaceHead(uploadId, { ...head, attempts: head.attempts + 1, nextAt, lastError: error })
      this.claims.delete(uploadId)
    } else if ('dead' in change) {
      const [uploadId, eventId, error, at] = change.dead
      const head = this.shift(uploadId, eventId)
      if (head) this.dead.set(eventId, { ...head, attempts: head.attempts + 1, lastError: error, deadAt: at })
    } else {
      const [eventId, at] = change.requeue
      const letter = this.dead.get(eventId)
      if (!letter) return
      this.dead.delete(eventId)
      this.push({ ...pendingOf(letter, at), attempts: letter.attempts, lastError: letter.lastError })
    }
  }

  deadLetter(eventId: string): DeadLetter | undefined {
    return this.dead.get(eventId)
  }

  /** A pending event by its upload and id. */
  find(uploadId: string, eventId: string): PendingEvent | undefined {
    return this.queues.get(uploadId)?.find((event) => event.eventId === eventId)
  }

  claim(now: number, limit: number, leaseMs: number): PendingEvent[] {
    const due: PendingEvent[] = []
    for (const [uploadId, queue] of this.queues) {
      const head = queue[0]
      if (head && head.nextAt <= now && (this.claims.get(uploadId) ?? 0) <= now) due.push(head)
    }
    const chosen = due.sort((a, b) => a.nextAt - b.nextAt).slice(0, limit)
    for (const event of chosen) this.claims.set(event.uploadId, now + leaseMs)
    return chosen
  }

  stats(): OutboxStats {
    let oldest: number | null = null
    for (const queue of this.queues.values())
      for (const event of queue) if (oldest === null || event.queuedAt < oldest) oldest = event.queuedAt
    return { pending: this.ids.size, oldestQueuedAt: oldest, dead: this.dead.size }
  }

  pending(limit: number): PendingEvent[] {
    return [...this.queues.values()]
      .flat()
      .sort((a, b) => a.queuedAt - b.queuedAt)
      .slice(0, limit)
  }

  deadLetters(limit: number): DeadLetter[] {
    return [...this.dead.values()].sort((a, b) => a.deadAt - b.deadAt).slice(0, limit)
  }

  image(): OutboxImage {
    return { pending: [...this.queues.values()].flat(), dead: [...this.dead.values()] }
  }

  load(image: OutboxImage): void {
    for (const event of image.pending) this.push(event)
    for (const letter of image.dead) this.dead.set(letter.eventId, letter)
  }

  private push(event: PendingEvent): void {
    let queue = this.queues.get(event.uploadId)
    if (!queue) this.queues.set(event.uploadId, (queue = []))
    queue.push(event)
    this.ids.add(event.eventId)
  }

  private head(uploadId: string, eventId: string): PendingEvent | undefined {
    const head = this.queues.get(uploadId)?.[0]
    return head?.eventId === eventId ? head : undefined
  }

  private replaceHead(uploadId: string, event: PendingEvent): void {
    const queue = this.queues.get(uploadId)
    if (queue) queue[0] = event
  }

  /** Takes the head off if it is `eventId`, making the next one due at once. */
  private shift(uploadId: string, eventId: string): PendingEvent | undefined {
    const queue = this.queues.get(uploadId)
    if (!queue || queue[0]?.eventId !== eventId) return undefined
    const head = queue.shift()
    if (head) this.ids.delete(head.eventId)
    this.claims.delete(uploadId)
    if (queue.length === 0) this.queues.delete(uploadId)
    return head
  }
}

/** A new entry in a queue: due at once, its age counted from `at`. */
const pendingOf = (event: HookEvent, at: number): PendingEvent => ({
  eventId: event.eventId,
  uploadId: event.uploadId,
  type: event.type,
  body: event.body,
  createdAt: event.createdAt,
  ...(event.requestId === undefined ? {} : { requestId: event.requestId }),
  attempts: 0,
  nextAt: at,
  queuedAt: at,
  lastError: null,
})
