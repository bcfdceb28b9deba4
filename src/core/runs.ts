import { faultReason } from '../errors.js'
import { log } from '../log.js'
import { stored } from '../metrics.js'
import type { UploadRecord, UploadView } from '../model/record.js'
import { setTimeout as sleep } from 'node:timers/promises'
import { StorageUnavailable, StoredBytesMismatch } from '../seams/storage/index.js'
import { letGo, locked, type Context, type Run } from './context.js'
import { askPreFinish } from './gates.js'
import { arrived, completed, failed, isFinal, isReceiving, isRunning, now, progressed } from './machine.js'
import { HashWorkerStopped, InlineHash, transferHash } from './transfer/hasher.js'
import { RateMeter } from './transfer/rate.js'
import { LeaseLostError, TargetChangedError, Transfer } from './transfer/transfer.js'
import { viewOf } from './views.js'
import { announce, durably, publish, put, releaseIfIdle, save } from './writes.js'

/**
 * Transfer runs: a run copies an upload's staged bytes into its transfer file, paced, from a start or resume
 * to its pause, cancel, end or failure; then its completion (or failure) is recorded. Also the ticks that
 * publish and checkpoint running uploads' byte counts.
 */

/**
 * A run that finds its file changed behind it goes on from what verifies, at most this many times since the
 * upload last started or resumed (progress in between does not reset the count), then fails.
 */
const MAX_RECHECKS = 3

/**
 * All of an upload's bytes are in staging, with their sha256: recorded as arrived (IN_PROGRESS), and its
 * transfer started.
 */
export async function startTransfer(
  ctx: Context,
  current: UploadRecord,
  size: number,
  sha256: string,
): Promise<UploadView> {
  const record = arrived(current, size, sha256)
  await save(ctx, record)
  ctx.hashes.set(record.id, { hash: transferHash(record.targetSpeed), offset: 0 })
  start(ctx, record)
  return announce(ctx, record, 'upload.started')
}

export function start(ctx: Context, record: UploadRecord, rechecks = 0): void {
  const part = ctx.hashes.get(record.id)
  if (!part || part.offset !== record.uploadedSize)
    throw new Error(`no hash of ${record.id}'s first ${record.uploadedSize} bytes`)
  // The run changes the file: how it leaves it is known again when it stops (onStop).
  const expected = part.mark
  part.mark = undefined
  const controller = new AbortController()
  const meter = new RateMeter()
  meter.record(record.uploadedSize)
  const run: Run = {
    record,
    controller,
    meter,
    offset: record.uploadedSize,
    updatedAt: record.updatedAt,
    published: record.uploadedSize,
    checkpointed: record.uploadedSize,
    rechecks,
    transfer: undefined as unknown as Transfer, // set just below; the callbacks never run before that
  }
  run.transfer = new Transfer({
    storage: ctx.storage,
    upload: record,
    offset: record.uploadedSize,
    expected,
    speed: record.targetSpeed,
    scheduler: ctx.scheduler,
    hash: part.hash,
    signal: controller.signal,
    // Checked before every write: past its lease's deadline a stalled owner stops, whatever else happens.
    mayWrite: () => (ctx.leases.held(record.id)?.deadline ?? 0) > performance.now(),
    onProgress: (offset) => {
      stored.bytes += offset - run.offset
      run.offset = part.offset = offset
      meter.record(offset)
    },
    // A part store may have kept fewer bytes than were written (a part it never acknowledged): the hash goes
    // on from what it kept, or, if the run cannot say, from what storage verifies next time.
    onStop: ({ acknowledged, mark, hash }) => {
      part.mark = mark
      if (hash !== part.hash) {
        part.hash.drop()
        // Taken out without another drop, and only if it is still this run's (a recheck may have set anew).
        if (!hash) return void (ctx.hashes.get(record.id) === part && ctx.hashes.take(record.id))
        Object.assign(part, { hash, offset: acknowledged })
      }
      // Stopped short (a pause, maybe for hours): the hash waits holding as little as it can.
      if (acknowledged < record.totalSize) part.hash.park()
    },
  })
  ctx.runs.set(record.id, run)
  // The rest of its transfer file: promised when it arrived, or now (a restart, an adoption, a resume). Made
  // anew each time, for exactly what is left from here: a run may start lower than the last one stopped (a
  // recheck, a changed file), and the old promise, worn down by what that one wrote, would be too little.
  ctx.rooms.get(record.id)?.release()
  const room = ctx.storage.room.hold(record.totalSize - record.uploadedSize)
  ctx.rooms.set(record.id, room)
  room.track(() => run.offset - record.uploadedSize)
  // Whoever stops a run (pause, cancel, close) handles its outcome; a run that ends by itself is ours.
  run.transfer.done.then(
    (offset) => {
      if (offset === record.totalSize) void ended(ctx, run, (current) => complete(ctx, current))
    },
    (error: unknown) => {
      ctx.hashes.delete(record.id)
      // Not a failure of the upload: this process may no longer act on it, and its new owner carries on.
      if (error instanceof LeaseLostError) return void lost(ctx, record.id)
      // The hashing worker died under the run (its hash with it): the file is hashed again from disk.
      if (
        (error instanceof TargetChangedError || error instanceof HashWorkerStopped) &&
        run.rechecks < MAX_RECHECKS
      )
        return void ended(ctx, run, (current) => recheck(ctx, current, run.rechecks + 1, error.message))
      const reason =
        error instanceof TargetChangedError
          ? `Its file in storage kept being changed by something other than this server (${error.message}); upload it again`
          : faultReason(error, 'upload.transfer_error', { id: record.id })
      void ended(ctx, run, (current) => fail(ctx, current, reason))
    },
  )
}

