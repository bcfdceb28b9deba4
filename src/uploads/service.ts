import { createHash, randomUUID, type Hash } from 'node:crypto'
import { access, mkdir, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { badInput, notFound, ServiceError } from '../errors.js'
import { log } from '../log.js'
import { stored, type LiveState } from '../metrics.js'
import { storedNameFor } from './filename.js'
import type { StagedFile } from './ingest.js'
import { ProgressFeed } from './progress.js'
import { RateMeter } from './rate.js'
import { sweep, verifiedPrefix } from './recovery.js'
import { isFinal, type UploadRecord, type UploadStatus, type UploadView } from './record.js'
import type { Store } from './store.js'
import { runTransfer } from './transfer.js'

/** Progress events per upload: at most one per this many ms while bytes move (state changes go at once). */
const PROGRESS_EVERY_MS = 100
/** Running uploads' byte counts reach the state file about this often. */
const CHECKPOINT_EVERY_MS = 1000

export interface UploadServiceOptions {
  uploadDir: string
  store: Store
  defaultSpeed: number
}

/** One transfer run, from a start or resume to its pause, cancel, end or failure. */
interface Run {
  controller: AbortController
  /** The copy itself: resolves with the offset it reached. */
  copied: Promise<number>
  meter: RateMeter
}

/** What an unfinished upload needs in memory besides its record. */
interface Live {
  /** sha256 of the bytes in `.part`, as read back from it; carried across pauses. */
  hash: Hash
  run: Run | undefined
  progressTimer: NodeJS.Timeout | undefined
}

/** A transfer's partial file in storage: `{uuid}_{name}.part`. */
const PART_FILE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}_.*\.part$/

const now = () => new Date().toISOString()

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  )

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

/**
 * Owns every upload's state machine: IN_PROGRESS ⇄ PAUSED → COMPLETED | CANCELED | FAILED. It is the only
 * writer of the store, and every change of state is on disk before the call that made it returns. Calls on
 * the same upload run one at a time (a per-upload lock), so racing clients see one consistent order.
 */
export class UploadService {
  readonly feed = new ProgressFeed()
  readonly stagingDir: string
  private readonly live = new Map<string, Live>()
  private readonly locks = new Map<string, Promise<unknown>>()
  private readonly checkpoint: NodeJS.Timeout
  private dirty = false
  private closed = false

  private constructor(private readonly options: UploadServiceOptions) {
    this.stagingDir = join(options.uploadDir, '.staging')
    this.checkpoint = setInterval(() => {
      if (!this.dirty) return
      this.dirty = false
      this.options.store.save().catch(() => (this.dirty = true))
    }, CHECKPOINT_EVERY_MS).unref()
  }

  static async open(options: UploadServiceOptions): Promise<UploadService> {
    const service = new UploadService(options)
    await mkdir(service.stagingDir, { recursive: true })
    await service.recover()
    return service
  }

  /**
   * After a restart: removes staging files of bodies that never finished arriving and bytes no record owns,
   * then carries on every unfinished upload from the bytes in its `.part` that match staging.
   */
  private async recover(): Promise<void> {
    const records = this.options.store.list()
    const unfinished = records.filter((record) => !isFinal(record.status))
    const staged = new Set(unfinished.map((record) => record.id))
    const owned = new Set(records.map((record) => record.storedName))
    for (const record of unfinished) owned.add(`${record.storedName}.part`)
    await sweep(this.stagingDir, (name) => staged.has(name))
    await sweep(this.options.uploadDir, (name) => !PART_FILE.test(name) || owned.has(name))
    for (const record of unfinished) {
      const live = this.liveOf(record)
      void this.locked(record.id, async () => {
        if (this.closed || this.options.store.get(record.id) !== record) return
        if (!(await exists(this.stagingPath(record)))) {
          return this.fail(record, 'Its received bytes are gone from the staging folder; upload it again')
        }
        const { offset, hash } = await verifiedPrefix(this.partPath(record), this.stagingPath(record))
        live.hash = hash
        record.uploadedSize = offset
        if (record.status === 'IN_PROGRESS') this.start(record)
        await this.commit(record, record.status, 'upload.recovered')
      }).catch((error: unknown) => this.locked(record.id, () => this.fail(record, describe(error))))
    }
  }

  /** What the metrics gauges read when scraped. */
  readonly liveState: LiveState = {
    countByStatus: () => {
      const counts: Record<string, number> = {}
      for (const record of this.options.store.list()) counts[record.status] = (counts[record.status] ?? 0) + 1
      return counts
    },
    activeTransfers: () => [...this.live.values()].filter((live) => live.run).length,
    subscriptions: () => this.feed.subscriberCount,
  }

  // ---- queries -------------------------------------------------------------------------------------------

  get(id: string): UploadView {
    return this.view(this.record(id))
  }

  list(): UploadView[] {
    return this.options.store.list().map((record) => this.view(record))
  }

  /** Uploads whose complete file is in storage. */
  files(): UploadView[] {
    return this.list().filter((upload) => upload.status === 'COMPLETED')
  }

