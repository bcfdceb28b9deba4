import { notFound, unavailable } from '../errors.js'
import type { UploadRecord, UploadStatus, UploadView } from '../model/record.js'
import type { Notifier } from '../hooks/notify.js'
import type { HooksConfig } from '../hooks/config.js'
import type { Bus } from '../seams/bus/index.js'
import type { Leases } from '../seams/leases/index.js'
import type { RecordStore } from '../seams/records/index.js'
import type { Storage, TransferMark } from '../seams/storage/index.js'
import type { Hold } from '../seams/storage/room.js'
import type { RunningHash } from './transfer/hasher.js'
import type { Transfer } from './transfer/transfer.js'
import type { ProgressFeed } from './transfer/progress.js'
import type { RateMeter } from './transfer/rate.js'
import type { Scheduler } from './transfer/scheduler.js'

/** A client call waits at most this long for an earlier call on the same upload, then gets 503. */
const LOCK_WAIT_MS = 10_000

/** One transfer run, from a start or resume to its pause, cancel, end or failure. */
export interface Run {
  transfer: Transfer
  controller: AbortController
  meter: RateMeter
  /** The record as the run started (IN_PROGRESS); the live byte count is `offset`. */
  record: UploadRecord
  offset: number
  updatedAt: string
  published: number
  checkpointed: number
  /** How many runs since the upload last started or resumed found their file changed behind them (see runs.ts). */
  rechecks: number
}

/**
 * sha256 of a transfer file's first `offset` bytes, carried across pauses so a resume need not re-read them:
 * trusted only while storage is still as the last run left it (`mark`; none while a run writes it).
 */
export interface PartHash {
  hash: RunningHash
  offset: number
  mark?: TransferMark
}

/**
 * Every transfer's PartHash. A hash may hold state on the hashing worker (and keeps it running), so one
 * removed or replaced here is let go there too; `take` hands one over to whoever digests it.
 */
export class PartHashes extends Map<string, PartHash> {
  override set(id: string, part: PartHash): this {
    const old = this.get(id)
    if (old && old.hash !== part.hash) old.hash.drop()
    return super.set(id, part)
  }

  override delete(id: string): boolean {
    this.get(id)?.hash.drop()
    return super.delete(id)
  }

  /** Removes the entry without letting its hash go: the caller now owns it. */
  take(id: string): PartHash | undefined {
    const part = this.get(id)
    super.delete(id)
    return part
  }
}

/** An upload still arriving here: its received byte count, and how to stop it (a cancel). */
export interface Arriving {
  received: () => number
  stop: (reason: Error) => void
  meter: RateMeter
  published: number
}

/**
 * What the core's pieces share, handed to each of them: the seams, the keyed lock, the live maps and the
 * service's flags. No piece keeps state of its own, and none reaches another through `this`.
 */
export interface Context {
  readonly store: RecordStore
  readonly storage: Storage
  readonly leases: Leases
  readonly bus: Bus
  /** Whether leases are shared with other instances (Redis), rather than all this process's. */
  readonly shared: boolean
  readonly feed: ProgressFeed
  /** Paces every transfer of this process, under the server-wide cap. */
  readonly scheduler: Scheduler
  readonly defaultSpeed: number
  /** HOOKS_URL's notifications: built with each state change that causes one (writes.ts); absent without hooks. */
  readonly notifier?: Notifier
  /** A resumable upload that receives no byte for this long is removed (RESUMABLE_EXPIRY). */
  readonly expiryMs: number
  readonly runs: Map<string, Run>
  readonly hashes: PartHashes
  readonly arriving: Map<string, Arriving>
  /** Room promised to each upload of this process until its transfer completes (or it ends otherwise). */
  readonly rooms: Map<string, Hold>
  /**
   * Arrivals undone whose record the store could not remove yet: gone for every client now (they were told
   * nothing was kept), removed from the store as soon as it takes writes, or by recovery at the next start
   * (shared: by whichever instance adopts it once nobody holds its lease, see recovery.ts).
   */
  readonly undone: Set<string>
  /** Runs that reached their end and are being completed (or failed): the byte count they reached. */
  readonly finishing: Map<string, number>
  /** Live figures of uploads that run elsewhere, from their owners' published states. */
  readonly remote: Map<string, { view: UploadView; at: number }>
  readonly locks: Map<string, Promise<unknown>>
  readonly state: { closed: boolean; recovered: boolean }
  /** The blocking hooks (gates.ts): HOOKS_*, and the address a path of this server is reached at. */
  readonly hooks?: Hooks
}

export interface Hooks {
  config: HooksConfig
  /** An absolute URL for a path of this server (PUBLIC_URL, or the address it listens on). */
  publicUrl: (path: string) => string
  /**
   * Whether a caller's Authorization header may go to pre-create (with HOOKS_FORWARD_AUTH): never the
   * operator's API_TOKEN, which the backend has no use for. Absent: every header may.
   */
  forwards?: (authorization: string) => boolean
}

/** Runs `task` after every earlier task on the same upload has settled. */
export function locked<T>(ctx: Context, id: string, task: () => Promise<T>): Promise<T> {
  const previous = ctx.locks.get(id) ?? Promise.resolve()
  const result = previous.then(task, task)
  const tail = result.catch(() => undefined)
  ctx.locks.set(id, tail)
  void tail.then(() => {
    if (ctx.locks.get(id) === tail) ctx.locks.delete(id)
  })
  return result
}

/** A client's call under the lock: refused fast (503) if the upload stays busy (a store that is down), never left hanging. */
export function lockedOrBusy<T>(ctx: Context, id: string, task: () => Promise<T>): Promise<T> {
  let started = false
  let timer: NodeJS.Timeout | undefined
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      if (!started) reject(unavailable(`Upload ${id} is busy; try again`))
    }, LOCK_WAIT_MS)
  })
  const run = locked(ctx, id, () => {
    if (timer === undefined) return Promise.reject(unavailable(`Upload ${id} is busy; try again`))
    started = true
    clearTimeout(timer)
    return task()
  })
  return Promise.race([run, timedOut]).finally(() => {
    clearTimeout(timer)
    timer = undefined
  })
}

/** Whatever room was promised to the upload is anyone's again (its bytes are written, or never will be). */
export function letGo(ctx: Context, id: string): void {
  ctx.rooms.get(id)?.release()
  ctx.rooms.delete(id)
}

export function assertOpen(ctx: Context): void {
  if (ctx.state.closed) throw unavailable('The server is shutting down')
}

/** The upload's record, or NOT_FOUND (an undone arrival is gone for every client). */
export async function recordOf(ctx: Context, id: string): Promise<UploadRecord> {
  const record = ctx.undone.has(id) ? undefined : await ctx.store.get(id)
  if (!record) throw notFound(id)
  return record
}

/** The records in `status`, a page at a time: 100k of them are never one answer. */
export async function* pages(ctx: Context, status: UploadStatus[]): AsyncGenerator<UploadRecord[]> {
  let after: string | undefined
  for (;;) {
    const page = await ctx.store.page({ status, first: 500, after })
    yield page.records
    if (!page.hasNextPage || !page.endCursor) return
    after = page.endCursor
  }
}