function ended(ctx: Context, run: Run, finish: (record: UploadRecord) => Promise<void>): Promise<void> {
  const { id } = run.record
  return locked(ctx, id, async () => {
    if (ctx.runs.get(id) !== run || ctx.state.closed) return
    ctx.runs.delete(id)
    // Until the outcome is recorded the record still says IN_PROGRESS at its last checkpoint; clients see
    // the bytes the run reached (a count that went back would read as corruption).
    ctx.finishing.set(id, run.offset)
    try {
      const record = await ctx.store.get(id)
      if (record && !isFinal(record.status)) await finish({ ...record, uploadedSize: run.offset })
    } finally {
      ctx.finishing.delete(id)
      // A recheck has started a new run here, with the room it holds: not ours to give back.
      await releaseIfIdle(ctx, id)
    }
  }).catch((error: unknown) => log('error', 'upload.finish_failed', { id, error }))
}

/** This process no longer holds the upload's lease: its run stops at once, and writes nothing more. */
export async function lost(ctx: Context, id: string): Promise<void> {
  const run = ctx.runs.get(id)
  if (run) {
    log('warn', 'upload.lease_lost', { id, instance: ctx.leases.instance, uploadedSize: run.offset })
    ctx.runs.delete(id)
    ctx.hashes.delete(id)
    letGo(ctx, id)
    run.controller.abort()
    await run.transfer.done.catch(() => undefined)
  }
  // The run stopped at its own deadline, but a late renewal may still have kept the lease in Redis: an
  // upload held by an instance that runs nothing would never be adopted. Let go (a no-op if it is
  // someone else's now), and whoever takes it next carries on from the bytes on disk.
  await ctx.leases.release(id).catch(() => undefined)
}

/** Aborts the running copy, if any, and waits for its chunk in flight: no byte moves after this. */
export async function stopRun(ctx: Context, id: string): Promise<number> {
  const run = ctx.runs.get(id)
  if (!run) return (await ctx.store.get(id))?.uploadedSize ?? 0
  ctx.runs.delete(id)
  run.controller.abort()
  return run.transfer.done.catch(() => {
    // It failed as we stopped it: its hash may be of bytes that never landed. Rebuilt from disk on resume.
    ctx.hashes.delete(id)
    return run.offset
  })
}

/**
 * The hash of the transfer's file up to where it can be trusted. Memory's is, if the file is still exactly
 * as the last run left it (one stat); otherwise (memory lost track, or the file was cut, written to or
 * replaced meanwhile) the file is compared with staging again, and the transfer goes on from the last byte
 * that matches: never from bytes nobody checked.
 */
