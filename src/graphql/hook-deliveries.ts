import type { HookDeliveries, HookDelivery } from '../generated/graphql.js'
import { badInput, quote, ServiceError } from '../errors.js'
import type { DeadLetter, PendingEvent } from '../seams/outbox/index.js'
import type { HookOps } from './context.js'

const MAX_LIST = 1000

const iso = (ms: number) => new Date(ms).toISOString()

const deliveryOf = (event: PendingEvent | DeadLetter): HookDelivery => {
  const dead = 'deadAt' in event
  return {
    eventId: event.eventId,
    uploadId: event.uploadId,
    type: event.type,
    attempts: event.attempts,
    createdAt: iso(event.createdAt),
    nextAttemptAt: dead ? null : iso(event.nextAt),
    lastError: event.lastError,
    deadAt: dead ? iso(event.deadAt) : null,
  }
}

export async function hookDeliveries(
  hooks: HookOps | undefined,
  first: number | null | undefined,
): Promise<HookDeliveries> {
  const limit = first ?? 100
  if (limit < 1 || limit > MAX_LIST) throw badInput(`first must be from 1 to ${MAX_LIST}; got ${limit}`)
  if (!hooks) return { pendingCount: 0, deadLetterCount: 0, pending: [], deadLetters: [] }
  const [stats, pending, dead] = await Promise.all([
    hooks.outbox.stats(),
    hooks.outbox.pending(limit),
    hooks.outbox.deadLetters(limit),
  ])
  return {
    pendingCount: stats.pending,
    deadLetterCount: stats.dead,
    pending: pending.map(deliveryOf),
    deadLetters: dead.map(deliveryOf),
  }
}

export async function retryHookDelivery(hooks: HookOps | undefined, eventId: string): Promise<HookDelivery> {
  const missing = () => new ServiceError('NOT_FOUND', `No dead-lettered hook delivery ${quote(eventId)}`)
  if (!hooks) throw missing()
  const requeued = await hooks.outbox.requeue(eventId, Date.now())
  if (!requeued) throw missing()
  hooks.kick()
  return deliveryOf(requeued)
}
