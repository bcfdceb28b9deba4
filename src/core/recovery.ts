import { setTimeout as sleep } from 'node:timers/promises'
import { faultReason } from '../errors.js'
import { log } from '../log.js'
import { sha256Of, StorageUnavailable, type Leftover } from '../seams/storage/index.js'
import { locked, pages, type Context } from './context.js'
import {
  completed,
  isFinal,
  isReceiving,
  isRunning,
  progressed,
  RUNNING,
  STILL_RECEIVING,
} from './machine.js'
import { fail, start, startTransfer } from './runs.js'
import { InlineHash } from './transfer/hasher.js'
import { durably, forget, publish, put } from './writes.js'

/**
 * Start-up recovery (alone: every unfinished upload, from the bytes on disk) and adoption (shared: the
 * running uploads whose instance died), including a tus upload whose every byte reached the disk but was
 * never recorded as arrived.
 */

/**
 * After a restart, once this process holds the folder and serves requests: removes `orphans` (decided
 * before serving anyone, see Storage.leftovers) and carries on every unfinished upload from the bytes on
 * disk. Each upload is recovered under its own lock, so a request for it waits for its recovery. Shared,
 * answers with the adoption to repeat (see adopt).
 */
export async function recover(ctx: Context, orphans: readonly Leftover[]): Promise<'adopt' | undefined> {
  // Which leftovers to sweep, asked of Redis when shared: if it cannot say now, nothing is swept (the next
  // start sweeps them), rather than guess or end the process.
  const doomed = ctx.shared
    ? await stillOrphans(ctx, orphans).catch((error: unknown) => {
        log('warn', 'recovery.sweep_skipped', { error })
        return []
      })
    : orphans
  await ctx.storage
    .removeLeftovers(doomed)
    .catch((error: unknown) => log('warn', 'recovery.sweep_failed', { error }))
  // Running uploads are carried on by whoever holds (or takes) their lease: see adopt().
  if (ctx.shared) return 'adopt'
  const unfinished = await ctx.store.unfinished()
  await Promise.all(
    unfinished.map((record) =>
      locked(ctx, record.id, () => recoverOne(ctx, record.id)).catch((error: unknown) => {
        // S3 away (as for a running transfer): tried again until it answers, without holding up the rest.
        if (error instanceof StorageUnavailable) return void recoverLater(ctx, record.id, error)
        return failRecovery(ctx, record.id, error)
      }),
    ),
  )
  return undefined
}

/** The upload could not be carried on: it fails, with the reason. */
function failRecovery(ctx: Context, id: string, error: unknown): Promise<void> {
  return locked(ctx, id, async () => {
    const current = await ctx.store.get(id)
    if (current && !isFinal(current.status))
      await fail(ctx, current, faultReason(error, 'upload.recovery_error', { id }))
  }).catch((failure: unknown) => log('error', 'upload.recovery_failed', { id, error: failure }))
}

/**
 * Recovery of one upload found storage away: tried again after 0.5 s, doubling to 8 s, for as long as it
 * stays away, each try under the upload's lock and only then (a pause or cancel meanwhile is taken, and the
 * next try carries on from what they left). Anything else storage says fails the upload, as at once.
 */
function recoverLater(ctx: Context, id: string, first: StorageUnavailable): void {
  void (async () => {
    let reason = first.message
    for (let tries = 1; !ctx.state.closed; tries++) {
      log('warn', 'upload.storage_unavailable', { id, step: 'recover', tries, reason })
      await sleep(Math.min(500 * 2 ** (tries - 1), 8000), undefined, { ref: false })
      if (ctx.state.closed) return
      try {
        return await locked(ctx, id, () => recoverOne(ctx, id))
      } catch (error) {
        if (!(error instanceof StorageUnavailable)) return failRecovery(ctx, id, error)
        reason = error.message
      }
    }
  })()
}

/**
 * On shared storage the orphan list was made before this instance served anyone, but other instances were
 * serving all along: a file is removed only if it still belongs to no unfinished upload now, and a body
 * still arriving at a live instance is never touched.
 */
export async function stillOrphans(ctx: Context, leftovers: readonly Leftover[]): Promise<Leftover[]> {
  const live = await ctx.leases.liveInstances()
  const doomed: Leftover[] = []
  for (const leftover of leftovers) {
    const { arrivingAt, id } = leftover
    if (arrivingAt !== undefined) {
      if (!live.has(arrivingAt)) doomed.push(leftover)
      continue
    }
    const record = id === undefined ? undefined : await ctx.store.get(id)
    if (!record || isFinal(record.status)) doomed.push(leftover)
  }
  return doomed
}

