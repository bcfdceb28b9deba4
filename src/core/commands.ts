import { publicMessage, ServiceError, unavailable } from '../errors.js'
import { log } from '../log.js'
import type { UploadRecord, UploadView } from '../model/record.js'
import type { Command, Outcome } from '../seams/bus/index.js'
import { StorageUnavailable } from '../seams/storage/index.js'
import { assertOpen, letGo, lockedOrBusy, recordOf, type Context } from './context.js'
import { storageError } from './ingest/ingest.js'
import {
  canceled,
  check,
  checkSpeed,
  isReceiving,
  isStored,
  paused,
  refusal,
  resumed,
  withSpeed,
} from './machine.js'
import { complete, prepareHash, saveOrRestart, start, stopRun } from './runs.js'
import { viewOf } from './views.js'
import { announce, erase, guard, releaseIfIdle, save } from './writes.js'

/**
 * A client's command on one upload (pause, resume, setSpeed, cancel, delete): run where the upload's lease
 * is, one at a time per upload under the keyed lock, and checked against the machine's table.
 */

/**
 * Runs a command where the upload's lease is: here if this process holds it or can take it (then gives
 * it back unless the upload now runs here), else at the instance that holds it, over the bus.
 */
export async function dispatch(ctx: Context, command: Command, hops = 0): Promise<UploadView> {
  const { id } = command
  if (ctx.leases.held(id)) {
    try {
      return await lockedOrBusy(ctx, id, () => perform(ctx, command))
    } finally {
      // Paused, canceled, deleted: nothing runs or arrives here, so nothing is left to hold it for. Nor its
      // room: once the lease is gone it may be resumed, canceled or completed elsewhere, and this instance
      // would never hear that it ended (a resume here makes a new promise).
      await releaseIfIdle(ctx, id, 'kept while held')
    }
  }
  await recordOf(ctx, id) // NOT_FOUND before any lease is asked for
  const fence = await guard(() => ctx.leases.acquire(id))
  if (fence) {
    try {
      return await lockedOrBusy(ctx, id, () => perform(ctx, command))
    } finally {
      await releaseIfIdle(ctx, id)
    }
  }
  const owner = await guard(() => ctx.leases.holder(id))
  if (owner === undefined || owner === ctx.leases.instance) {
    // Let go between our two questions: ask again, a few times.
    if (hops >= 3) throw unavailable(`Upload ${id} changes hands too fast; try again`)
    return dispatch(ctx, command, hops + 1)
  }
  const outcome = await ctx.bus.request(owner, command)
  if ('error' in outcome) throw ServiceError.fromData(outcome.error)
  return outcome.ok
}

/** A command forwarded by another instance: run it as if it had come here (it may move on once more). */
export async function answerForwarded(ctx: Context, command: Command): Promise<Outcome> {
  try {
    return { ok: await dispatch(ctx, command, 2) }
  } catch (error) {
    if (error instanceof ServiceError) return { error: error.toData() }
    log('error', 'upload.command_failed', { command, error })
    return { error: { code: 'UNAVAILABLE', message: publicMessage(error) } }
  }
}

function perform(ctx: Context, command: Command): Promise<UploadView> {
  switch (command.op) {
    case 'pause':
      return pause(ctx, command.id)
    case 'resume':
      return resume(ctx, command.id, command.speed)
    case 'setSpeed':
      return setSpeed(ctx, command.id, command.speed)
    case 'cancel':
      return cancel(ctx, command.id)
    case 'delete':
      return remove(ctx, command.id, command.keepFile)
  }
}

async function pause(ctx: Context, id: string): Promise<UploadView> {
  const record = await recordOf(ctx, id)
  check('pause', record)
  const offset = await stopRun(ctx, id)
  if (offset === record.totalSize) {
    // The last chunk landed while we asked: finish it, and say it can no longer be paused.
    await complete(ctx, record)
    const now = await recordOf(ctx, id)
    throw refusal('pause', now) ?? new Error(`upload ${id}: pause after its completion`)
  }
  const next = paused(record, offset)
  await saveOrRestart(ctx, record, offset, next)
  return announce(ctx, next, 'upload.paused')
}

