import { finished } from 'node:stream/promises'
import { faultReason, publicMessage, ServiceError, unavailable } from '../errors.js'
import { wants } from '../hooks/config.js'
import { log } from '../log.js'
import { stored } from '../metrics.js'
import type { UploadRecord, UploadView } from '../model/record.js'
import type { Storage } from '../seams/storage/index.js'
import type { Hold } from '../seams/storage/room.js'
import { RequestEnded, storageError, type IncomingFile, type StagedFile } from './ingest/ingest.js'
import { assertOpen, letGo, locked, pages, recordOf, type Context } from './context.js'
import {
  arrived,
  check,
  checkSpeed,
  completed,
  expired,
  isGone,
  isReceiving,
  newRecord,
  receivedMore,
  roomFor,
  STILL_RECEIVING,
} from './machine.js'
import { askPreCreate, type Approved, type Proposal } from './gates.js'
import { fail, startTransfer } from './runs.js'
import { RateMeter } from './transfer/rate.js'
import { viewOf } from './views.js'
import { announce, forget, guard, publish, releaseIfIdle, save } from './writes.js'

/**
 * A body arriving: over one multipart request (create), or over tus requests (createResumable, then each
 * request between beginReceiving and endReceiving), and the expiry of a tus upload whose sender went quiet.
 */

/**
 * Why a body did not arrive, said for the upload's watchers. The request's edge logs a server error, with
 * its request id; here it is only told.
 */
function arrivalFailure(error: unknown): string {
  if (error instanceof RequestEnded)
    return 'The connection closed before the whole file arrived; send it again'
  return publicMessage(error)
}

const expiresFrom = (ctx: Context, at: number): string => new Date(at + ctx.expiryMs).toISOString()

/**
 * Wraps the step of a multipart creation that lets its bytes in and puts it on record: it may refuse (its
 * owner's quota, asked under their lock) before either happens, and holds what it wraps until it is on record.
 */
export type Recording = (record: () => Promise<void>) => Promise<void>

const directly: Recording = (record) => record()

/**
 * Checks the speed before anything else, so a bad one is refused before the file's bytes are read; then
 * waits for the file, records the upload and starts its transfer. Answers once the file has arrived.
 */
export async function create(
  ctx: Context,
  file: IncomingFile,
  speed?: number | null,
  owner: string | null = null,
  recording: Recording = directly,
  /** What a stored-bytes quota counts it as until it has arrived: its request's Content-Length. */
  claimedSize?: number,
  /** What becomes of the speed the pre-create hook answered (its owner's cap holds it). */
  holdSpeed: (approved: number) => number = (approved) => approved,
): Promise<UploadView> {
  const targetSpeed = checkSpeed(speed ?? ctx.defaultSpeed)
  assertOpen(ctx)
  await file.began
  assertOpen(ctx)
  // Named by its body's first byte (see IncomingFile.id): storage stages it under its upload's id from then.
  const id = file.id
  // The hook decides before anything is recorded, and before a byte of the file is read (it waits unread
  // in the request until approve(); a refusal leaves it there, and the request's end discards it).
  const approved = await askPreCreate(ctx, {
    id,
    filename: file.filename,
    size: null,
    speed: targetSpeed,
    metadata: {},
    ...(file.caller ? { caller: file.caller } : {}),
    owner,
  })
  const receiving = newRecord({
    id,
    filename: approved.filename,
    source: 'multipart',
    size: 0,
    targetSpeed: holdSpeed(approved.speed),
    expiresAt: null,
    metadata: approved.metadata,
    owner,
    ...(claimedSize === undefined ? {} : { claimedSize }),
  })
  // Recorded as it begins to arrive, so lists and subscribers see it (and its receivedSize grow), and a
  // cancel can stop it. The lock is not held meanwhile: the body may take hours.
  await recording(async () => {
    // Its bytes may come now, while it is recorded (as they always did without a hook).
    file.approve()
    assertOpen(ctx)
    await locked(ctx, id, async () => {
      // Whoever creates an upload runs it: its lease first, so every write below is under it.
      if (!(await guard(() => ctx.leases.acquire(id))))
        throw unavailable(`Upload ${id} could not be started; try again`)
      await save(ctx, receiving).catch(async (error: unknown) => {
        await ctx.leases.release(id)
        throw error
      })
      ctx.arriving.set(id, {
        received: () => file.received,
        stop: (reason) => file.abort(reason),
        meter: new RateMeter(),
        published: -1,
      })
      announce(ctx, receiving, 'upload.receiving')
    })
  })
  let staged: StagedFile
  try {
    staged = await file.arrived
  } catch (error) {
    await locked(ctx, id, () => forget(ctx, id, arrivalFailure(error), file.received)).catch(
      (failure: unknown) => log('error', 'upload.cleanup_failed', { id, error: failure }),
    )
    throw error
  }
  return locked(ctx, id, () => arrive(ctx, id, staged))
}