export async function prepareHash(ctx: Context, record: UploadRecord): Promise<number> {
  const part = ctx.hashes.get(record.id)
  const known = part?.offset === record.uploadedSize
  // Nothing to trust at 0: the run starts the file afresh.
  if (part && known && (part.offset === 0 || (await ctx.storage.unchanged(record, part.mark))))
    return part.offset
  ctx.hashes.delete(record.id)
  const verified = await ctx.storage.verifiedPrefix(record)
  if (known)
    log('warn', 'upload.transfer_file_changed', {
      id: record.id,
      uploadedSize: record.uploadedSize,
      verifiedSize: verified.offset,
    })
  ctx.hashes.set(record.id, { ...verified, hash: new InlineHash(verified.hash) })
  return verified.offset
}

/**
 * A run found its file changed behind it (cut short, written to, replaced): it goes on from the bytes that
 * still match staging, as after a restart. If that cannot be done, the upload fails with the reason.
 */
async function recheck(ctx: Context, record: UploadRecord, rechecks: number, why: string): Promise<void> {
  log('warn', 'upload.transfer_file_changed', {
    id: record.id,
    uploadedSize: record.uploadedSize,
    reason: why,
  })
  try {
    ctx.hashes.delete(record.id)
    const offset = await prepareHash(ctx, record)
    const next = progressed(record, offset)
    await put(ctx, next)
    start(ctx, next, rechecks)
    publish(ctx, next)
  } catch (error) {
    await fail(ctx, record, faultReason(error, 'upload.recheck_failed', { id: record.id }))
  }
}

/** A stop (pause, cancel) whose new state cannot be saved undoes itself: the transfer runs on as recorded. */
export async function saveOrRestart(
  ctx: Context,
  record: UploadRecord,
  offset: number,
  next: UploadRecord,
): Promise<void> {
  try {
    await save(ctx, next)
  } catch (error) {
    if (isRunning(record.status) && !ctx.state.closed) {
      const current = { ...record, uploadedSize: offset }
      await prepareHash(ctx, current).then((at) => start(ctx, { ...current, uploadedSize: at }))
    }
    throw error
  }
}

/**
 * Completion, ordered so that a crash at any point recovers to the truth: the pre-finish hook is asked (see
 * below); the hash of the bytes written is checked against the one taken on arrival and the transfer
 * (already flushed) is made the stored file (Storage.complete); then COMPLETED reaches the store; only then
 * does the staging copy go. (Before `complete`, recovery resumes the transfer; after it, recovery finds the
 * whole file, checks it, and completes.)
 */
export async function complete(ctx: Context, record: UploadRecord): Promise<void> {
  letGo(ctx, record.id)
  const part = ctx.hashes.take(record.id)
  // Memory's hash is of the bytes this server wrote, each run begun in a file checked to be as the last one
  // left it (see prepareHash), each write made into a file holding exactly what was written before it, and
  // the run ended at its full length with no hole (see Transfer): so no second read of it. That is not
  // proof: bytes overwritten in place behind the run, or a cut between a check and its write that leaves a
  // hole too small to see, go unnoticed (the README says so). Without that hash, what is on disk is hashed.
  // A hashing worker that died with it has none to give: then too, what is on disk is hashed.
  const written =
    part && part.offset === record.totalSize ? await part.hash.digest().catch(() => undefined) : undefined
  part?.hash.drop()
  // Known wrong already: failed as `complete` would fail it, without asking the hook about it.
  if (written !== undefined && written !== record.sha256)
    return fail(ctx, record, new StoredBytesMismatch(written, record.sha256).message)
  // The user's pre-finish hook reads the staged bytes (its link serves them: the same bytes, with the same
  // sha256, see app/hook-file.ts) and decides before they are put in place: refused, they go with the FAILED
  // upload; a crash while it is asked resumes the transfer, which asks again. Recovery's completion of a file
  // found in place asks nothing: it was passed before `complete`, which checks the sha256 (again) as it
  // puts the bytes in place.
  const refused = await askPreFinish(ctx, record)
  if (refused !== undefined) return fail(ctx, record, refused)
  try {
    // The last run's mark with its hash: a part store completes exactly the parts that run left.
    const mark = written === undefined ? undefined : part?.mark
    for (let tries = 0; ; tries++) {
      try {
        await ctx.storage.complete(record, written, mark)
        break
      } catch (error) {
        // Storage away at the last step: waited out (the bytes are all there), unless the server closes.
        if (!(error instanceof StorageUnavailable) || ctx.state.closed) throw error
        log('warn', 'upload.storage_unavailable', {
          id: record.id,
          step: 'complete',
          tries: tries + 1,
          reason: error.message,
        })
        await sleep(Math.min(500 * 2 ** tries, 8000))
      }
    }
  } catch (error) {
    if (error instanceof StoredBytesMismatch) return fail(ctx, record, error.message)
    return fail(ctx, record, faultReason(error, 'upload.finalize_failed', { id: record.id }))
  }
  await durably(ctx, completed(record), 'upload.completed')
  await ctx.storage
    .remove(record, 'staged')
    .catch((error: unknown) => log('warn', 'upload.cleanup_failed', { id: record.id, error }))
}

