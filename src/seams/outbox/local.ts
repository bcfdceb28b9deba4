import type { DeadLetter, HookEvent, Outbox, OutboxStats, PendingEvent } from './index.js'
import type { OutboxChange, OutboxState } from './state.js'

/**
 * Where the embedded outbox's changes go: the records journal (records/local.ts), so an event and the
 * record change that causes it are one line and one fsync, and there is one file to lose, not two.
 */
export interface OutboxJournal {
  /** Makes the change durable, then runs `apply` (before any later change is applied), then resolves. */
  append(change: OutboxChange, apply: () => void): Promise<void>
  close(): Promise<void>
}

/**
 * The embedded outbox: an OutboxState whose every change is durable before it is applied (so memory never
 * holds what the disk does not, as in the records store), and claims held in memory, since one process
 * delivers all of its events.
 */
export class LocalOutbox implements Outbox {
  private constructor(
    private readonly state: OutboxState,
    private readonly journal: OutboxJournal,
  ) {}

  /** The outbox of `state` (replayed by its journal's owner), whose every change goes through `journal`. */
  static over(state: OutboxState, journal: OutboxJournal): LocalOutbox {
    return new LocalOutbox(state, journal)
  }

  private change(change: OutboxChange): Promise<void> {
    return this.journal.append(change, () => this.state.apply(change))
  }

  add(events: readonly HookEvent[]): Promise<void> {
    return events.length === 0 ? Promise.resolve() : this.change({ add: [...events] })
  }

  async claim(now: number, limit: number, leaseMs: number): Promise<PendingEvent[]> {
    return this.state.claim(now, limit, leaseMs)
  }

  ack(event: PendingEvent): Promise<void> {
    return this.change({ ack: [event.uploadId, event.eventId] })
  }

  retry(event: PendingEvent, nextAt: number, error: string): Promise<void> {
    return this.change({ retry: [event.uploadId, event.eventId, nextAt, error] })
  }

  deadLetter(event: PendingEvent, error: string, now: number): Promise<void> {
    return this.change({ dead: [event.uploadId, event.eventId, error, now] })
  }

  async stats(): Promise<OutboxStats> {
    return this.state.stats()
  }

  async pending(limit: number): Promise<PendingEvent[]> {
    return this.state.pending(limit)
  }

  async deadLetters(limit: number): Promise<DeadLetter[]> {
    return this.state.deadLetters(limit)
  }

  async requeue(eventId: string, now: number): Promise<PendingEvent | undefined> {
    const letter = this.state.deadLetter(eventId)
    if (!letter) return undefined
    await this.change({ requeue: [eventId, now] })
    return this.state.find(letter.uploadId, eventId)
  }

  close(): Promise<void> {
    return this.journal.close()
  }
}
