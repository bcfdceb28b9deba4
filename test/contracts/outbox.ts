import { expect, it } from 'vitest'
import type { Notification } from '../../src/hooks/config.js'
import type { HookEvent, Outbox } from '../../src/seams/outbox/index.js'

/** What each test gets: a fresh outbox, and a way to open another over the same storage (a restart, or a second instance). */
export interface OutboxFixture {
  outbox: Outbox
  /** Another outbox over the same storage: after a restart (local) or on another instance (Redis). */
  reopen(): Promise<Outbox>
}

/** Claims lapse after this long here (short, so a takeover is seen soon). */
export const LEASE_MS = 300

let counter = 0
export function event(uploadId: string, type: Notification, createdAt: number): HookEvent {
  const eventId = `ev-${++counter}-${uploadId}-${type}`
  return {
    eventId,
    uploadId,
    type,
    createdAt,
    body: JSON.stringify({ eventId, type, upload: { id: uploadId } }),
  }
}

const ids = (events: readonly { eventId: string }[]) => events.map((e) => e.eventId)

/**
 * The outbox's contract, run over every implementation (test/seams-outbox.test.ts). `make` gives a fresh,
 * empty outbox with a short lease; `done` ends what it started.
 */
export function outboxContract(
  make: () => Promise<OutboxFixture>,
  done: (fixture: OutboxFixture) => Promise<void>,
  /** Several processes share it (Redis): `reopen` is another instance, live beside the first. */
  { shared }: { shared: boolean },
) {
  const withOutbox = (test: (fixture: OutboxFixture) => Promise<void>) => async () => {
    const fixture = await make()
    try {
      await test(fixture)
    } finally {
      await done(fixture)
    }
  }

  it(
    'hands out only the head of each upload’s queue, and the next only once the head is acknowledged',
    withOutbox(async ({ outbox }) => {
      const now = Date.now()
      const a = [
        event('A', 'received', now),
        event('A', 'completed', now + 1),
        event('A', 'deleted', now + 2),
      ]
      const b = [event('B', 'received', now + 3)]
      await outbox.add([a[0]!, b[0]!])
      await outbox.add([a[1]!, a[2]!])
      const first = await outbox.claim(now + 10, 10, LEASE_MS)
      expect(ids(first).sort()).toEqual(ids([a[0]!, b[0]!]).sort())
      expect(first.find((e) => e.uploadId === 'A')).toMatchObject({
        attempts: 0,
        body: a[0]!.body,
        type: 'received',
      })
      // Claimed heads are not handed out again, and the rest wait behind them.
      expect(await outbox.claim(now + 10, 10, LEASE_MS)).toEqual([])
      await outbox.ack(first.find((e) => e.uploadId === 'A')!)
      expect(ids(await outbox.claim(now + 10, 10, LEASE_MS))).toEqual([a[1]!.eventId])
      expect(await outbox.stats()).toMatchObject({ pending: 3, dead: 0, oldestQueuedAt: now + 1 })
    }),
  )

  it(
    'keeps a failed head first, with one more attempt, until its retry is due',
    withOutbox(async ({ outbox }) => {
      const now = Date.now()
      const [first, second] = [event('A', 'received', now), event('A', 'completed', now)]
      await outbox.add([first!, second!])
      const [head] = await outbox.claim(now, 10, LEASE_MS)
      await outbox.retry(head!, now + 5_000, 'the hook answered 500')
      expect(await outbox.claim(now + 4_999, 10, LEASE_MS)).toEqual([])
      const again = await outbox.claim(now + 5_000, 10, LEASE_MS)
      expect(again).toHaveLength(1)
      expect(again[0]).toMatchObject({
        eventId: first!.eventId,
        attempts: 1,
        lastError: 'the hook answered 500',
        body: first!.body,
      })
    }),
  )

  it(
    'dead-letters a head (kept and counted), lets the upload’s next event go on, and requeues it by id',
    withOutbox(async ({ outbox }) => {
      const now = Date.now()
      const [first, second] = [event('A', 'received', now), event('A', 'completed', now + 1)]
      await outbox.add([first!, second!])
      const [head] = await outbox.claim(now, 10, LEASE_MS)
      await outbox.deadLetter(head!, 'no answer in 10000 ms', now + 100)
      expect(await outbox.stats()).toEqual({ pending: 1, dead: 1, oldestQueuedAt: now + 1 })
      expect(await outbox.deadLetters(10)).toMatchObject([
        { eventId: first!.eventId, deadAt: now + 100, attempts: 1, lastError: 'no answer in 10000 ms' },
      ])
      const [next] = await outbox.claim(now + 100, 10, LEASE_MS)
      expect(next?.eventId).toBe(second!.eventId)
      await outbox.ack(next!)
      expect(await outbox.requeue('no-such-event', now + 200)).toBeUndefined()
      // The event as it is queued again, found by its id.
      expect(await outbox.requeue(first!.eventId, now + 200)).toMatchObject({
        eventId: first!.eventId,
        attempts: 1,
        nextAt: now + 200,
        queuedAt: now + 200,
        lastError: 'no answer in 10000 ms',
      })
      expect(await outbox.requeue(first!.eventId, now + 200)).toBeUndefined() // no longer a dead letter
      // Its age counts from the requeue in the figures too (hook_oldest_pending_age_seconds).
      expect(await outbox.stats()).toEqual({ pending: 1, dead: 0, oldestQueuedAt: now + 200 })
      const [back] = await outbox.claim(now + 200, 10, LEASE_MS)
      // Its age counts afresh from the requeue (else HOOKS_MAX_AGE would bury it again at once).
      expect(back).toMatchObject({ eventId: first!.eventId, queuedAt: now + 200, createdAt: now })
    }),
  )

  it(
    'ignores an acknowledgement or a retry of an event that is no longer its upload’s head',
    withOutbox(async ({ outbox }) => {
      const now = Date.now()
      const [first, second] = [event('A', 'received', now), event('A', 'completed', now)]
      await outbox.add([first!, second!])
      const [head] = await outbox.claim(now, 10, LEASE_MS)
      await outbox.ack(head!)
      // A late second ack (a claimant that lost its claim, then finished) must not drop the next event.
      await outbox.ack(head!)
      await outbox.retry(head!, now + 60_000, 'late')
      expect(ids(await outbox.claim(now, 10, LEASE_MS))).toEqual([second!.eventId])
      expect((await outbox.stats()).pending).toBe(1)
    }),
  )

  it(
    'frees the upload’s next event at once when a taken-over head is acknowledged twice (late claimant first)',
    withOutbox(async ({ outbox, reopen }) => {
      const now = Date.now()
      const [first, second] = [event('A', 'received', now), event('A', 'completed', now)]
      await outbox.add([first!, second!])
      const [late] = await outbox.claim(Date.now(), 10, LEASE_MS) // its deliverer is slow: the claim lapses
      await new Promise((resolve) => setTimeout(resolve, LEASE_MS + 50)) // the lease is what is being tested
      const other = shared ? await reopen() : outbox
      try {
        const [taken] = await other.claim(Date.now(), 10, LEASE_MS)
        expect(taken?.eventId).toBe(first!.eventId)
        // The late claimant finishes first, then the one that took over: both acknowledge the same event.
        await outbox.ack(late!)
        await other.ack(taken!)
        // No claim on the gone head is left behind: the next event is due now, not when a lease lapses.
        expect(ids(await outbox.claim(Date.now(), 10, LEASE_MS))).toEqual([second!.eventId])
      } finally {
        if (other !== outbox) await other.close()
      }
    }),
  )

  it(
    'lets a claim lapse after its lease, so a dead deliverer’s events are taken over',
    withOutbox(async ({ outbox, reopen }) => {
      const now = Date.now()
      const only = event('A', 'completed', now)
      await outbox.add([only])
      expect(await outbox.claim(Date.now(), 10, LEASE_MS)).toHaveLength(1) // then its deliverer dies, silent
      // Shared: another instance takes it over. Embedded: one process delivers all, so a claim of its own
      // that its deliverer dropped lapses for it the same way (and a restart starts with none).
      const other = shared ? await reopen() : outbox
      try {
        expect(await other.claim(Date.now(), 10, LEASE_MS)).toEqual([])
        await new Promise((resolve) => setTimeout(resolve, LEASE_MS + 50)) // the lease is what is being tested
        const taken = await other.claim(Date.now(), 10, LEASE_MS)
        expect(ids(taken)).toEqual([only.eventId])
        await other.ack(taken[0]!)
        expect((await other.stats()).pending).toBe(0)
      } finally {
        if (other !== outbox) await other.close()
      }
    }),
  )

  it(
    'keeps pending events and dead letters across a reopen (a restart, or another instance)',
    withOutbox(async ({ outbox, reopen }) => {
      const now = Date.now()
      const [a, b, c] = [
        event('A', 'received', now),
        event('A', 'completed', now + 1),
        event('B', 'failed', now + 2),
      ]
      await outbox.add([a!, b!, c!])
      const claimed = await outbox.claim(now + 10, 10, LEASE_MS)
      await outbox.retry(
        claimed.find((e) => e.uploadId === 'A')!,
        now + 1,
        'refused',
      )
      await outbox.deadLetter(
        claimed.find((e) => e.uploadId === 'B')!,
        'too old',
        now + 2,
      )
      const other = await reopen()
      try {
        expect(await other.stats()).toEqual({ pending: 2, dead: 1, oldestQueuedAt: now })
        expect(ids(await other.pending(10))).toEqual([a!.eventId, b!.eventId])
        expect(ids(await other.deadLetters(10))).toEqual([c!.eventId])
        const [head] = await other.claim(Date.now() + LEASE_MS, 10, LEASE_MS)
        expect(head).toMatchObject({ eventId: a!.eventId, attempts: 1, lastError: 'refused', body: a!.body })
      } finally {
        await other.close()
      }
    }),
  )

  it.runIf(shared)(
    'gives each head to one claimant when two instances claim at once',
    withOutbox(async ({ outbox, reopen }) => {
      const now = Date.now()
      const events = Array.from({ length: 40 }, (_, i) => event(`U${i}`, 'completed', now))
      await outbox.add(events)
      const other = await reopen()
      try {
        const [mine, theirs] = await Promise.all([
          outbox.claim(now, 25, LEASE_MS),
          other.claim(now, 25, LEASE_MS),
        ])
        const all = [...ids(mine), ...ids(theirs)]
        expect(new Set(all).size).toBe(all.length)
        expect(all.length).toBeGreaterThanOrEqual(25)
      } finally {
        await other.close()
      }
    }),
  )
}