/**
 * The transfer's file goes first (it may be what filled the disk, and without it recovery simply starts the
 * transfer over), then FAILED reaches the store, then everything else of it goes.
 */
export async function fail(
  ctx: Context,
  record: UploadRecord,
  reason: string,
  next = failed(record, reason),
): Promise<void> {
  ctx.hashes.delete(record.id)
  letGo(ctx, record.id)
  await ctx.storage.remove(record, 'transfer').catch(() => undefined)
  // Not on record (the server closed first, or another instance holds the upload now): what is left is for
  // the next start's recovery, or the new owner, to settle.
  if (!(await durably(ctx, next, 'upload.failed'))) return
  // All the rest: an upload that never completed owns no stored file, yet one stored whole from memory just
  // before a crash may have left one (see arrivals.ts).
  await ctx.storage.remove(record, 'all').catch(() => undefined)
}

/** Every running (or arriving) upload whose byte count moved since its last event, published. */
export function publishProgress(ctx: Context): void {
  // Alone, nobody listening means nobody to tell; shared, subscribers may be on any instance.
  if (ctx.feed.subscriberCount === 0 && !ctx.shared) {
    for (const run of ctx.runs.values()) run.published = run.offset
    return
  }
  const at = now()
  for (const [id, arriving] of ctx.arriving) {
    const received = arriving.received()
    arriving.meter.record(received)
    if (received === arriving.published) continue
    arriving.published = received
    // A store that cannot answer now (Redis away) skips this tick; the next one tries again.
    ctx.store.get(id).then(
      (record) => {
        if (record && isReceiving(record.status)) ctx.bus.publish({ ...viewOf(ctx, record), updatedAt: at })
      },
      () => undefined,
    )
  }
  for (const run of ctx.runs.values()) {
    if (run.offset === run.published) continue
    run.published = run.offset
    // The record did change (its byte count): updatedAt says when, and subscribers can see how fresh it is.
    run.updatedAt = at
    publish(ctx, run.record)
  }
}

/** Running uploads' byte counts, to the record store (fenced, each under its lease). */
export async function checkpoint(ctx: Context, health: { failing: boolean }): Promise<void> {
  // A run whose lease just lapsed is about to stop; its count is the next owner's to record.
  const moved = [...ctx.runs.values()].filter(
    (run) => run.offset !== run.checkpointed && ctx.leases.held(run.record.id) !== undefined,
  )
  if (moved.length === 0) return
  const at = now()
  const entries = moved.map((run) => ({
    id: run.record.id,
    uploadedSize: run.offset,
    updatedAt: at,
    fence: ctx.leases.held(run.record.id)?.value,
  }))
  try {
    await ctx.store.progress(entries)
    for (const [i, run] of moved.entries()) run.checkpointed = entries[i]?.uploadedSize ?? run.checkpointed
    if (health.failing) log('info', 'upload.checkpoint_recovered')
    health.failing = false
  } catch (error) {
    if (!health.failing) log('error', 'upload.checkpoint_failed', { error })
    health.failing = true
  }
}
