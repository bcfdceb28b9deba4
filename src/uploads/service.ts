import { createHash, randomUUID, type Hash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { badInput, faultReason, notFound, publicMessage, ServiceError, stateError, unavailable } from '../errors.js'
import { log } from '../log.js'
import { stored, type LiveState } from '../metrics.js'
import { LocalBus, type Bus, type Command, type Limits, type Outcome } from './bus.js'
import { RequestEnded, type IncomingFile, type StagedFile } from './ingest.js'
import { LocalLeases, type Leases } from './lease.js'
import { ProgressFeed } from './progress.js'
import { RateMeter } from './rate.js'
import { isFinal, type UploadRecord, type UploadSource, type UploadStatus, type UploadView } from './record.js'
import { decodeCursor, FencedError, type PageQuery, type RecordStore } from './records.js'
import { roomFor, type Hold } from '../seams/storage/room.js'
import { storedNameFor, type Storage } from './storage.js'
import { Scheduler } from './scheduler.js'
import type { FileStamp } from '../seams/storage/stamp.js'
import { LeaseLostError, TargetChangedError, Transfer } from './transfer.js'

/** Progress events: every running upload whose byte count moved is published this often (state changes go at once). */
const PROGRESS_EVERY_MS = 100
/** Running uploads' byte counts reach the record store about this often. */
const CHECKPOINT_EVERY_MS = 1000
/** A client call waits at most this long for an earlier call on the same upload, then gets 503. */
const LOCK_WAIT_MS = 10_000
/** With shared leases: how often running uploads that nobody owns (their instance died) are looked for. */
const ADOPT_EVERY_MS = 1000
/** Expired resumable uploads are looked for this often (at most; more often when they expire sooner). */
const EXPIRE_EVERY_MS = 60_000
/** A state heard from another instance is trusted for a running upload's live figures this long. */
const REMOTE_FRESH_MS = 3000

export interface UploadServiceOptions {
  store: RecordStore
  storage: Storage
  defaultSpeed: number
  /**
   * Given for an instance among several (REDIS_URL): who owns which upload (leases), and how states and
   * commands travel between the instances (bus). Absent, this process is alone and owns everything. Its
   * presence alone makes the service shared, whatever the instance is called.
   */
  shared?: { leases: Leases; bus: Bus }
  /** Bytes per second for all transfers of this process together, shared fairly; 0 (default): no cap. */
  maxTotalSpeed?: number
  /** A resumable upload that receives no byte for this long is removed (RESUMABLE_EXPIRY); default 24 h. */
  resumableExpiryMs?: number
}

export interface UploadPage {
  uploads: UploadView[]
  hasNextPage: boolean
  endCursor: string | null
}

/** One transfer run, from a start or resume to its pause, cancel, end or failure. */
interface Run {
  transfer: Transfer
  controller: AbortController
  meter: RateMeter
  /** The record as the run started (IN_PROGRESS); the live byte count is `offset`. */
  record: UploadRecord
  offset: number
  updatedAt: string
  published: number
  checkpointed: number
  /** How many runs since the upload last started or resumed found their file changed behind them (see MAX_RECHECKS). */
  rechecks: number
}

/**
 * sha256 of a transfer file's first `offset` bytes, carried across pauses so a resume need not re-read them:
 * trusted only while the file is still as the last run left it (`stamp`; none while a run writes it).
 */
interface PartHash {
  hash: Hash
  offset: number
  stamp?: FileStamp
}

/**
 * A run that finds its file changed behind it goes on from what verifies, at most this many times since the
 * upload last started or resumed (progress in between does not reset the count), then fails.
 */
const MAX_RECHECKS = 3

const now = () => new Date().toISOString()

/**
 * A write nobody waits for, tried until `attempt` says it is done (true) or moot (undefined), waiting
 * longer after each false (250 ms, doubling, at most 5 s), and not once `stopped`. True only if done.
 */
async function retrying(stopped: () => boolean, attempt: () => Promise<boolean | undefined>, waitFirst: boolean): Promise<boolean> {
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
 * Why a body did not arrive, said for the upload's watchers. The request's edge logs a server error, with
 * its request id; here it is only told.
 */
function arrivalFailure(error: unknown): string {
  if (error instanceof RequestEnded) return 'The connection closed before the whole file arrived; send it again'
  return publicMessage(error)
}

/** An upload on record from its first moment: RECEIVING, nothing of it arrived or stored yet. */
function newRecord(input: {
  id: string
  filename: string
  source: UploadSource
  /** Its length when known up front (tus); 0 until it has arrived otherwise. */
  size: number
  targetSpeed: number
  expiresAt: string | null
}): UploadRecord {
  const at = now()
  const { id, filename, source, size, targetSpeed, expiresAt } = input
  return {
    id,
    filename,
    storedName: storedNameFor(id, filename),
    status: 'RECEIVING',
    receivedSize: 0,
    source,
    expiresAt,
    receivedAt: null,
    uploadedSize: 0,
    totalSize: size,
    targetSpeed,
    sha256: '',
    error: null,
    createdAt: at,
    updatedAt: at,
    completedAt: null,
  }
}

/**
 * Owns every upload's state machine: IN_PROGRESS ⇄ PAUSED → COMPLETED | CANCELED | FAILED. Records change
 * only through the record store, and a change is durable there before anyone sees it: before the call that
 * made it returns, before it is published, before memory holds it. Calls on the same upload run one at a
 * time (a per-upload lock), so racing clients see one consistent order.
 */
export class UploadService {
  readonly feed = new ProgressFeed()
  /** Paces every transfer of this process, under the server-wide cap. */
  private readonly scheduler: Scheduler
  private readonly runs = new Map<string, Run>()
  private readonly hashes = new Map<string, PartHash>()
  /** Uploads still arriving: their received byte count, and how to stop them (a cancel). */
  private readonly arriving = new Map<
    string,
    { received: () => number; stop: (reason: Error) => void; meter: RateMeter; published: number }
  >()
  /** Room promised to each upload of this process until its transfer completes (or it ends otherwise). */
  private readonly rooms = new Map<string, Hold>()
  /**
   * Arrivals undone whose record the store could not remove yet: gone for every client now (they were told
   * nothing was kept), removed from the store as soon as it takes writes, or by recovery at the next start
   * (shared: by whichever instance adopts it once nobody holds its lease, see adopt).
   */
  private readonly undone = new Set<string>()
  /** Runs that reached their end and are being completed (or failed): the byte count they reached. */
  private readonly finishing = new Map<string, number>()
  private readonly locks = new Map<string, Promise<unknown>>()
  private readonly ticker: NodeJS.Timeout
  private readonly checkpointer: NodeJS.Timeout
  private checkpointFailing = false
  private readonly leases: Leases
  private readonly bus: Bus
  /** Live figures of uploads that run elsewhere, from their owners' published states. */
  private readonly remote = new Map<string, { view: UploadView; at: number }>()
  private adopter: NodeJS.Timeout | undefined
  private readonly expirer: NodeJS.Timeout
  private expiring = false
  private adopting = false
  private recovering: Promise<void> = Promise.resolve()
  private recovered = true
  private closed = false

  constructor(private readonly options: UploadServiceOptions) {
    this.leases = options.shared?.leases ?? new LocalLeases()
    this.bus = options.shared?.bus ?? new LocalBus()
    this.bus.onState((view, local) => {
      if (!local) this.remember(view)
      this.feed.publish(view)
    })
    this.bus.onCommand((command) => this.serve(command))
    this.scheduler = new Scheduler(options.maxTotalSpeed ?? 0)
    this.bus.onLimits(({ maxTotalSpeed }) => {
      this.scheduler.setCap(maxTotalSpeed)
      log('info', 'limits.changed', { maxTotalSpeed })
    })
    this.leases.onLost((id) => void this.lost(id))
    this.ticker = setInterval(() => this.publishProgress(), PROGRESS_EVERY_MS).unref()
    this.checkpointer = setInterval(() => void this.checkpoint(), CHECKPOINT_EVERY_MS).unref()
    const expiry = this.expiryMs
    this.expirer = setInterval(() => void this.expire(), Math.min(EXPIRE_EVERY_MS, Math.max(expiry / 4, 100))).unref()
  }

  private get expiryMs(): number {
    return this.options.resumableExpiryMs ?? 24 * 3_600_000
  }

  /** Whether leases are shared with other instances (Redis), rather than all this process's. */
  private get shared(): boolean {
    return this.options.shared !== undefined
  }

  private get store(): RecordStore {
    return this.options.store
  }

  private get storage(): Storage {
    return this.options.storage
  }

  /** What the metrics gauges read when scraped. */
  readonly liveState: LiveState = {
    countByStatus: () => this.store.countByStatus(),
    activeTransfers: () => this.runs.size,
    subscriptions: () => this.feed.subscriberCount,
    slowConsumersClosed: () => 0,
  }

  // ---- start-up ------------------------------------------------------------------------------------------

  /**
   * After a restart, once this process holds the folder and serves requests: removes `orphans` (decided
   * before serving anyone, see Storage.orphans) and carries on every unfinished upload from the bytes on
   * disk. Each upload is recovered under its own lock, so a request for it waits for its recovery.
   */
  recover(orphans: readonly string[]): Promise<void> {
    this.recovered = false
    this.recovering = (async () => {
      // Which leftovers to sweep, asked of Redis when shared: if it cannot say now, nothing is swept (the next
      // start sweeps them), rather than guess or end the process.
      const doomed = this.shared
        ? await this.stillOrphans(orphans).catch((error: unknown) => {
            log('warn', 'recovery.sweep_skipped', { error })
            return []
          })
        : orphans
      await this.storage.remove(doomed).catch((error: unknown) => log('warn', 'recovery.sweep_failed', { error }))
      if (this.shared) {
        // Running uploads are carried on by whoever holds (or takes) their lease: see adopt().
        this.adopter = setInterval(() => void this.adopt(), ADOPT_EVERY_MS).unref()
        return this.adopt()
      }
      const unfinished = await this.store.unfinished()
      await Promise.all(
        unfinished.map((record) =>
          this.locked(record.id, () => this.recoverOne(record.id)).catch((error: unknown) =>
            this.locked(record.id, async () => {
              const current = await this.store.get(record.id)
              if (current && !isFinal(current.status))
                await this.fail(current, faultReason(error, 'upload.recovery_error', { id: record.id }))
            }).catch((failure: unknown) => log('error', 'upload.recovery_failed', { id: record.id, error: failure })),
          ),
        ),
      )
    })().finally(() => (this.recovered = true))
    return this.recovering
  }

  /**
   * On shared storage the orphan list was made before this instance served anyone, but other instances were
   * serving all along: a file is removed only if it still belongs to no unfinished upload now, and a body
   * still arriving at a live instance is never touched.
   */
  private async stillOrphans(paths: readonly string[]): Promise<string[]> {
    const live = await this.leases.liveInstances()
    const doomed: string[] = []
    for (const path of paths) {
      const owner = this.storage.ownerOfIncoming(path)
      if (owner !== undefined) {
        if (!live.has(owner)) doomed.push(path)
        continue
      }
      const id = this.storage.uploadIdOf(path)
      const record = id === undefined ? undefined : await this.store.get(id)
      if (!record || isFinal(record.status)) doomed.push(path)
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
  private async adopt(): Promise<void> {
    if (this.adopting || this.closed) return
    this.adopting = true
    try {
      for await (const records of this.pages(['IN_PROGRESS', 'RECEIVING'])) {
        const ids = records
          .filter((record) => record.status === 'IN_PROGRESS' || record.source === 'multipart')
          .map((record) => record.id)
          .filter((id) => !this.runs.has(id) && !this.arriving.has(id))
        const holders = await this.leases.holders(ids)
        for (const [i, id] of ids.entries()) {
          if (holders[i] !== undefined || this.closed) continue
          if (!(await this.leases.acquire(id))) continue
          await this.locked(id, () => this.recoverOne(id)).catch((error: unknown) =>
            log('error', 'upload.adoption_failed', { id, error }),
          )
          if (!this.runs.has(id)) await this.leases.release(id)
          else log('info', 'upload.adopted', { id, instance: this.leases.instance })
        }
      }
    } catch (error) {
      log('warn', 'upload.adoption_paused', { error })
    } finally {
      this.adopting = false
    }
  }

  /** The records in `status`, a page at a time: 100k of them are never one answer. */
  private async *pages(status: UploadStatus[]): AsyncGenerator<UploadRecord[]> {
    let after: string | undefined
    for (;;) {
      const page = await this.store.page({ status, first: 500, after })
      yield page.records
      if (!page.hasNextPage || !page.endCursor) return
      after = page.endCursor
    }
  }

  /** This process no longer holds the upload's lease: its run stops at once, and writes nothing more. */
  private async lost(id: string): Promise<void> {
    const run = this.runs.get(id)
    if (run) {
      log('warn', 'upload.lease_lost', { id, instance: this.leases.instance, uploadedSize: run.offset })
      this.runs.delete(id)
      this.hashes.delete(id)
      this.letGo(id)
      run.controller.abort()
      await run.transfer.done.catch(() => undefined)
    }
    // The run stopped at its own deadline, but a late renewal may still have kept the lease in Redis: an
    // upload held by an instance that runs nothing would never be adopted. Let go (a no-op if it is
    // someone else's now), and whoever takes it next carries on from the bytes on disk.
    await this.leases.release(id).catch(() => undefined)
  }

  private async recoverOne(id: string): Promise<void> {
    const record = await this.store.get(id)
    if (this.closed || !record || isFinal(record.status)) return
    if (record.status === 'RECEIVING') {
      // A multipart body cannot be resumed once its connection is gone; a tus upload waits for its sender,
      // with what reached the disk (its last request may have been cut off before it was counted).
      if (record.source === 'multipart')
        return this.forget(id, 'The server receiving it stopped before the whole file arrived; send it again', record.receivedSize)
      const staged = await this.storage.sizeOf(this.storage.stagingPath(record))
      const onDisk = Math.min(staged ?? 0, record.totalSize)
      // Every byte reached the disk, but the crash came before it was recorded: its sender, asking, would
      // hear it is whole and send nothing more, so it goes on from here. (No staging file at all: a crash
      // before its creation finished, even for an empty file; it waits for its sender, or expires.)
      if (staged !== undefined && onDisk === record.totalSize)
        return void (await this.run(record, onDisk, await this.storage.hashFile(this.storage.stagingPath(record))))
      if (onDisk !== record.receivedSize) await this.store.put({ ...record, receivedSize: onDisk, updatedAt: now() }, this.fenceOf(id))
      return
    }
    const { storage } = this
    // A crash between the rename into place and COMPLETED reaching the store: the file is whole and was
    // verified before it was renamed; make sure, then finish the job (and drop a transfer file that a power
    // cut may have brought back beside it).
    const storedSize = await storage.sizeOf(storage.storedPath(record))
    if (storedSize === record.totalSize) {
      const digest = await storage.hashFile(storage.storedPath(record))
      if (digest === record.sha256) {
        await this.durably({ ...record, status: 'COMPLETED', uploadedSize: record.totalSize, completedAt: now(), updatedAt: now() }, 'upload.completed')
        await storage.removeBytes(record).catch(() => undefined)
        return
      }
    }
    if ((await storage.sizeOf(storage.stagingPath(record))) === undefined) {
      return this.fail(record, 'Its received bytes are gone from the staging folder; upload it again')
    }
    const verified = await storage.verifiedPrefix(record)
    const { offset } = verified
    this.hashes.set(id, verified)
    const next = { ...record, uploadedSize: offset, updatedAt: now() }
    await this.store.put(next, this.fenceOf(id))
    log('info', 'upload.recovered', { id, status: record.status, uploadedSize: offset, totalSize: record.totalSize })
    if (record.status === 'IN_PROGRESS') this.start(next)
    this.bus.publish(this.view(next))
  }

  // ---- queries -------------------------------------------------------------------------------------------

  async get(id: string): Promise<UploadView> {
    return this.view(await this.record(id))
  }

  async page(query: PageQuery): Promise<UploadPage> {
    if (query.after !== undefined && decodeCursor(query.after) === undefined)
      throw badInput(`after must be the cursor of an upload from this server; got ${JSON.stringify(query.after.slice(0, 80))}`)
    const page = await this.store.page(query)
    // An undone arrival may leave a page one short; its cursor still says where the next one starts.
    const records = page.records.filter((record) => !this.undone.has(record.id))
    return { uploads: records.map((record) => this.view(record)), hasNextPage: page.hasNextPage, endCursor: page.endCursor }
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
    const by = await this.store.countByStatus()
    const of = (status: UploadStatus) => by[status] ?? 0
    const counts = {
      receiving: Math.max(0, of('RECEIVING') - this.undone.size),
      inProgress: of('IN_PROGRESS'),
      paused: of('PAUSED'),
      completed: of('COMPLETED'),
      canceled: of('CANCELED'),
      failed: of('FAILED'),
    }
    return { total: Object.values(counts).reduce((a, b) => a + b, 0), ...counts }
  }

  limits(): Limits {
    return { maxTotalSpeed: this.scheduler.maxTotalSpeed }
  }

  /**
   * A new cap on the speed of all transfers together (0: none), shared max-min fairly among them; every
   * instance applies it at once. It holds until the next start (MAX_TOTAL_SPEED sets it then).
   */
  setMaxTotalSpeed(speed: number): Limits {
    this.checkSpeed(speed)
    this.bus.publishLimits({ maxTotalSpeed: speed })
    return this.limits()
  }

  /** Live states of one upload, or of every upload when `id` is undefined (starting with the unfinished ones). */
  async watch(id?: string): Promise<AsyncIterableIterator<UploadView>> {
    if (id !== undefined) await this.record(id)
    return this.feed.follow(id, async () =>
      id !== undefined
        ? [await this.get(id)]
        : (await this.store.unfinished()).filter((record) => !this.undone.has(record.id)).map((record) => this.view(record)),
    )
  }

  /** Why the service cannot take uploads now, or undefined when it can: open, and its storage writable. */
  async notReady(): Promise<string | undefined> {
    if (this.closed) return 'shutting down'
    if (!this.recovered) return 'recovering the uploads of the last run'
    return this.storage.writable()
  }

  // ---- commands ------------------------------------------------------------------------------------------

  /**
   * Checks the speed before anything else, so a bad one is refused before the file's bytes are read; then
   * waits for the file, records the upload and starts its transfer. Answers once the file has arrived.
   */
  async create(file: IncomingFile, speed?: number | null): Promise<UploadView> {
    const targetSpeed = this.checkSpeed(speed ?? this.options.defaultSpeed)
    this.assertOpen()
    await file.began
    this.assertOpen()
    const id = randomUUID()
    const receiving = newRecord({ id, filename: file.filename, source: 'multipart', size: 0, targetSpeed, expiresAt: null })
    // Recorded as it begins to arrive, so lists and subscribers see it (and its receivedSize grow), and a
    // cancel can stop it. The lock is not held meanwhile: the body may take hours.
    await this.locked(id, async () => {
      // Whoever creates an upload runs it: its lease first, so every write below is under it.
      if (!(await this.guard(() => this.leases.acquire(id)))) throw unavailable(`Upload ${id} could not be started; try again`)
      await this.save(receiving).catch(async (error: unknown) => {
        await this.leases.release(id)
        throw error
      })
      this.arriving.set(id, { received: () => file.received, stop: (reason) => file.abort(reason), meter: new RateMeter(), published: -1 })
      this.announce(receiving, 'upload.receiving')
    })
    let staged: StagedFile
    try {
      staged = await file.arrived
    } catch (error) {
      await this.locked(id, () => this.forget(id, arrivalFailure(error), file.received)).catch((failure: unknown) =>
        log('error', 'upload.cleanup_failed', { id, error: failure }),
      )
      throw error
    }
    return this.locked(id, async () => {
      this.arriving.delete(id)
      const current = await this.record(id)
      if (current.status !== 'RECEIVING') {
        await this.leases.release(id)
        throw this.conflict(current, 'stored', 'it was {status} while it arrived')
      }
      // Recorded first (RECEIVING): a crash before it is recorded as arrived leaves a record that the next
      // start forgets, with its bytes, never bytes that no record owns. Its second copy's room was promised
      // as it arrived (see ingest.ts); it is this upload's now.
      try {
        await staged.moveTo(this.storage.stagingPath(current))
        this.rooms.set(id, staged.room)
        return await this.run(current, staged.size, staged.sha256)
      } catch (error) {
        // Not on record as arrived (the store refused it, say): its client hears it was not taken, so
        // nothing of it is kept, neither its record nor its bytes.
        await this.forget(id, `The received file could not be kept: ${faultReason(error, 'upload.keep_failed', { id })}`, staged.size)
        throw error
      }
    })
  }

  /** All of an upload's bytes are in staging, with their sha256: on record as IN_PROGRESS, its transfer started. */
  private async run(current: UploadRecord, size: number, sha256: string): Promise<UploadView> {
    const record: UploadRecord = {
      ...current,
      status: 'IN_PROGRESS',
      receivedSize: size,
      totalSize: size,
      sha256,
      expiresAt: null,
      receivedAt: now(),
      updatedAt: now(),
    }
    await this.save(record)
    this.hashes.set(record.id, { hash: createHash('sha256'), offset: 0 })
    this.start(record)
    return this.announce(record, 'upload.started')
  }

  // ---- resumable (tus) uploads ---------------------------------------------------------------------------

  /**
   * A resumable upload announced by its sender (tus creation): on record, RECEIVING, before any byte of it
   * is stored. Its bytes then arrive over as many requests as it takes, each one between beginReceiving and
   * endReceiving; it expires RESUMABLE_EXPIRY after its last byte.
   */
  async createResumable(input: { id: string; filename: string; size: number; speed?: number | null }): Promise<UploadView> {
    const targetSpeed = this.checkSpeed(input.speed ?? this.options.defaultSpeed)
    this.assertOpen()
    const { id, filename, size } = input
    const record = newRecord({ id, filename, source: 'tus', size, targetSpeed, expiresAt: this.expiresFrom(Date.now()) })
    // Refused now if it cannot fit; its room is promised only when its bytes come (beginReceiving).
    await this.storage.room.check(roomFor(size))
    return this.locked(id, async () => {
      if (!(await this.guard(() => this.leases.acquire(id)))) throw unavailable(`Upload ${id} could not be created; try again`)
      try {
        await this.save(record)
      } finally {
        if (this.shared) await this.leases.release(id).catch(() => undefined)
      }
      return this.announce(record, 'upload.receiving')
    })
  }

  /**
   * A request carrying more of a resumable upload begins at byte `offset`. While it lasts this process
   * holds the upload, so a cancel sent anywhere reaches it and `stop`s the request, and its receivedSize
   * is followed live. Answers with the function that counts bytes as they arrive.
   */
  async beginReceiving(
    id: string,
    offset: number,
    stop: (reason: Error) => void,
  ): Promise<{ count: (n: number) => void; record: UploadRecord; room: Hold }> {
    return this.locked(id, async () => {
      const record = await this.record(id)
      if (record.status !== 'RECEIVING' || record.source !== 'tus') throw this.conflict(record, 'sent more bytes')
      this.assertOpen()
      // The rest of it, and its second copy: promised now, or refused (507) before a byte of it is read. It
      // stays as it was, so its sender can send the rest once there is room.
      const room = await this.storage.room.grant(roomFor(record.totalSize, offset))
      try {
        if (!this.leases.held(id) && !(await this.guard(() => this.leases.acquire(id))))
          throw unavailable(`Upload ${id} is receiving bytes at another instance; try again`)
      } catch (error) {
        room.release()
        throw error
      }
      this.letGo(id)
      this.rooms.set(id, room)
      let received = offset
      this.arriving.set(id, { received: () => received, stop, meter: new RateMeter(), published: -1 })
      return { record, room, count: (n) => void (received += n) }
    })
  }

  /**
   * The request that began at beginReceiving ended (its piece is in, or its sender went away): the bytes
   * that reached the disk (`received` in all) are kept and counted, and it expires RESUMABLE_EXPIRY from
   * now. With every byte in, and their sha256, its transfer starts.
   */
  async endReceiving(id: string, received: number, sha256?: string): Promise<UploadView> {
    return this.locked(id, async () => {
      this.arriving.delete(id)
      try {
        const current = await this.record(id)
        // Canceled (or expired) while it arrived: its bytes are gone, and so is the upload for its sender.
        if (current.status !== 'RECEIVING') throw this.conflict(current, 'sent more bytes')
        // The staging copy is whole where the transfer reads it. If it cannot start, it is not on record as
        // arrived: it stays RECEIVING, its bytes whole in staging, where its sender's next request (or the
        // next start) finds them and tries again.
        if (received === current.totalSize && sha256 !== undefined) return await this.run(current, received, sha256)
        const next = { ...current, receivedSize: received, expiresAt: this.expiresFrom(Date.now()), updatedAt: now() }
        try {
          await this.save(next)
        } catch (error) {
          // Its bytes are kept on disk whatever the store says, and its offset is read from there (by its
          // sender's next request, and by the next start): "nothing was changed" would be untrue. Only the
          // record's count and expiry lag until the store takes writes again.
          if (!(error instanceof ServiceError && error.code === 'UNAVAILABLE')) throw error
          log('warn', 'upload.receipt_unsaved', { id, receivedSize: received })
        }
        const view = this.view(next)
        this.bus.publish(view)
        return view
      } finally {
        // However the request ended (idle until its sender's next one, which asks for room again; refused;
        // a store that could not be read), nothing arrives here now: unless its transfer runs here, there is
        // nothing to hold its room or its lease for.
        if (!this.runs.has(id)) {
          this.letGo(id)
          if (this.shared) await this.leases.release(id).catch(() => undefined)
        }
      }
    })
  }

  private expiresFrom(at: number): string {
    return new Date(at + this.expiryMs).toISOString()
  }

  /**
   * Resumable uploads whose sender has sent nothing for RESUMABLE_EXPIRY end FAILED, with the reason, and
   * their bytes go. With several instances, whoever takes an upload's lease first expires it.
   */
  private async expire(): Promise<void> {
    if (this.expiring || this.closed || !this.recovered) return
    this.expiring = true
    try {
      const at = new Date().toISOString()
      for await (const records of this.pages(['RECEIVING'])) {
        for (const record of records) {
          if (record.source !== 'tus' || record.expiresAt === null || record.expiresAt > at || this.arriving.has(record.id)) continue
          // Shared: skipped if this instance holds it (a request of it under way here) or another does.
          if (this.shared && (this.leases.held(record.id) || !(await this.leases.acquire(record.id)))) continue
          await this.locked(record.id, async () => {
            const current = await this.store.get(record.id)
            // A request of it may have begun since it was listed: then it is not idle.
            if (this.arriving.has(record.id) || current?.status !== 'RECEIVING' || current.expiresAt === null || current.expiresAt > at) return
            const hours = this.expiryMs / 3_600_000
            const period = hours >= 1 ? `${+hours.toFixed(2)} h` : `${+(this.expiryMs / 1000).toFixed(3)} s`
            await this.fail(current, `Expired: no byte arrived for ${period} (RESUMABLE_EXPIRY); send the file again`)
          }).finally(() => this.leases.release(record.id).catch(() => undefined))
        }
      }
    } catch (error) {
      log('warn', 'upload.expiry_paused', { error })
    } finally {
      this.expiring = false
    }
  }

  pause(id: string): Promise<UploadView> {
    return this.dispatch({ op: 'pause', id })
  }

  resume(id: string, speed?: number | null): Promise<UploadView> {
    if (speed != null) this.checkSpeed(speed)
    return this.dispatch({ op: 'resume', id, speed: speed ?? null })
  }

  /** A new speed for a running upload (taken within one chunk, no pause) or a paused one (kept for its resume). */
  setSpeed(id: string, speed: number): Promise<UploadView> {
    this.checkSpeed(speed)
    return this.dispatch({ op: 'setSpeed', id, speed })
  }

  cancel(id: string): Promise<UploadView> {
    return this.dispatch({ op: 'cancel', id })
  }

  /**
   * Removes an ended upload's record and whatever bytes it still has (its stored file stays with
   * `keepFile`); answers with the record as it was.
   */
  delete(id: string, keepFile = false): Promise<UploadView> {
    return this.dispatch({ op: 'delete', id, keepFile })
  }

  private perform(command: Command): Promise<UploadView> {
    switch (command.op) {
      case 'pause':
        return this.doPause(command.id)
      case 'resume':
        return this.doResume(command.id, command.speed)
      case 'setSpeed':
        return this.doSetSpeed(command.id, command.speed)
      case 'cancel':
        return this.doCancel(command.id)
      case 'delete':
        return this.doDelete(command.id, command.keepFile)
    }
  }

  private async doPause(id: string): Promise<UploadView> {
    {
      const record = await this.record(id)
      this.notReceiving(record, 'paused')
      this.expect(record, ['IN_PROGRESS'], 'paused')
      const offset = await this.stopRun(id)
      if (offset === record.totalSize) {
        // The last chunk landed while we asked: finish it, and say it can no longer be paused.
        await this.complete(record)
        throw this.conflict(await this.record(id), 'paused')
      }
      const next = { ...record, status: 'PAUSED' as const, uploadedSize: offset, updatedAt: now() }
      await this.saveOrRestart(record, offset, next)
      return this.announce(next, 'upload.paused')
    }
  }

  private async doResume(id: string, speed: number | null): Promise<UploadView> {
    {
      const record = await this.record(id)
      const targetSpeed = speed == null ? record.targetSpeed : this.checkSpeed(speed)
      this.notReceiving(record, 'resumed')
      this.expect(record, ['PAUSED'], 'resumed')
      this.assertOpen()
      const offset = await this.prepareHash(record)
      const next = { ...record, status: 'IN_PROGRESS' as const, targetSpeed, uploadedSize: offset, updatedAt: now() }
      await this.save(next)
      this.start(next)
      return this.announce(next, 'upload.resumed')
    }
  }

  private async doSetSpeed(id: string, speed: number): Promise<UploadView> {
    {
      const record = await this.record(id)
      const targetSpeed = this.checkSpeed(speed)
      this.expect(record, ['RECEIVING', 'IN_PROGRESS', 'PAUSED'], 'given a new speed')
      const run = this.runs.get(id)
      const next = { ...record, targetSpeed, uploadedSize: run?.offset ?? record.uploadedSize, updatedAt: now() }
      await this.save(next)
      if (run) {
        run.transfer.setSpeed(targetSpeed)
        run.record = { ...run.record, targetSpeed }
      }
      return this.announce(next, 'upload.speed_changed')
    }
  }

  private async doCancel(id: string): Promise<UploadView> {
    {
      const record = await this.record(id)
      this.expect(record, ['RECEIVING', 'IN_PROGRESS', 'PAUSED'], 'canceled')
      if (record.status === 'RECEIVING') return this.cancelReceiving(record)
      const offset = await this.stopRun(id)
      // The count reached is kept: scripts that follow progress read a drop as corruption. The bytes go.
      const next = { ...record, status: 'CANCELED' as const, uploadedSize: offset, updatedAt: now() }
      await this.saveOrRestart(record, offset, next)
      this.hashes.delete(id)
      this.letGo(id)
      await this.storage.removeBytes(record).catch((error: unknown) => log('warn', 'upload.cleanup_failed', { id, error }))
      return this.announce(next, 'upload.canceled')
    }
  }

  /**
   * A multipart body that never arrived (the client went, a limit, a malformed body): the client heard why,
   * its watchers hear it failed, and then it is gone from the lists, as if never sent (nothing to clean up).
   */
  private async forget(id: string, reason: string, received: number): Promise<void> {
    this.arriving.delete(id)
    this.letGo(id)
    const current = await this.store.get(id)
    let removed = true
    if (current?.status === 'RECEIVING') {
      await this.storage.removeStaging(current).catch((error: unknown) => log('warn', 'upload.cleanup_failed', { id, error }))
      // Gone before anyone hears it failed: a watcher that then looks finds nothing, never a stale RECEIVING.
      removed = await this.removeRecord(id)
      if (!removed) {
        // Its client hears nothing was kept, so for everyone it is gone now; the store hears it once it
        // takes writes again (or the next start, or another instance's adoption, forgets it, as every multipart
        // upload still RECEIVING that nobody receives).
        this.undone.add(id)
        void this.removeLater(id)
      }
      this.bus.publish({
        ...this.view({ ...current, status: 'FAILED', error: reason, receivedSize: received, updatedAt: now() }),
        removed: true,
      })
      log('info', 'upload.not_received', { id, filename: current.filename, receivedSize: received, reason })
    }
    // Held until the record is gone: its removal is written under the lease.
    if (removed) await this.leases.release(id)
  }

  /**
   * Removes a record; false if the store cannot take it now. Only a fence the store refuses counts as done
   * (another instance holds the upload now: it is theirs to keep or forget). This instance's own lease, run
   * out while the store was away, is taken again first; if someone else has it, it is theirs.
   */
  private async removeRecord(id: string): Promise<boolean> {
    try {
      if (this.shared && !this.leases.held(id) && !(await this.leases.acquire(id))) return true
      await this.store.remove(id, this.fenceOf(id))
      return true
    } catch (error) {
      // fenceOf's own refusal (the lease ran out again meanwhile) is not done: it is tried again.
      if (error instanceof FencedError && this.leases.held(id)) return true
      log('error', 'store.write_failed', { id, op: 'remove', error })
      return false
    }
  }

  /** An undone arrival's removal, retried until the store takes it (or the server stops: see forget). */
  private async removeLater(id: string): Promise<void> {
    if (!(await retrying(() => this.closed, () => this.removeRecord(id), true))) return
    this.undone.delete(id)
    log('info', 'upload.removal_saved', { id })
    await this.leases.release(id).catch(() => undefined)
  }

  /** Whatever room was promised to the upload is anyone's again (its bytes are written, or never will be). */
  private letGo(id: string): void {
    this.rooms.get(id)?.release()
    this.rooms.delete(id)
  }

  /** Canceled while it arrives: the request carrying it (or the tus sender's next request) is refused. */
  private async cancelReceiving(record: UploadRecord): Promise<UploadView> {
    const arriving = this.arriving.get(record.id)
    const next = { ...record, status: 'CANCELED' as const, receivedSize: arriving?.received() ?? record.receivedSize, updatedAt: now() }
    await this.save(next)
    this.arriving.delete(record.id)
    this.letGo(record.id)
    arriving?.stop(new ServiceError('INVALID_STATE', `Upload ${record.id} was canceled while it arrived`))
    await this.storage.removeBytes(record).catch((error: unknown) => log('warn', 'upload.cleanup_failed', { id: record.id, error }))
    return this.announce(next, 'upload.canceled')
  }

  private async doDelete(id: string, keepFile: boolean): Promise<UploadView> {
    {
      const record = await this.record(id)
      this.expect(record, ['COMPLETED', 'CANCELED', 'FAILED'], 'deleted', 'cancel it first')
      await this.guard(() => this.store.remove(id, this.fenceOf(id)))
      const remove = keepFile ? this.storage.removeBytes(record) : this.storage.removeAll(record)
      await remove.catch((error: unknown) => log('warn', 'upload.cleanup_failed', { id, error }))
      log('info', 'upload.deleted', { id, filename: record.filename, keptFile: keepFile && record.status === 'COMPLETED' })
      // Live lists drop it without asking again.
      this.bus.publish({ ...this.view(record), removed: true })
      return this.view(record)
    }
  }

  /**
   * Runs a command where the upload's lease is: here if this process holds it or can take it (then gives
   * it back unless the upload now runs here), else at the instance that holds it, over the bus.
   */
  private async dispatch(command: Command, hops = 0): Promise<UploadView> {
    const { id } = command
    if (this.leases.held(id)) {
      try {
        return await this.command(id, () => this.perform(command))
      } finally {
        // Paused, canceled, deleted: nothing runs or arrives here, so nothing is left to hold it for. Nor its
        // room: once the lease is gone it may be resumed, canceled or completed elsewhere, and this instance
        // would never hear that it ended (a resume here makes a new promise).
        if (this.shared && !this.runs.has(id) && !this.arriving.has(id)) {
          this.letGo(id)
          await this.leases.release(id).catch(() => undefined)
        }
      }
    }
    await this.record(id) // NOT_FOUND before any lease is asked for
    const fence = await this.guard(() => this.leases.acquire(id))
    if (fence) {
      try {
        return await this.command(id, () => this.perform(command))
      } finally {
        if (!this.runs.has(id)) {
          this.letGo(id)
          await this.leases.release(id).catch(() => undefined)
        }
      }
    }
    const owner = await this.guard(() => this.leases.holder(id))
    if (owner === undefined || owner === this.leases.instance) {
      // Let go between our two questions: ask again, a few times.
      if (hops >= 3) throw unavailable(`Upload ${id} changes hands too fast; try again`)
      return this.dispatch(command, hops + 1)
    }
    const outcome = await this.bus.request(owner, command)
    if ('error' in outcome) throw ServiceError.fromData(outcome.error)
    return outcome.ok
  }

  /** A command forwarded by another instance: run it as if it had come here (it may move on once more). */
  private async serve(command: Command): Promise<Outcome> {
    try {
      return { ok: await this.dispatch(command, 2) }
    } catch (error) {
      if (error instanceof ServiceError) return { error: error.toData() }
      log('error', 'upload.command_failed', { command, error })
      return { error: { code: 'UNAVAILABLE', message: publicMessage(error) } }
    }
  }

  /** Deletes every ended upload in `statuses`, a page at a time; answers with how many went. */
  async clear(statuses: readonly UploadStatus[] = ['COMPLETED', 'CANCELED', 'FAILED'], keepFiles = false): Promise<number> {
    const running = statuses.filter((status) => !isFinal(status))
    if (running.length > 0) throw badInput(`only ended uploads can be cleared; not ${running.join(', ')}`)
    let removed = 0
    for (;;) {
      // Always the first page: what was deleted is gone from it, and one that ended meanwhile joins in.
      const { records } = await this.store.page({ status: statuses, first: 500 })
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
    this.closed = true
    clearInterval(this.ticker)
    clearInterval(this.checkpointer)
    clearInterval(this.expirer)
    this.feed.close()
    await this.recovering.catch(() => undefined)
    const stopped = await Promise.all(
      [...this.runs.values()].map(async (run) => ({ run, offset: await this.stopRun(run.record.id) })),
    )
    clearInterval(this.adopter)
    await this.store
      .progress(
        stopped.map(({ run, offset }) => ({
          id: run.record.id,
          uploadedSize: offset,
          updatedAt: now(),
          fence: this.leases.held(run.record.id)?.value,
        })),
      )
      .catch((error: unknown) => log('error', 'upload.checkpoint_failed', { error }))
    // Handed back at once, so another instance carries them on now rather than when the leases run out.
    await Promise.all(stopped.map(({ run }) => this.leases.release(run.record.id).catch(() => undefined)))
  }

  // ---- the transfer --------------------------------------------------------------------------------------

  private start(record: UploadRecord, rechecks = 0): void {
    const part = this.hashes.get(record.id)
    if (!part || part.offset !== record.uploadedSize) throw new Error(`no hash of ${record.id}'s first ${record.uploadedSize} bytes`)
    // The run changes the file: how it leaves it is known again when it stops (onStop).
    const expected = part.stamp
    part.stamp = undefined
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
      source: this.storage.stagingPath(record),
      target: this.storage.transferPath(record),
      offset: record.uploadedSize,
      expected,
      total: record.totalSize,
      speed: record.targetSpeed,
      scheduler: this.scheduler,
      hash: part.hash,
      signal: controller.signal,
      // Checked before every write: past its lease's deadline a stalled owner stops, whatever else happens.
      mayWrite: () => (this.leases.held(record.id)?.deadline ?? 0) > performance.now(),
      onProgress: (offset) => {
        stored.bytes += offset - run.offset
        run.offset = part.offset = offset
        meter.record(offset)
      },
      onStop: (stamp) => (part.stamp = stamp),
    })
    this.runs.set(record.id, run)
    // The rest of its transfer file: promised when it arrived, or now (a restart, an adoption, a resume). Made
    // anew each time, for exactly what is left from here: a run may start lower than the last one stopped (a
    // recheck, a changed file), and the old promise, worn down by what that one wrote, would be too little.
    this.rooms.get(record.id)?.release()
    const room = this.storage.room.hold(record.totalSize - record.uploadedSize)
    this.rooms.set(record.id, room)
    room.track(() => run.offset - record.uploadedSize)
    // Whoever stops a run (pause, cancel, close) handles its outcome; a run that ends by itself is ours.
    run.transfer.done.then(
      (offset) => {
        if (offset === record.totalSize) void this.ended(run, (current) => this.complete(current))
      },
      (error: unknown) => {
        this.hashes.delete(record.id)
        // Not a failure of the upload: this process may no longer act on it, and its new owner carries on.
        if (error instanceof LeaseLostError) return void this.lost(record.id)
        if (error instanceof TargetChangedError && run.rechecks < MAX_RECHECKS)
          return void this.ended(run, (current) => this.recheck(current, run.rechecks + 1, error.message))
        const reason =
          error instanceof TargetChangedError
            ? `Its file in storage kept being changed by something other than this server (${error.message}); upload it again`
            : faultReason(error, 'upload.transfer_error', { id: record.id })
        void this.ended(run, (current) => this.fail(current, reason))
      },
    )
  }

  private ended(run: Run, finish: (record: UploadRecord) => Promise<void>): Promise<void> {
    const { id } = run.record
    return this.locked(id, async () => {
      if (this.runs.get(id) !== run || this.closed) return
      this.runs.delete(id)
      // Until the outcome is recorded the record still says IN_PROGRESS at its last checkpoint; clients see
      // the bytes the run reached (a count that went back would read as corruption).
      this.finishing.set(id, run.offset)
      try {
        const record = await this.store.get(id)
        if (record && !isFinal(record.status)) await finish({ ...record, uploadedSize: run.offset })
      } finally {
        this.finishing.delete(id)
        // A recheck has started a new run here, with the room it holds: not ours to give back.
        if (!this.runs.has(id)) this.letGo(id)
        if (this.shared && !this.runs.has(id) && !this.arriving.has(id)) await this.leases.release(id).catch(() => undefined)
      }
    }).catch((error: unknown) => log('error', 'upload.finish_failed', { id, error }))
  }

  /** Aborts the running copy, if any, and waits for its chunk in flight: no byte moves after this. */
  private async stopRun(id: string): Promise<number> {
    const run = this.runs.get(id)
    if (!run) return (await this.store.get(id))?.uploadedSize ?? 0
    this.runs.delete(id)
    run.controller.abort()
    return run.transfer.done.catch(() => {
      // It failed as we stopped it: its hash may be of bytes that never landed. Rebuilt from disk on resume.
      this.hashes.delete(id)
      return run.offset
    })
  }

  /**
   * The hash of the transfer's file up to where it can be trusted. Memory's is, if the file is still exactly
   * as the last run left it (one stat); otherwise (memory lost track, or the file was cut, written to or
   * replaced meanwhile) the file is compared with staging again, and the transfer goes on from the last byte
   * that matches: never from bytes nobody checked.
   */
  private async prepareHash(record: UploadRecord): Promise<number> {
    const part = this.hashes.get(record.id)
    const known = part?.offset === record.uploadedSize
    // Nothing to trust at 0: the run starts the file afresh.
    if (part && known && (part.offset === 0 || (await this.storage.unchanged(record, part.stamp)))) return part.offset
    this.hashes.delete(record.id)
    const verified = await this.storage.verifiedPrefix(record)
    if (known) log('warn', 'upload.transfer_file_changed', { id: record.id, uploadedSize: record.uploadedSize, verifiedSize: verified.offset })
    this.hashes.set(record.id, verified)
    return verified.offset
  }

  /**
   * A run found its file changed behind it (cut short, written to, replaced): it goes on from the bytes that
   * still match staging, as after a restart. If that cannot be done, the upload fails with the reason.
   */
  private async recheck(record: UploadRecord, rechecks: number, why: string): Promise<void> {
    log('warn', 'upload.transfer_file_changed', { id: record.id, uploadedSize: record.uploadedSize, reason: why })
    try {
      this.hashes.delete(record.id)
      const offset = await this.prepareHash(record)
      const next = { ...record, uploadedSize: offset, updatedAt: now() }
      await this.store.put(next, this.fenceOf(record.id))
      this.start(next, rechecks)
      this.bus.publish(this.view(next))
    } catch (error) {
      await this.fail(record, faultReason(error, 'upload.recheck_failed', { id: record.id }))
    }
  }

  /**
   * Completion, ordered so that a crash at any point recovers to the truth: the hash of the bytes written
   * is checked against the one taken on arrival; the transfer's file (already flushed) is renamed into place; then
   * COMPLETED reaches the store; only then does the staging copy go. (Before the rename, recovery resumes
   * the transfer; after it, recovery finds the whole file, checks it, and completes.)
   */
  private async complete(record: UploadRecord): Promise<void> {
    this.letGo(record.id)
    const part = this.hashes.get(record.id)
    this.hashes.delete(record.id)
    // Memory's hash is of the bytes this server wrote, each run begun in a file checked to be as the last one
    // left it (see prepareHash), each write made into a file holding exactly what was written before it, and
    // the run ended at its full length with no hole (see Transfer): so no second read of it. That is not
    // proof: bytes overwritten in place behind the run, or a cut between a check and its write that leaves a
    // hole too small to see, go unnoticed (the README says so). Without that hash, what is on disk is hashed.
    const digest = part && part.offset === record.totalSize ? part.hash.digest('hex') : await this.storage.hashFile(this.storage.transferPath(record))
    if (digest !== record.sha256) {
      return this.fail(record, `Stored bytes do not match what was received (sha256 ${digest}, expected ${record.sha256})`)
    }
    try {
      await this.storage.finalize(record)
    } catch (error) {
      return this.fail(record, faultReason(error, 'upload.finalize_failed', { id: record.id }))
    }
    const at = now()
    await this.durably({ ...record, status: 'COMPLETED', uploadedSize: record.totalSize, completedAt: at, updatedAt: at }, 'upload.completed')
    await this.storage.removeStaging(record).catch((error: unknown) => log('warn', 'upload.cleanup_failed', { id: record.id, error }))
  }

  /**
   * The transfer's file goes first (it may be what filled the disk, and without it recovery simply starts the
   * transfer over), then FAILED reaches the store, then the staging copy goes.
   */
  private async fail(record: UploadRecord, reason: string): Promise<void> {
    this.hashes.delete(record.id)
    this.letGo(record.id)
    await this.storage.removeTransfer(record).catch(() => undefined)
    await this.durably({ ...record, status: 'FAILED', error: reason, updatedAt: now() }, 'upload.failed')
    await this.storage.removeStaging(record).catch(() => undefined)
  }

  // ---- state ---------------------------------------------------------------------------------------------

  /** Writes a change; a store that cannot take it is the server's problem, answered as 503. */
  private async save(record: UploadRecord): Promise<void> {
    await this.guard(() => this.store.put(record, this.fenceOf(record.id)))
  }

  /**
   * The lease this process writes an upload's record under (the store refuses it once someone took over).
   * Shared, a write with no lease held would pass every fence, so it is refused here instead.
   */
  private fenceOf(id: string): string | undefined {
    const held = this.leases.held(id)
    if (!held && this.shared) throw new FencedError(`this instance no longer holds upload ${id}`)
    return held?.value
  }

  private async guard<T>(write: () => Promise<T>): Promise<T> {
    try {
      return await write()
    } catch (error) {
      if (error instanceof ServiceError) throw error
      log('error', 'store.write_failed', { error })
      // The client hears a stable sentence; the error (a path, an errno) is its cause, which the edge logs.
      throw unavailable("The change could not be saved (the server's state store failed); nothing was changed, try again", error)
    }
  }

  /** A stop (pause, cancel) whose new state cannot be saved undoes itself: the transfer runs on as recorded. */
  private async saveOrRestart(record: UploadRecord, offset: number, next: UploadRecord): Promise<void> {
    try {
      await this.save(next)
    } catch (error) {
      if (record.status === 'IN_PROGRESS' && !this.closed) {
        const current = { ...record, uploadedSize: offset }
        await this.prepareHash(current).then((at) => this.start({ ...current, uploadedSize: at }))
      }
      throw error
    }
  }

  /**
   * A change nobody waits for (completion, failure): retried until the store takes it, and logged, so
   * memory and disk never disagree in silence. If the server stops first, recovery at the next start
   * reaches the same outcome from the bytes on disk.
   */
  private async durably(record: UploadRecord, event: string): Promise<void> {
    let attempt = 0
    const saved = await retrying(
      () => this.closed,
      async () => {
        const fenced = () => void log('warn', 'upload.fenced', { id: record.id, status: record.status })
        try {
          // Its own lease, run out while the store was away, is taken again (as in removeRecord).
          if (this.shared && !this.leases.held(record.id) && !(await this.leases.acquire(record.id))) return fenced()
          await this.store.put(record, this.fenceOf(record.id))
          return true
        } catch (error) {
          // Another instance holds the upload now: what this one wanted to record is not its to say. (Not
          // fenceOf's own refusal, the lease lost again meanwhile: that is tried again.)
          if (error instanceof FencedError && this.leases.held(record.id)) return fenced()
          log('error', 'store.write_failed', { id: record.id, status: record.status, attempt: attempt++, error })
          return false
        }
      },
      false,
    )
    if (saved) this.announce(record, event)
  }

  private announce(record: UploadRecord, event: string): UploadView {
    const { id, filename, uploadedSize, totalSize, targetSpeed, error } = record
    log(record.status === 'FAILED' ? 'warn' : 'info', event, { id, filename, uploadedSize, totalSize, targetSpeed, error })
    const view = this.view(record)
    this.bus.publish(view)
    return view
  }

  /** Every running upload whose byte count moved since its last event. */
  private publishProgress(): void {
    // Alone, nobody listening means nobody to tell; shared, subscribers may be on any instance.
    if (this.feed.subscriberCount === 0 && !this.shared) {
      for (const run of this.runs.values()) run.published = run.offset
      return
    }
    const at = now()
    for (const [id, arriving] of this.arriving) {
      const received = arriving.received()
      arriving.meter.record(received)
      if (received === arriving.published) continue
      arriving.published = received
      // A store that cannot answer now (Redis away) skips this tick; the next one tries again.
      this.store.get(id).then(
        (record) => {
          if (record?.status === 'RECEIVING') this.bus.publish({ ...this.view(record), updatedAt: at })
        },
        () => undefined,
      )
    }
    for (const run of this.runs.values()) {
      if (run.offset === run.published) continue
      run.published = run.offset
      // The record did change (its byte count): updatedAt says when, and subscribers can see how fresh it is.
      run.updatedAt = at
      this.bus.publish(this.view(run.record))
    }
  }

  private async checkpoint(): Promise<void> {
    // A run whose lease just lapsed is about to stop; its count is the next owner's to record.
    const moved = [...this.runs.values()].filter(
      (run) => run.offset !== run.checkpointed && this.leases.held(run.record.id) !== undefined,
    )
    if (moved.length === 0) return
    const at = now()
    const entries = moved.map((run) => ({
      id: run.record.id,
      uploadedSize: run.offset,
      updatedAt: at,
      fence: this.leases.held(run.record.id)?.value,
    }))
    try {
      await this.store.progress(entries)
      for (const [i, run] of moved.entries()) run.checkpointed = entries[i]?.uploadedSize ?? run.checkpointed
      if (this.checkpointFailing) log('info', 'upload.checkpoint_recovered')
      this.checkpointFailing = false
    } catch (error) {
      if (!this.checkpointFailing) log('error', 'upload.checkpoint_failed', { error })
      this.checkpointFailing = true
    }
  }

  /** A state published by the instance that runs the upload: its live figures, until they go stale. */
  private remember(view: UploadView): void {
    if (view.status === 'IN_PROGRESS' || view.status === 'RECEIVING') this.remote.set(view.id, { view, at: performance.now() })
    else this.remote.delete(view.id)
  }

  private view(record: UploadRecord): UploadView {
    if (record.status === 'RECEIVING') {
      const arriving = this.arriving.get(record.id)
      if (!arriving) {
        // Arriving at another instance: its live count, as that instance last published it.
        const heard = this.remote.get(record.id)
        if (heard?.view.status === 'RECEIVING' && performance.now() - heard.at < REMOTE_FRESH_MS && heard.view.receivedSize >= record.receivedSize)
          return { ...record, receivedSize: heard.view.receivedSize, currentSpeed: heard.view.currentSpeed }
        return { ...record, currentSpeed: 0 }
      }
      return { ...record, receivedSize: arriving.received(), currentSpeed: Math.round(arriving.meter.rate()) }
    }
    const run = record.status === 'IN_PROGRESS' ? this.runs.get(record.id) : undefined
    if (!run) {
      const reached = record.status === 'IN_PROGRESS' ? this.finishing.get(record.id) : undefined
      if (reached === undefined && record.status === 'IN_PROGRESS') {
        // Running elsewhere: the store has its byte count of up to a second ago, its owner the live one.
        const heard = this.remote.get(record.id)
        if (heard && performance.now() - heard.at < REMOTE_FRESH_MS && heard.view.uploadedSize >= record.uploadedSize) {
          const { uploadedSize, currentSpeed, updatedAt } = heard.view
          return { ...record, uploadedSize, currentSpeed, updatedAt: updatedAt > record.updatedAt ? updatedAt : record.updatedAt }
        }
      }
      return { ...record, uploadedSize: reached ?? record.uploadedSize, currentSpeed: 0 }
    }
    return {
      ...record,
      targetSpeed: run.record.targetSpeed,
      uploadedSize: run.offset,
      updatedAt: run.updatedAt > record.updatedAt ? run.updatedAt : record.updatedAt,
      currentSpeed: Math.round(run.meter.rate()),
    }
  }

  private async record(id: string): Promise<UploadRecord> {
    const record = this.undone.has(id) ? undefined : await this.store.get(id)
    if (!record) throw notFound(id)
    return record
  }

  /** While an upload arrives, its sender decides when bytes move: stop sending to pause, send to go on. */
  private notReceiving(record: UploadRecord, action: string): void {
    if (record.status === 'RECEIVING') {
      throw this.conflict(record, action, 'it is still being received, and its sender controls that: it pauses by not sending, and goes on by sending again')
    }
  }

  private expect(record: UploadRecord, allowed: UploadStatus[], action: string, hint?: string): void {
    if (!allowed.includes(record.status)) throw this.conflict(record, action, hint)
  }

  /** `{status}` in the hint, as in the default one, is the record's status, named by each API in its own words. */
  private conflict(record: UploadRecord, action: string, hint = 'it is {status}'): ServiceError {
    return stateError(`Upload ${record.id} cannot be ${action}: ${hint}`, record.status)
  }

  private checkSpeed(value: number): number {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw badInput(`speed must be a whole number of bytes per second, 0 or more (0 = unlimited); got ${value}`)
    }
    return value
  }

  private assertOpen(): void {
    if (this.closed) throw unavailable('The server is shutting down')
  }

  /** A client's call: refused fast if the upload stays busy (a store that is down) rather than left hanging. */
  private command<T>(id: string, task: () => Promise<T>): Promise<T> {
    let started = false
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        if (!started) reject(unavailable(`Upload ${id} is busy; try again`))
      }, LOCK_WAIT_MS)
    })
    const run = this.locked(id, () => {
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

  /** Runs `task` after every earlier task on the same upload has settled. */
  private locked<T>(id: string, task: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(id) ?? Promise.resolve()
    const result = previous.then(task, task)
    const tail = result.catch(() => undefined)
    this.locks.set(id, tail)
    void tail.then(() => {
      if (this.locks.get(id) === tail) this.locks.delete(id)
    })
    return result
  }
}