async function resume(ctx: Context, id: string, speed: number | null): Promise<UploadView> {
  const record = await recordOf(ctx, id)
  const targetSpeed = speed == null ? record.targetSpeed : checkSpeed(speed)
  check('resume', record)
  assertOpen(ctx)
  const offset = await prepareHash(ctx, record)
  const next = resumed(record, targetSpeed, offset)
  await save(ctx, next)
  start(ctx, next)
  return announce(ctx, next, 'upload.resumed')
}

async function setSpeed(ctx: Context, id: string, speed: number): Promise<UploadView> {
  const record = await recordOf(ctx, id)
  const targetSpeed = checkSpeed(speed)
  check('setSpeed', record)
  const run = ctx.runs.get(id)
  const next = withSpeed(record, targetSpeed, run?.offset ?? record.uploadedSize)
  await save(ctx, next)
  if (run) {
    run.transfer.setSpeed(targetSpeed)
    run.record = { ...run.record, targetSpeed }
  }
  return announce(ctx, next, 'upload.speed_changed')
}

async function cancel(ctx: Context, id: string): Promise<UploadView> {
  const record = await recordOf(ctx, id)
  check('cancel', record)
  if (isReceiving(record.status)) return cancelReceiving(ctx, record)
  const offset = await stopRun(ctx, id)
  // The count reached is kept: scripts that follow progress read a drop as corruption. The bytes go.
  const next = canceled(record, { uploadedSize: offset })
  await saveOrRestart(ctx, record, offset, next)
  ctx.hashes.delete(id)
  letGo(ctx, id)
  // All of them: it never completed, so no stored file is its own (see cancelReceiving).
  await ctx.storage
    .remove(record, 'all')
    .catch((error: unknown) => log('warn', 'upload.cleanup_failed', { id, error }))
  return announce(ctx, next, 'upload.canceled')
}

/** Canceled while it arrives: the request carrying it (or the tus sender's next request) is refused. */
async function cancelReceiving(ctx: Context, record: UploadRecord): Promise<UploadView> {
  const arriving = ctx.arriving.get(record.id)
  const next = canceled(record, { receivedSize: arriving?.received() ?? record.receivedSize })
  await save(ctx, next)
  ctx.arriving.delete(record.id)
  letGo(ctx, record.id)
  arriving?.stop(new ServiceError('INVALID_STATE', `Upload ${record.id} was canceled while it arrived`))
  // All of it: a body stored whole from memory just before a crash has its file in place already.
  await ctx.storage
    .remove(record, 'all')
    .catch((error: unknown) => log('warn', 'upload.cleanup_failed', { id: record.id, error }))
  return announce(ctx, next, 'upload.canceled')
}

/** Delete: the record goes, and whatever bytes it still has (its stored file stays with `keepFile`). */
async function remove(ctx: Context, id: string, keepFile: boolean): Promise<UploadView> {
  const record = await recordOf(ctx, id)
  check('delete', record)
  // Only a completed upload's stored file is its own to keep.
  const keptFile = keepFile && isStored(record.status)
  // The bytes go first, the record after: storage that does not answer leaves both as they were (503, try
  // again), never a record gone with its object left in the bucket for good (a sweep looks at no completed
  // upload's object). Removing what is gone already succeeds, so the retry is safe. Anything else storage
  // says (a refusal, a disk's error) is logged, and the record goes all the same, as it always did.
  await ctx.storage.remove(record, keptFile ? 'bytes' : 'all').catch((error: unknown) => {
    if (error instanceof StorageUnavailable) throw storageError(error)
    log('warn', 'upload.cleanup_failed', { id, error })
  })
  await erase(ctx, id).catch((error: unknown) => {
    if (error instanceof ServiceError) throw error
    log('error', 'store.write_failed', { id, error })
    // Not guard's "nothing was changed": its bytes are gone (a download of a file removed says so: 410).
    const gone = keptFile ? 'working copies were' : 'file was'
    throw unavailable(
      `Upload ${id}'s ${gone} removed, but its record could not be (the server's state store failed); delete it again`,
      error,
    )
  })
  log('info', 'upload.deleted', { id, filename: record.filename, keptFile })
  // Live lists drop it without asking again.
  const view = viewOf(ctx, record)
  ctx.bus.publish({ ...view, removed: true })
  return view
}
