import { badInput, ServiceError } from '../errors.js'
import type { Notifier } from '../hooks/notify.js'
import { log } from '../log.js'
import type { LiveState } from '../metrics.js'
import type { UploadRecord, UploadStatus, UploadView } from '../model/record.js'
import type { Limits } from '../seams/bus/index.js'
import type { Seams } from '../seams/index.js'
import type { PageQuery } from '../seams/records/index.js'
import { decodeCursor } from '../seams/records/order.js'
import { StorageUnavailable, type Leftover, type StoredReader } from '../seams/storage/index.js'
import type { Hold } from '../seams/storage/room.js'
import * as arrivals from './arrivals.js'
import * as commands from './commands.js'
import { PartHashes, recordOf, type Context, type Hooks } from './context.js'
import { storageError, type IncomingFile } from './ingest/ingest.js'
import { checkSpeed, ENDED, isFinal, isReceiving } from './machine.js'
import { sweep, type Sweeping } from './sweep.js'
import * as recovery from './recovery.js'
import { checkpoint, lost, publishProgress, stopRun } from './runs.js'
import { ProgressFeed } from './transfer/progress.js'
import { Scheduler } from './transfer/scheduler.js'
import { remember, viewOf } from './views.js'

/** Progress events: every running upload whose byte count moved is published this often (state changes go at once). */
const PROGRESS_EVERY_MS = 100
/** Running uploads' byte counts reach the record store about this often. */
const CHECKPOINT_EVERY_MS = 1000
/** With shared leases: how often running uploads that nobody owns (their instance died) are looked for. */
const ADOPT_EVERY_MS = 1000
/** Expired resumable uploads are looked for this often (at most; more often when they expire sooner). */
const EXPIRE_EVERY_MS = 60_000

export interface UploadServiceOptions {
  /**
   * What the service stands on, opened by openSeams in the mode the configuration names: where records live,
   * who owns which upload (leases), how states and commands travel (bus), and the bytes (storage).
   */
  seams: Pick<Seams, 'mode' | 'records' | 'leases' | 'bus' | 'storage'>
  defaultSpeed: number
  /** Bytes per second for all transfers of this process together, shared fairly; 0 (default): no cap. */
  maxTotalSpeed?: number
  /** A resumable upload that receives no byte for this long is removed (RESUMABLE_EXPIRY); default 24 h. */
  resumableExpiryMs?: number
  /** The hooks' notifications (HOOKS_URL): written with the changes that cause them. Absent: none. */
  notifier?: Notifier
  /** The blocking hooks (HOOKS_URL): pre-create and pre-finish are asked (see gates.ts). */
  hooks?: Hooks
  /** How often storage is swept of what no unfinished upload owns (see sweep.ts); none: only at start-up. */
  sweepEveryMs?: number
}

export interface UploadPage {
  uploads: UploadView[]
  hasNextPage: boolean
  endCursor: string | null
}

/**
 * The uploads' one owner, and the face the transports talk to. Every upload follows the machine
 * (machine.ts): RECEIVING → IN_PROGRESS ⇄ PAUSED → COMPLETED | CANCELED | FAILED, and RECEIVING → CANCELED |
 * FAILED (or forgotten). Records change only through the record store, and a change is durable there before
 * anyone sees it: before the call that made it returns, before it is published, before memory holds it.
 * Calls on the same upload run one at a time (a per-upload lock), so racing clients see one consistent
 * order. The work is done by arrivals, commands, runs and recovery over one shared context; this class
 * holds the timers and answers the queries.
 */
export class UploadService {
  readonly feed = new ProgressFeed()
  private readonly ctx: Context
  private readonly ticker: NodeJS.Timeout
  private readonly checkpointer: NodeJS.Timeout
  private readonly checkpoints = { failing: false }
  private adopter: NodeJS.Timeout | undefined
  private readonly adoption = { adopting: false }
  private readonly expirer: NodeJS.Timeout
  private readonly expiry = { expiring: false }
  private readonly sweeper: NodeJS.Timeout | undefined
  private readonly sweeping: Sweeping = { busy: false, seen: new Set() }
  private recovering: Promise<void> = Promise.resolve()