/** A multipart body is whole in its incoming file: into staging, and its transfer starts. */
async function arrive(ctx: Context, id: string, staged: StagedFile): Promise<UploadView> {
  ctx.arriving.delete(id)
  const current = await recordOf(ctx, id)
  try {
    check('arrive', current)
  } catch (error) {
    await ctx.leases.release(id)
    throw error
  }
  // Recorded first (RECEIVING): a crash before it is recorded as arrived leaves a record that the next
  // start forgets, with its bytes, never bytes that no record owns. Its second copy's room was promised
  // as it arrived (see ingest.ts); it is this upload's now.
  try {
    const { bytes } = staged
    const store = bytes && wholeStore(ctx, current)
    if (bytes && store) {
      const taken = () => {
        staged.stored?.()
        ctx.rooms.set(id, staged.room)
      }
      const view = await storeWhole(ctx, current, { bytes, sha256: staged.sha256, taken }, store)
      if (view) return view
    }
    await staged.keep()
    ctx.rooms.set(id, staged.room)
    return await startTransfer(ctx, current, staged.size, staged.sha256)
  } catch (error) {
    // Not on record as arrived (the store refused it, say): its client hears it was not taken, so
    // nothing of it is kept, neither its record nor its bytes.
    const reason =
      error instanceof RequestEnded
        ? error.message
        : `The received file could not be kept: ${faultReason(error, 'upload.keep_failed', { id })}`
    await forget(ctx, id, reason, staged.size)
    throw error
  }
}

/**
 * How a whole body held in memory is stored at once, when nothing would pace its transfer (no speed of its
 * own, no server-wide cap) and no pre-finish hook asks to read it first; undefined: it is staged and
 * transferred.
 */
export function wholeStore(ctx: Context, record: UploadRecord): Storage['storeWhole'] {
  if (record.targetSpeed !== 0 || ctx.scheduler.maxTotalSpeed !== 0) return undefined
  if (wants(ctx.hooks?.config, 'pre-finish')) return undefined
  return ctx.storage.storeWhole?.bind(ctx.storage)
}

/**
 * A small body stored from memory, the way a transfer ends, in an order a crash at any point recovers from:
 * put in place first (durable), while its record still says RECEIVING (a crash then leaves a file that the
 * end of a RECEIVING upload takes away: it is forgotten, canceled or expires with all of its bytes); then
 * recorded COMPLETED, in one write (its request is answered only after it).
 * A full disk, or storage away, changes nothing on record and is said as such (507, 503), as when a body is
 * staged. Any other fault of storage answers undefined: the caller stages it and transfers it as usual, so
 * the fault is met where it always was, and told as it always was (a FAILED upload with its reason). `taken`
 * claims its bytes and their room first.
 */
async function storeWhole(
  ctx: Context,
  current: UploadRecord,
  whole: { bytes: Buffer; sha256: string; taken(): void },
  store: NonNullable<Storage['storeWhole']>,
): Promise<UploadView | undefined> {
  const record = arrived(current, whole.bytes.length, whole.sha256)
  whole.taken()
  try {
    await store(record, whole.bytes)
  } catch (error) {
    const said = error instanceof Error ? storageError(error) : error
    if (said !== error) throw said
    log('warn', 'upload.store_whole_failed', { id: record.id, error })
    return undefined
  }
  // One write, from RECEIVING to COMPLETED, the one change of state its watchers hear of (hooks: received,
  // then completed). A store that cannot take it leaves it RECEIVING, as a refused store above: multipart
  // forgets it, file and all, and answers 503; a tus upload waits for its sender, and its file in place goes
  // when it is sent again (overwritten), canceled or expires.
  const done = completed(record)
  await save(ctx, done)
  stored.bytes += record.totalSize
  announce(ctx, done, 'upload.completed')
  await releaseIfIdle(ctx, record.id)
  return viewOf(ctx, done)
}

/** A resumable upload's bytes from its first, held in memory by the request that brought them, staged. */
async function stageHeld(ctx: Context, id: string, bytes: Buffer): Promise<void> {
  try {
    const staging = await ctx.storage.append(id, 0)
    staging.sink.end(bytes)
    await finished(staging.sink)
  } catch (error) {
    throw error instanceof Error ? storageError(error) : error
  }
}