  /** Live states of one upload, or of every upload when `id` is undefined (starting with the active ones). */
  watch(id?: string): AsyncIterableIterator<UploadView> {
    if (id !== undefined) this.record(id)
    return this.feed.follow(id, () =>
      id !== undefined ? [this.get(id)] : this.list().filter((upload) => !isFinal(upload.status)),
    )
  }

  /** Why the service cannot take uploads now, or undefined when it can: open, and its storage writable. */
  async notReady(): Promise<string | undefined> {
    if (this.closed) return 'shutting down'
    const probe = join(this.stagingDir, '.ready-probe')
    try {
      await writeFile(probe, '')
      await rm(probe, { force: true })
      return undefined
    } catch (error) {
      return `storage is not writable: ${describe(error)}`
    }
  }

  // ---- commands ------------------------------------------------------------------------------------------

  async create(file: StagedFile, speed?: number | null): Promise<UploadView> {
    const targetSpeed = this.speed(speed ?? this.options.defaultSpeed)
    this.assertOpen()
    const id = randomUUID()
    const at = now()
    const record: UploadRecord = {
      id,
      filename: file.filename,
      storedName: storedNameFor(id, file.filename),
      status: 'IN_PROGRESS',
      uploadedSize: 0,
      totalSize: file.size,
      targetSpeed,
      sha256: file.sha256,
      error: null,
      createdAt: at,
      updatedAt: at,
      completedAt: null,
    }
    await file.moveTo(this.stagingPath(record))
    return this.locked(id, async () => {
      this.options.store.insert(record)
      this.start(record)
      return this.commit(record, 'IN_PROGRESS', 'upload.started')
    })
  }

  pause(id: string): Promise<UploadView> {
    return this.locked(id, async () => {
      const record = this.record(id)
      this.expect(record, ['IN_PROGRESS'], 'paused')
      const offset = await this.stop(record)
      if (offset === record.totalSize) {
        // The last chunk landed while we asked: finish it, and say it can no longer be paused.
        await this.complete(record)
        throw this.conflict(record, 'paused')
      }
      return this.commit(record, 'PAUSED', 'upload.paused')
    })
  }

  resume(id: string, speed?: number | null): Promise<UploadView> {
    return this.locked(id, async () => {
      const record = this.record(id)
      const targetSpeed = speed == null ? record.targetSpeed : this.speed(speed)
      this.expect(record, ['PAUSED'], 'resumed')
      this.assertOpen()
      record.targetSpeed = targetSpeed
      record.status = 'IN_PROGRESS'
      this.start(record)
      return this.commit(record, 'IN_PROGRESS', 'upload.resumed')
    })
  }

  cancel(id: string): Promise<UploadView> {
    return this.locked(id, async () => {
      const record = this.record(id)
      this.expect(record, ['IN_PROGRESS', 'PAUSED'], 'canceled')
      await this.stop(record)
      await this.removeBytes(record)
      record.uploadedSize = 0
      return this.commit(record, 'CANCELED', 'upload.canceled')
    })
  }

  /** Removes an ended upload's record and whatever bytes it still has; answers with the record as it was. */
  delete(id: string): Promise<UploadView> {
    return this.locked(id, async () => {
      const record = this.record(id)
      this.expect(record, ['COMPLETED', 'CANCELED', 'FAILED'], 'deleted', 'cancel it first')
      const view = this.view(record)
      await Promise.all([this.removeBytes(record), rm(this.storedPath(record), { force: true })])
      this.options.store.remove(id)
      await this.options.store.save()
      log('info', 'upload.deleted', { id, filename: record.filename })
      return view
    })
  }

  /**
   * Stops every transfer after its chunk in flight and saves where each one got to. Their records stay
   * IN_PROGRESS, so the next start carries them on.
   */
  async close(): Promise<void> {
    this.closed = true
    this.stopCheckpoints()
    this.feed.close()
    await Promise.all(
      [...this.live.keys()].map((id) =>
        this.locked(id, async () => {
          const record = this.options.store.get(id)
          if (record) await this.stop(record)
        }),
      ),
    )
    await this.options.store.save()
  }

  private stopCheckpoints(): void {
    clearInterval(this.checkpoint)
  }

  // ---- the transfer --------------------------------------------------------------------------------------

  private start(record: UploadRecord): void {
    const live = this.liveOf(record)
    const controller = new AbortController()
    const meter = new RateMeter()
    meter.record(record.uploadedSize)
    const copied = runTransfer({
      source: this.stagingPath(record),
      target: this.partPath(record),
      offset: record.uploadedSize,
      total: record.totalSize,
      speed: record.targetSpeed,
      hash: live.hash,
      signal: controller.signal,
      onProgress: (offset) => {
        stored.bytes += offset - record.uploadedSize
        record.uploadedSize = offset
        meter.record(offset)
        this.progressed(record, live)
      },
    })
    const run: Run = { controller, copied, meter }
    live.run = run
    // Whoever stops a run (pause, cancel, close) handles its outcome; a run that ends by itself is ours.
    copied.then(
      (offset) => {
        if (offset === record.totalSize) void this.finishRun(record, run, () => this.complete(record))
      },
      (error: unknown) => void this.finishRun(record, run, () => this.fail(record, describe(error))),
    )
  }