  constructor(options: UploadServiceOptions) {
    const { leases, bus } = options.seams
    const ctx: Context = {
      store: options.seams.records,
      storage: options.seams.storage,
      leases,
      bus,
      shared: options.seams.mode === 'shared',
      feed: this.feed,
      scheduler: new Scheduler(options.maxTotalSpeed ?? 0),
      defaultSpeed: options.defaultSpeed,
      ...(options.notifier ? { notifier: options.notifier } : {}),
      expiryMs: options.resumableExpiryMs ?? 24 * 3_600_000,
      runs: new Map(),
      hashes: new PartHashes(),
      arriving: new Map(),
      rooms: new Map(),
      undone: new Set(),
      finishing: new Map(),
      remote: new Map(),
      locks: new Map(),
      state: { closed: false, recovered: true },
      ...(options.hooks ? { hooks: options.hooks } : {}),
    }
    this.ctx = ctx
    bus.onState((view, local) => {
      if (!local) remember(ctx, view)
      this.feed.publish(view)
    })
    bus.onCommand((command) => commands.answerForwarded(ctx, command))
    bus.onLimits(({ maxTotalSpeed }) => {
      ctx.scheduler.setCap(maxTotalSpeed)
      log('info', 'limits.changed', { maxTotalSpeed })
    })
    leases.onLost((id) => void lost(ctx, id))
    this.ticker = setInterval(() => publishProgress(ctx), PROGRESS_EVERY_MS).unref()
    this.checkpointer = setInterval(() => void checkpoint(ctx, this.checkpoints), CHECKPOINT_EVERY_MS).unref()
    const every = Math.min(EXPIRE_EVERY_MS, Math.max(ctx.expiryMs / 4, 100))
    this.expirer = setInterval(() => void arrivals.expire(ctx, this.expiry), every).unref()
    if (options.sweepEveryMs !== undefined)
      this.sweeper = setInterval(() => void sweep(ctx, this.sweeping), options.sweepEveryMs).unref()
  }

  /** What the metrics gauges read when scraped. */
  readonly liveState: LiveState = {
    countByStatus: () => this.ctx.store.countByStatus(),
    activeTransfers: () => this.ctx.runs.size,
    subscriptions: () => this.feed.subscriberCount,
    slowConsumersClosed: () => 0,
  }

  // ---- start-up ------------------------------------------------------------------------------------------

  /**
   * After a restart, once this process holds the folder and serves requests: removes `orphans` (decided
   * before serving anyone, see Storage.leftovers) and carries on every unfinished upload from the bytes on
   * disk (see recovery.ts). Shared, it then keeps adopting running uploads whose instance died.
   */
  recover(orphans: readonly Leftover[]): Promise<void> {
    const { ctx } = this
    ctx.state.recovered = false
    this.recovering = (async () => {
      if ((await recovery.recover(ctx, orphans)) !== 'adopt') return
      this.adopter = setInterval(() => void recovery.adopt(ctx, this.adoption), ADOPT_EVERY_MS).unref()
      await recovery.adopt(ctx, this.adoption)
    })().finally(() => (ctx.state.recovered = true))
    return this.recovering
  }

  // ---- queries -------------------------------------------------------------------------------------------

  async get(id: string): Promise<UploadView> {
    return viewOf(this.ctx, await recordOf(this.ctx, id))
  }

  async page(query: PageQuery): Promise<UploadPage> {
    if (query.after !== undefined && decodeCursor(query.after) === undefined)
      throw badInput(
        `after must be the cursor of an upload from this server; got ${JSON.stringify(query.after.slice(0, 80))}`,
      )
    const page = await this.ctx.store.page(query)
    // An undone arrival may leave a page one short; its cursor still says where the next one starts.
    const records = page.records.filter((record) => !this.ctx.undone.has(record.id))
    return {
      uploads: records.map((record) => viewOf(this.ctx, record)),
      hasNextPage: page.hasNextPage,
      endCursor: page.endCursor,
    }
  }

  async counts(): Promise<{
    total: number
    receiving: number
    inProgress: number
    paused: number
    completed: number
    canceled: number
    failed: number
  }> {
    const by = await this.ctx.store.countByStatus()
    const of = (status: UploadStatus) => by[status] ?? 0
    const counts = {
      receiving: Math.max(0, of('RECEIVING') - this.ctx.undone.size),
      inProgress: of('IN_PROGRESS'),
      paused: of('PAUSED'),
      completed: of('COMPLETED'),
      canceled: of('CANCELED'),
      failed: of('FAILED'),
    }
    return { total: Object.values(counts).reduce((a, b) => a + b, 0), ...counts }
  }

