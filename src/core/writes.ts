import { setTimeout as sleep } from 'node:timers/promises'
import { ServiceError, unavailable } from '../errors.js'
import { log } from '../log.js'
import type { UploadRecord, UploadView } from '../model/record.js'
import { FencedError } from '../seams/records/index.js'
import { letGo, type Context } from './context.js'
import { currentRequestId } from '../request-context.js'
import type { HookEvent } from '../seams/outbox/index.js'
import { isFailed, isReceiving, notificationsOf, notReceived } from './machine.js'
import { viewOf } from './views.js'

/**
 * How records change: every write is fenced by this process's lease, durable before anyone hears of it, and
 * then announced. Below runs, arrivals, commands and recovery; above the machine.
 */

/**
 * A write nobody waits for, tried until `attempt` says it is done (true) or moot (undefined), waiting
 * longer after each false (250 ms, doubling, at most 5 s), and not once `stopped`. True only if done.
 */
export async function retrying(
  stopped: () => boolean,
  attempt: () => Promise<boolean | undefined>,
  waitFirst: boolean,
): Promise<boolean> {
  for (let waits = 0; ; waits++) {
    if (waitFirst || waits > 0) {
      if (stopped()) return false
      await sleep(Math.min(250 * 2 ** (waitFirst ? waits : waits - 1), 5000))
      if (stopped()) return false
    }
    const done = await attempt()
    if (done !== false) return done === true
  }
}

/**
 * The lease this process writes an upload's record under (the store refuses it once someone took over).
 * Shared, a write with no lease held would pass every fence, so it is refused here instead.
 */
export function fenceOf(ctx: Context, id: string): string | undefined {
  const held = ctx.leases.held(id)
  if (!held && ctx.shared) throw new FencedError(`this instance no longer holds upload ${id}`)
  return held?.value
}

/** A store (or lease) call a client waits for: its failure is the server's problem, answered as 503. */
export async function guard<T>(write: () => Promise<T>): Promise<T> {
  try {
    return await write()
  } catch (error) {
    if (error instanceof ServiceError) throw error
    log('error', 'store.write_failed', { error })
    // The client hears a stable sentence; the error (a path, an errno) is its cause, which the edge logs.
    throw unavailable(
      "The change could not be saved (the server's state store failed); nothing was changed, try again",
      error,
    )
  }
}

/**
 * The notifications a change of upload `id` to `after` (undefined: its removal) causes, asked of the
 * machine from the status on record before it; none without hooks (and then nothing is read). Every write
 * of a record comes through `write` or `erase` below, so this is the one place events are born.
 */
async function eventsOf(
  ctx: Context,
  id: string,
  after: UploadRecord | undefined,
): Promise<HookEvent[] | undefined> {
  if (!ctx.notifier) return undefined
  const before = await ctx.store.get(id)
  const about = after ?? before
  if (!about) return undefined
  const types = notificationsOf(before?.status, after?.status ?? 'removed')
  const events = types.length === 0 ? [] : ctx.notifier.events(types, about, Date.now(), currentRequestId())
  return events.length > 0 ? events : undefined
}

/** Writes a record under this process's lease, with the events the change causes in the same write. */
async function write(ctx: Context, record: UploadRecord): Promise<void> {
  const fence = fenceOf(ctx, record.id)
  const events = await eventsOf(ctx, record.id, record)
  await ctx.store.put(record, fence, events)
  if (events) ctx.notifier?.written()
}

/** Removes a record under this process's lease, with the events its removal causes in the same write. */
export async function erase(ctx: Context, id: string): Promise<void> {
  const fence = fenceOf(ctx, id)
  const events = await eventsOf(ctx, id, undefined)
  await ctx.store.remove(id, fence, events)
  if (events) ctx.notifier?.written()
}

/** Writes a change; a store that cannot take it is the server's problem, answered as 503. */
export async function save(ctx: Context, record: UploadRecord): Promise<void> {
  await guard(() => write(ctx, record))
}

/** Writes a change nobody waits for (recovery's, a run's recheck): its failure goes to whoever called. */
export async function put(ctx: Context, record: UploadRecord): Promise<void> {
  await write(ctx, record)
}

export function announce(ctx: Context, record: UploadRecord, event: string): UploadView {
  const { id, filename, uploadedSize, totalSize, targetSpeed, error } = record
  log(isFailed(record.status) ? 'warn' : 'info', event, {
    id,
    filename,
    uploadedSize,
    totalSize,
    targetSpeed,
    error,
  })
  return publish(ctx, record)
}

/** Tells every watcher (on every instance) the record's state, without a log line. */
export function publish(ctx: Context, record: UploadRecord): UploadView {
  const view = viewOf(ctx, record)
  ctx.bus.publish(view)
  return view
}