  private finishRun(record: UploadRecord, run: Run, finish: () => Promise<unknown>): Promise<unknown> {
    return this.locked(record.id, async () => {
      if (this.live.get(record.id)?.run !== run || this.closed) return
      await finish()
    }).catch(() => undefined)
  }

  /** Aborts the running copy, if any, and waits for its chunk in flight: no byte moves after this. */
  private async stop(record: UploadRecord): Promise<number> {
    const live = this.live.get(record.id)
    const run = live?.run
    if (!live || !run) return record.uploadedSize
    live.run = undefined
    run.controller.abort()
    const offset = await run.copied.catch(() => record.uploadedSize)
    record.uploadedSize = offset
    return offset
  }

  private async complete(record: UploadRecord): Promise<void> {
    const live = this.liveOf(record)
    live.run = undefined
    try {
      // The hash of the file as stored (the transfer read back every chunk it wrote), against the one taken
      // while the upload arrived.
      const digest = live.hash.digest('hex')
      if (digest !== record.sha256) {
        return await this.fail(record, `Stored bytes do not match what was received (sha256 ${digest}, expected ${record.sha256})`)
      }
      await rename(this.partPath(record), this.storedPath(record))
      await rm(this.stagingPath(record), { force: true })
    } catch (error) {
      return this.fail(record, describe(error))
    }
    record.completedAt = now()
    await this.commit(record, 'COMPLETED', 'upload.completed')
  }

  private async fail(record: UploadRecord, reason: string): Promise<void> {
    const live = this.live.get(record.id)
    if (live) live.run = undefined
    record.error = reason
    await this.removeBytes(record).catch(() => undefined)
    await this.commit(record, 'FAILED', 'upload.failed')
  }

  // ---- state ---------------------------------------------------------------------------------------------

  /**
   * Sets the status, writes the store and publishes the new state. The write finishes before the caller's
   * answer goes out: an acknowledged change survives a crash.
   */
  private async commit(record: UploadRecord, status: UploadStatus = record.status, event?: string): Promise<UploadView> {
    record.status = status
    record.updatedAt = now()
    if (event) {
      const { id, filename, uploadedSize, totalSize, targetSpeed, error } = record
      log(status === 'FAILED' ? 'warn' : 'info', event, { id, filename, uploadedSize, totalSize, targetSpeed, error })
    }
    const live = this.live.get(record.id)
    if (live) {
      clearTimeout(live.progressTimer)
      live.progressTimer = undefined
      if (isFinal(status)) this.live.delete(record.id)
    }
    await this.options.store.save()
    const view = this.view(record)
    this.feed.publish(view)
    return view
  }

  /** Called per chunk: marks the checkpoint dirty and publishes at most every PROGRESS_EVERY_MS. */
  private progressed(record: UploadRecord, live: Live): void {
    this.dirty = true
    live.progressTimer ??= setTimeout(() => {
      live.progressTimer = undefined
      if (record.status !== 'IN_PROGRESS') return
      // The record did change (its byte count): updatedAt says when, and subscribers can see how fresh it is.
      record.updatedAt = now()
      this.feed.publish(this.view(record))
    }, PROGRESS_EVERY_MS)
  }

  private view(record: UploadRecord): UploadView {
    const run = record.status === 'IN_PROGRESS' ? this.live.get(record.id)?.run : undefined
    return { ...record, currentSpeed: run ? run.meter.rate() : 0 }
  }

  private record(id: string): UploadRecord {
    const record = this.options.store.get(id)
    if (!record) throw notFound(id)
    return record
  }

  private liveOf(record: UploadRecord): Live {
    let live = this.live.get(record.id)
    if (!live) {
      live = { hash: createHash('sha256'), run: undefined, progressTimer: undefined }
      this.live.set(record.id, live)
    }
    return live
  }

  private expect(record: UploadRecord, allowed: UploadStatus[], action: string, hint?: string): void {
    if (!allowed.includes(record.status)) throw this.conflict(record, action, hint)
  }

  private conflict(record: UploadRecord, action: string, hint?: string): ServiceError {
    const state = record.status.toLowerCase()
    const why = hint ?? `it is ${state}`
    return new ServiceError('INVALID_STATE', `Upload ${record.id} cannot be ${action}: ${why}`)
  }

  private speed(value: number): number {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw badInput(`speed must be a whole number of bytes per second, 0 or more (0 = unlimited); got ${value}`)
    }
    return value
  }

  private assertOpen(): void {
    if (this.closed) throw new ServiceError('INVALID_STATE', 'The server is shutting down')
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

  private async removeBytes(record: UploadRecord): Promise<void> {
    await Promise.all([rm(this.partPath(record), { force: true }), rm(this.stagingPath(record), { force: true })])
  }

  private stagingPath(record: UploadRecord): string {
    return join(this.stagingDir, record.id)
  }

  private partPath(record: UploadRecord): string {
    return `${this.storedPath(record)}.part`
  }

  private storedPath(record: UploadRecord): string {
    return join(this.options.uploadDir, record.storedName)
  }
}