  /** DEFAULT_UPLOAD_SPEED: what an upload that names no speed gets. */
  get defaultSpeed(): number {
    return this.ctx.defaultSpeed
  }

  limits(): Limits {
    return { maxTotalSpeed: this.ctx.scheduler.maxTotalSpeed }
  }

  /**
   * A new cap on the speed of all transfers together (0: none), shared max-min fairly among them; every
   * instance applies it at once. It holds until the next start (MAX_TOTAL_SPEED sets it then).
   */
  setMaxTotalSpeed(speed: number): Limits {
    checkSpeed(speed)
    this.ctx.bus.publishLimits({ maxTotalSpeed: speed })
    return this.limits()
  }

  /** Live states of one upload, or of every upload when `id` is undefined (starting with the unfinished ones). */
  async watch(id?: string): Promise<AsyncIterableIterator<UploadView>> {
    const { ctx } = this
    if (id !== undefined) await recordOf(ctx, id)
    return this.feed.follow(id, async () =>
      id !== undefined
        ? [await this.get(id)]
        : (await ctx.store.unfinished())
            .filter((record) => !ctx.undone.has(record.id))
            .map((record) => viewOf(ctx, record)),
    )
  }

  /**
   * Of an upload's uploadedSize, the bytes storage has acknowledged as kept (see Storage.acknowledgedOf):
   * what a pause, a crash or an adoption goes on from at least. None while it is still arriving.
   */
  acknowledgedSize(view: UploadView): number {
    if (isReceiving(view.status)) return 0
    return this.ctx.storage.acknowledgedOf(view, view.uploadedSize)
  }

  /**
   * An upload's stored file, open for a download (ranges are read from it): rejects with StoredFileMissing
   * when storage has none, with UNAVAILABLE (503, try again) when storage does not answer. Whether the
   * upload is complete is the caller's to have checked.
   */
  async openStored(id: string): Promise<StoredReader> {
    const record = await recordOf(this.ctx, id)
    try {
      return await this.ctx.storage.openStored(record)
    } catch (error) {
      throw error instanceof StorageUnavailable ? storageError(error) : error
    }
  }

  /**
   * Where a client may fetch an upload's stored file from storage itself (a presigned GET, when the operator
   * turned that on), or undefined: it is streamed through this server.
   */
  async downloadLocation(id: string): Promise<string | undefined> {
    const record = await recordOf(this.ctx, id)
    return this.ctx.storage.downloadUrl?.(record, record.filename)
  }

  /** Why the service cannot take uploads now, or undefined when it can: open, and its storage writable. */
  async notReady(): Promise<string | undefined> {
    if (this.ctx.state.closed) return 'shutting down'
    if (!this.ctx.state.recovered) return 'recovering the uploads of the last run'
    return this.ctx.storage.writable()
  }

  // ---- arrivals (see arrivals.ts) ------------------------------------------------------------------------

  /**
   * `owner`: a token's `sub`, or null (the operator's); who may reach it is decided above (core/owned.ts).
   * `recording` wraps the step that puts it on record (see arrivals.create): an owner's quota admission.
   */
  create(
    file: IncomingFile,
    speed?: number | null,
    owner: string | null = null,
    recording?: arrivals.Recording,
    claimedSize?: number,
    holdSpeed?: (approved: number) => number,
  ): Promise<UploadView> {
    return arrivals.create(this.ctx, file, speed, owner, recording, claimedSize, holdSpeed)
  }

  /**
   * Runs `task` while no other admission of `owner`'s runs, at this instance or any other (Leases.exclusive):
   * counting what they hold, checking it against their quotas and putting the new upload on record is one step.
   */
  admitting<T>(owner: string, task: () => Promise<T>): Promise<T> {
    return this.ctx.leases.exclusive(`owner:${owner}`, task, {
      busy: 'Your other uploads are being admitted and this one could not wait its turn; nothing was stored, try again',
    })
  }

  createResumable(input: {
    id: string
    filename: string
    size: number
    speed?: number | null
    metadata?: Record<string, string>
    owner?: string | null
  }): Promise<UploadView> {
    return arrivals.createResumable(this.ctx, input)
  }

  /** A tus creation whose request failed after it was recorded: forgotten (see arrivals.abandonResumable). */
  abandonResumable(id: string, reason: string): Promise<void> {
    return arrivals.abandonResumable(this.ctx, id, reason)
  }