/**
 * A resumable upload announced by its sender (tus creation): on record, RECEIVING, before any byte of it
 * is stored. Its bytes then arrive over as many requests as it takes, each one between beginReceiving and
 * endReceiving; it expires RESUMABLE_EXPIRY after its last byte.
 */
export async function createResumable(
  ctx: Context,
  input: {
    id: string
    filename: string
    size: number
    speed?: number | null
    /** What its pre-create hook asked to keep (see approveResumable). */
    metadata?: Record<string, string>
    /** A token's `sub`; null: the operator's. */
    owner?: string | null
  },
): Promise<UploadView> {
  const targetSpeed = checkSpeed(input.speed ?? ctx.defaultSpeed)
  assertOpen(ctx)
  const { id, filename, size } = input
  const record = newRecord({
    id,
    filename,
    source: 'tus',
    size,
    targetSpeed,
    expiresAt: expiresFrom(ctx, Date.now()),
    metadata: input.metadata ?? {},
    owner: input.owner ?? null,
  })
  // Refused now if it cannot fit; its room is promised only when its bytes come (beginReceiving).
  await ctx.storage.room.check(roomFor(size))
  return locked(ctx, id, async () => {
    if (!(await guard(() => ctx.leases.acquire(id))))
      throw unavailable(`Upload ${id} could not be created; try again`)
    try {
      await save(ctx, record)
    } finally {
      if (ctx.shared) await ctx.leases.release(id).catch(() => undefined)
    }
    return announce(ctx, record, 'upload.receiving')
  })
}

/**
 * A tus creation refused after its upload was recorded (a body longer than it said, a full disk): its sender
 * never heard where the upload is, so nobody can resume it. It is forgotten,
 * bytes and all, as a multipart body that never arrived is, so the refusal it was answered leaves nothing
 * behind (nor anything counted against its owner's quotas). Left as it is if it is past receiving, or held
 * by another instance (its expiry takes it).
 */
export async function abandonResumable(ctx: Context, id: string, reason: string): Promise<void> {
  await locked(ctx, id, async () => {
    const current = await ctx.store.get(id)
    if (!current || current.source !== 'tus' || !isReceiving(current.status)) return
    if (!(await guard(() => ctx.leases.acquire(id)))) return
    await forget(ctx, id, reason, current.receivedSize)
  })
}

/**
 * A tus creation, asked of the pre-create hook before anything of it is stored (tus calls this from
 * onUploadCreate, where the request is at hand; createResumable follows with what it answered).
 */
export function approveResumable(
  ctx: Context,
  proposal: Omit<Proposal, 'speed'> & { speed?: number | null },
): Promise<Approved> {
  return askPreCreate(ctx, { ...proposal, speed: checkSpeed(proposal.speed ?? ctx.defaultSpeed) })
}

/**
 * A request carrying more of a resumable upload begins at byte `offset`. While it lasts this process
 * holds the upload, so a cancel sent anywhere reaches it and `stop`s the request, and its receivedSize
 * is followed live. Answers with the function that counts bytes as they arrive.
 */
export async function beginReceiving(
  ctx: Context,
  id: string,
  offset: number,
  stop: (reason: Error) => void,
): Promise<{ count: (n: number) => void; record: UploadRecord; room: Hold }> {
  return locked(ctx, id, async () => {
    const record = await recordOf(ctx, id)
    check('receive', record)
    assertOpen(ctx)
    // The rest of it, and its second copy: promised now, or refused (507) before a byte of it is read. It
    // stays as it was, so its sender can send the rest once there is room.
    const room = await ctx.storage.room.grant(roomFor(record.totalSize, offset))
    try {
      if (!ctx.leases.held(id) && !(await guard(() => ctx.leases.acquire(id))))
        throw unavailable(`Upload ${id} is receiving bytes at another instance; try again`)
    } catch (error) {
      room.release()
      throw error
    }
    letGo(ctx, id)
    ctx.rooms.set(id, room)
    let received = offset
    ctx.arriving.set(id, { received: () => received, stop, meter: new RateMeter(), published: -1 })
    return { record, room, count: (n) => void (received += n) }
  })
}

/**
 * The request that began at beginReceiving ended (its piece is in, or its sender went away): the bytes
 * that reached the disk (`received` in all) are kept and counted, and it expires RESUMABLE_EXPIRY from
 * now. With every byte in, and their sha256, its transfer starts.
 */