/**
 * With shared leases: every running upload that nobody holds (its instance died, or let go) is taken
 * over by whichever instance gets its lease first, and carried on from the bytes verified on disk. A
 * multipart body still RECEIVING whose lease nobody holds is forgotten, as at a restart: its instance held
 * the lease all the while it arrived, so that instance died (or lost the lease, and cannot record it as
 * arrived anyway), and nobody can resume it. (A tus upload waits for its sender, or expires.)
 */
export async function adopt(ctx: Context, busy: { adopting: boolean }): Promise<void> {
  if (busy.adopting || ctx.state.closed) return
  busy.adopting = true
  try {
    for await (const records of pages(ctx, [...RUNNING, ...STILL_RECEIVING])) {
      const ids = records
        .filter((record) => isRunning(record.status) || record.source === 'multipart')
        .map((record) => record.id)
        .filter((id) => !ctx.runs.has(id) && !ctx.arriving.has(id))
      const holders = await ctx.leases.holders(ids)
      for (const [i, id] of ids.entries()) {
        if (holders[i] !== undefined || ctx.state.closed) continue
        if (!(await ctx.leases.acquire(id))) continue
        await locked(ctx, id, () => recoverOne(ctx, id)).catch((error: unknown) =>
          log('error', 'upload.adoption_failed', { id, error }),
        )
        if (!ctx.runs.has(id)) await ctx.leases.release(id)
        else log('info', 'upload.adopted', { id, instance: ctx.leases.instance })
      }
    }
  } catch (error) {
    log('warn', 'upload.adoption_paused', { error })
  } finally {
    busy.adopting = false
  }
}

async function recoverOne(ctx: Context, id: string): Promise<void> {
  const record = await ctx.store.get(id)
  if (ctx.state.closed || !record || isFinal(record.status)) return
  if (isReceiving(record.status)) {
    // A multipart body cannot be resumed once its connection is gone; a tus upload waits for its sender,
    // with what reached the disk (its last request may have been cut off before it was counted).
    if (record.source === 'multipart')
      return forget(
        ctx,
        id,
        'The server receiving it stopped before the whole file arrived; send it again',
        record.receivedSize,
      )
    const staged = await ctx.storage.stagedSize(record.id)
    // Bytes it was told it had are gone: said as such (its sender hears 410), never taken for none having come.
    if (staged === undefined && record.receivedSize > 0)
      return fail(ctx, record, 'Its received bytes are gone from the staging folder; upload it again')
    const onDisk = Math.min(staged ?? 0, record.totalSize)
    // Every byte reached the disk, but the crash came before it was recorded: its sender, asking, would
    // hear it is whole and send nothing more, so it goes on from here. (Nothing staged: none came yet, or a
    // crash came before its empty file was made at its creation; it waits for its sender, or expires.)
    if (staged !== undefined && onDisk === record.totalSize)
      return void (await startTransfer(
        ctx,
        record,
        onDisk,
        await sha256Of(ctx.storage.readStaged(record.id)),
      ))
    if (onDisk !== record.receivedSize)
      await put(ctx, { ...record, receivedSize: onDisk, updatedAt: new Date().toISOString() })
    return
  }
  const { storage } = ctx
  // A crash between the rename into place and COMPLETED reaching the store: the file is whole and was
  // verified before it was renamed; make sure, then finish the job (and drop a transfer file that a power
  // cut may have brought back beside it).
  const digest = await storage.storedSha256(record, record.totalSize)
  if (digest !== undefined && digest === record.sha256) {
    await durably(ctx, completed(record), 'upload.completed')
    await storage.remove(record, 'bytes').catch(() => undefined)
    return
  }
  if ((await storage.stagedSize(record.id)) === undefined) {
    return fail(ctx, record, 'Its received bytes are gone from the staging folder; upload it again')
  }
  const verified = await storage.verifiedPrefix(record)
  const { offset } = verified
  ctx.hashes.set(id, { ...verified, hash: new InlineHash(verified.hash) })
  const next = progressed(record, offset)
  await put(ctx, next)
  log('info', 'upload.recovered', {
    id,
    status: record.status,
    uploadedSize: offset,
    totalSize: record.totalSize,
  })
  if (isRunning(record.status)) start(ctx, next)
  publish(ctx, next)
}