  /** The pre-create hook's verdict on a tus creation (gates.ts): what to create, or the refusal thrown. */
  approveResumable(
    proposal: Parameters<typeof arrivals.approveResumable>[1],
  ): ReturnType<typeof arrivals.approveResumable> {
    return arrivals.approveResumable(this.ctx, proposal)
  }

  beginReceiving(
    id: string,
    offset: number,
    stop: (reason: Error) => void,
  ): Promise<{ count: (n: number) => void; record: UploadRecord; room: Hold }> {
    return arrivals.beginReceiving(this.ctx, id, offset, stop)
  }

  endReceiving(id: string, received: number, sha256?: string, bytes?: Buffer): Promise<UploadView> {
    return arrivals.endReceiving(this.ctx, id, received, sha256, bytes)
  }

  /**
   * Whether an upload whose whole body arrives in memory would be stored from there at once (see
   * arrivals.wholeStore); if not, its bytes go to staging as they come.
   */
  storesWhole(record: UploadRecord): boolean {
    return arrivals.wholeStore(this.ctx, record) !== undefined
  }

  // ---- commands (see commands.ts) ------------------------------------------------------------------------

  pause(id: string): Promise<UploadView> {
    return commands.dispatch(this.ctx, { op: 'pause', id })
  }

  resume(id: string, speed?: number | null): Promise<UploadView> {
    if (speed != null) checkSpeed(speed)
    return commands.dispatch(this.ctx, { op: 'resume', id, speed: speed ?? null })
  }

  /** A new speed for a running upload (taken within one chunk, no pause) or a paused one (kept for its resume). */
  setSpeed(id: string, speed: number): Promise<UploadView> {
    checkSpeed(speed)
    return commands.dispatch(this.ctx, { op: 'setSpeed', id, speed })
  }

  cancel(id: string): Promise<UploadView> {
    return commands.dispatch(this.ctx, { op: 'cancel', id })
  }

  /**
   * Removes an ended upload's record and whatever bytes it still has (its stored file stays with
   * `keepFile`); answers with the record as it was.
   */
  delete(id: string, keepFile = false): Promise<UploadView> {
    return commands.dispatch(this.ctx, { op: 'delete', id, keepFile })
  }

  /** Deletes every ended upload in `statuses`, a page at a time; answers with how many went. */
  async clear(statuses: readonly UploadStatus[] = ENDED, keepFiles = false): Promise<number> {
    const running = statuses.filter((status) => !isFinal(status))
    if (running.length > 0) throw badInput(`only ended uploads can be cleared; not ${running.join(', ')}`)
    let removed = 0
    for (;;) {
      // Always the first page: what was deleted is gone from it, and one that ended meanwhile joins in.
      const { records } = await this.ctx.store.page({ status: [...statuses], first: 500 })
      if (records.length === 0) return removed
      for (const record of records) {
        await this.delete(record.id, keepFiles).then(
          () => removed++,
          (error: unknown) => {
            if (!(error instanceof ServiceError && error.code === 'NOT_FOUND')) throw error
          },
        )
      }
    }
  }

  /**
   * Stops every transfer after its chunk in flight and saves where each one got to. Their records stay
   * IN_PROGRESS, so the next start carries them on.
   */
  async close(): Promise<void> {
    const { ctx } = this
    ctx.state.closed = true
    clearInterval(this.ticker)
    clearInterval(this.checkpointer)
    clearInterval(this.expirer)
    clearInterval(this.sweeper)
    this.feed.close()
    await this.recovering.catch(() => undefined)
    const stopped = await Promise.all(
      [...ctx.runs.values()].map(async (run) => ({ run, offset: await stopRun(ctx, run.record.id) })),
    )
    clearInterval(this.adopter)
    await ctx.store
      .progress(
        stopped.map(({ run, offset }) => ({
          id: run.record.id,
          uploadedSize: offset,
          updatedAt: new Date().toISOString(),
          fence: ctx.leases.held(run.record.id)?.value,
        })),
      )
      .catch((error: unknown) => log('error', 'upload.checkpoint_failed', { error }))
    // Handed back at once, so another instance carries them on now rather than when the leases run out.
    await Promise.all(stopped.map(({ run }) => ctx.leases.release(run.record.id).catch(() => undefined)))
  }
}