export async function endReceiving(
  ctx: Context,
  id: string,
  received: number,
  sha256?: string,
  /**
   * The request's bytes, from the first, held in memory instead of staged (it asked `wholeStore` first):
   * stored at once if they are all of it, else staged here.
   */
  bytes?: Buffer,
): Promise<UploadView> {
  return locked(ctx, id, async () => {
    ctx.arriving.delete(id)
    try {
      const current = await recordOf(ctx, id)
      // Canceled (or expired) while it arrived: its bytes are gone, and so is the upload for its sender. Its
      // first request may have made its staged file after the cancel took its bytes away: that goes too.
      if (isGone(current.status))
        await ctx.storage
          .remove(current, 'staged')
          .catch((error: unknown) => log('warn', 'upload.cleanup_failed', { id, error }))
      check('receive', current)
      // The staging copy is whole where the transfer reads it. If it cannot start, it is not on record as
      // arrived: it stays RECEIVING, its bytes whole in staging, where its sender's next request (or the
      // next start) finds them and tries again.
      if (bytes) {
        const store = bytes.length === current.totalSize ? wholeStore(ctx, current) : undefined
        const view =
          store && sha256 !== undefined
            ? await storeWhole(ctx, current, { bytes, sha256, taken: () => undefined }, store)
            : undefined
        // Nothing of it was staged: no request of it at offset 0 leaves a staged file without a byte in it
        // (see TusStore.write). Only an upload created by an older version has an empty one from its
        // creation; the next start sweeps it.
        if (view) return view
        // Cut short, given a speed or a cap while it arrived, or refused whole by storage: staged, as any
        // request's bytes are, and on from there.
        if (bytes.length > 0) await stageHeld(ctx, id, bytes)
      }
      if (received === current.totalSize && sha256 !== undefined)
        return await startTransfer(ctx, current, received, sha256)
      const next = receivedMore(current, received, expiresFrom(ctx, Date.now()))
      try {
        await save(ctx, next)
      } catch (error) {
        // Its bytes are kept on disk whatever the store says, and its offset is read from there (by its
        // sender's next request, and by the next start): "nothing was changed" would be untrue. Only the
        // record's count and expiry lag until the store takes writes again.
        if (!(error instanceof ServiceError && error.code === 'UNAVAILABLE')) throw error
        log('warn', 'upload.receipt_unsaved', { id, receivedSize: received })
      }
      return publish(ctx, next)
    } finally {
      // However the request ended (idle until its sender's next one, which asks for room again; refused;
      // a store that could not be read), nothing arrives here now: unless its transfer runs here, there is
      // nothing to hold its room or its lease for.
      await releaseIfIdle(ctx, id)
    }
  })
}

/**
 * Resumable uploads whose sender has sent nothing for RESUMABLE_EXPIRY end FAILED, with the reason, and
 * their bytes go. With several instances, whoever takes an upload's lease first expires it.
 */
export async function expire(ctx: Context, busy: { expiring: boolean }): Promise<void> {
  if (busy.expiring || ctx.state.closed || !ctx.state.recovered) return
  busy.expiring = true
  try {
    const at = new Date().toISOString()
    for await (const records of pages(ctx, STILL_RECEIVING)) {
      for (const record of records) {
        if (
          record.source !== 'tus' ||
          record.expiresAt === null ||
          record.expiresAt > at ||
          ctx.arriving.has(record.id)
        )
          continue
        // Shared: skipped if this instance holds it (a request of it under way here) or another does.
        if (ctx.shared && (ctx.leases.held(record.id) || !(await ctx.leases.acquire(record.id)))) continue
        await locked(ctx, record.id, async () => {
          const current = await ctx.store.get(record.id)
          // A request of it may have begun since it was listed: then it is not idle.
          if (
            ctx.arriving.has(record.id) ||
            !current ||
            !isReceiving(current.status) ||
            current.expiresAt === null ||
            current.expiresAt > at
          )
            return
          const hours = ctx.expiryMs / 3_600_000
          const period = hours >= 1 ? `${+hours.toFixed(2)} h` : `${+(ctx.expiryMs / 1000).toFixed(3)} s`
          const reason = `Expired: no byte arrived for ${period} (RESUMABLE_EXPIRY); send the file again`
          await fail(ctx, current, reason, expired(current, reason))
        }).finally(() => ctx.leases.release(record.id).catch(() => undefined))
      }
    }
  } catch (error) {
    log('warn', 'upload.expiry_paused', { error })
  } finally {
    busy.expiring = false
  }
}