/**
 * A change nobody waits for (completion, failure): retried until the store takes it, and logged, so
 * memory and disk never disagree in silence. If the server stops first, recovery at the next start
 * reaches the same outcome from the bytes on disk. True once the store took it (false: the server closed
 * first, or another instance holds the upload now).
 */
export async function durably(ctx: Context, record: UploadRecord, event: string): Promise<boolean> {
  let attempt = 0
  const saved = await retrying(
    () => ctx.state.closed,
    async () => {
      const fenced = () => void log('warn', 'upload.fenced', { id: record.id, status: record.status })
      try {
        // Its own lease, run out while the store was away, is taken again (as in removeRecord).
        if (ctx.shared && !ctx.leases.held(record.id) && !(await ctx.leases.acquire(record.id)))
          return fenced()
        await write(ctx, record)
        return true
      } catch (error) {
        // Another instance holds the upload now: what this one wanted to record is not its to say. (Not
        // fenceOf's own refusal, the lease lost again meanwhile: that is tried again.)
        if (error instanceof FencedError && ctx.leases.held(record.id)) return fenced()
        log('error', 'store.write_failed', {
          id: record.id,
          status: record.status,
          attempt: attempt++,
          error,
        })
        return false
      }
    },
    false,
  )
  if (saved) announce(ctx, record, event)
  return saved
}

/**
 * Removes a record; false if the store cannot take it now. Only a fence the store refuses counts as done
 * (another instance holds the upload now: it is theirs to keep or forget). This instance's own lease, run
 * out while the store was away, is taken again first; if someone else has it, it is theirs.
 */
export async function removeRecord(ctx: Context, id: string): Promise<boolean> {
  try {
    if (ctx.shared && !ctx.leases.held(id) && !(await ctx.leases.acquire(id))) return true
    await erase(ctx, id)
    return true
  } catch (error) {
    // fenceOf's own refusal (the lease ran out again meanwhile) is not done: it is tried again.
    if (error instanceof FencedError && ctx.leases.held(id)) return true
    log('error', 'store.write_failed', { id, op: 'remove', error })
    return false
  }
}

/** An undone arrival's removal, retried until the store takes it (or the server stops: see forget). */
async function removeLater(ctx: Context, id: string): Promise<void> {
  if (
    !(await retrying(
      () => ctx.state.closed,
      () => removeRecord(ctx, id),
      true,
    ))
  )
    return
  ctx.undone.delete(id)
  log('info', 'upload.removal_saved', { id })
  await ctx.leases.release(id).catch(() => undefined)
}

/**
 * A multipart body that never arrived (the client went, a limit, a malformed body): the client heard why,
 * its watchers hear it failed, and then it is gone from the lists, as if never sent (nothing to clean up).
 */
export async function forget(ctx: Context, id: string, reason: string, received: number): Promise<void> {
  ctx.arriving.delete(id)
  letGo(ctx, id)
  const current = await ctx.store.get(id)
  let removed = true
  if (current && isReceiving(current.status)) {
    // All of it: a body stored whole from memory just before a crash has its file in place already.
    await ctx.storage
      .remove(current, 'all')
      .catch((error: unknown) => log('warn', 'upload.cleanup_failed', { id, error }))
    // Gone before anyone hears it failed: a watcher that then looks finds nothing, never a stale RECEIVING.
    removed = await removeRecord(ctx, id)
    if (!removed) {
      // Its client hears nothing was kept, so for everyone it is gone now; the store hears it once it
      // takes writes again (or the next start, or another instance's adoption, forgets it, as every multipart
      // upload still RECEIVING that nobody receives).
      ctx.undone.add(id)
      void removeLater(ctx, id)
    }
    ctx.bus.publish({ ...viewOf(ctx, notReceived(current, reason, received)), removed: true })
    log('info', 'upload.not_received', { id, filename: current.filename, receivedSize: received, reason })
  } else if (current) {
    // On record as more than received after all (a store that took a write whose answer was lost): its
    // watchers hear what it is.
    publish(ctx, current)
  }
  // Held until the record is gone: its removal is written under the lease.
  if (removed) await ctx.leases.release(id)
}

/**
 * Nothing runs or arrives here for the upload any more (a request ended, a run ended, a command done): its
 * room is anyone's again, and, shared, its lease goes back, so another instance may act on it at once.
 * `room: 'kept while held'` keeps an embedded upload's room (a paused one's, say): alone, this process
 * never lets its lease go, so it will be the one to resume it.
 */
export async function releaseIfIdle(
  ctx: Context,
  id: string,
  room: 'let go' | 'kept while held' = 'let go',
): Promise<void> {
  if (ctx.runs.has(id) || ctx.arriving.has(id)) return
  if (room === 'let go' || ctx.shared) letGo(ctx, id)
  if (ctx.shared) await ctx.leases.release(id).catch(() => undefined)
}
