import type { Principal } from '../auth/principal.js'
import {
  inList,
  listFilter,
  reachable,
  requireAdmin,
  requireScope,
  type ListFilter,
  type Need,
} from '../auth/rules.js'
import { badInput, ServiceError } from '../errors.js'
import type { UploadRecord, UploadStatus, UploadView } from '../model/record.js'
import type { Limits } from '../seams/bus/index.js'
import type { PageQuery } from '../seams/records/index.js'
import type { StoredReader } from '../seams/storage/index.js'
import { encodeCursor, sortKey } from '../seams/records/order.js'
import { admit, heldToCap, runningRefusal, speedFor, speedRefusal, type Usage } from '../auth/quotas.js'
import type { IncomingFile } from './ingest/ingest.js'
import { ENDED, isFinal, isLive, isReceiving } from './machine.js'
import type { UploadPage, UploadService } from './service.js'

type Counts = Awaited<ReturnType<UploadService['counts']>>

/** A page of one owner's uploads is filled from pages of everyone's this large. */
const SCAN_PAGE = 500

const missing = (error: unknown): undefined => {
  if (error instanceof ServiceError && error.code === 'NOT_FOUND') return undefined
  throw error
}

/**
 * The upload service as one caller may use it: every transport (GraphQL over HTTP, SSE and graphql-ws, the
 * REST shim, tus, downloads) reaches the service through this, so who may see and do what is decided here
 * once (the rules are auth/rules.ts). Another user's upload answers exactly as a missing one.
 *
 * An admission (counting what the owner holds, checking it against their quotas, putting the new upload on
 * record) runs under the owner's lock across every instance (UploadService.admitting), so two creations at
 * two instances cannot both take the last of a quota.
 */
export class OwnedService {
  constructor(
    readonly service: UploadService,
    readonly principal: Principal,
    /**
     * The request body's Content-Length, if known: a multipart file is at most this large, so it is what the
     * stored-bytes quota counts it as before any of it is read.
     */
    readonly bodyLength?: number,
  ) {}

  /** Whether the caller's quotas let this upload start (speed 422, bytes 413, running 429); its speed. */
  private async admitted(size: number, speed: number | null | undefined): Promise<number> {
    const { quotas } = this.principal
    const asked = speed ?? undefined
    const refused = admit(quotas, await this.usage(), { size, speed: asked })
    if (refused) throw refused
    // A caller naming no speed gets the default, held to their cap.
    return speedFor(quotas, asked, this.service.defaultSpeed)
  }

  private limited(): boolean {
    const { bytes, running, speed } = this.principal.quotas
    return this.principal.sub !== null && (bytes > 0 || running > 0 || speed > 0)
  }

  /** The record, if this caller may `need` it; NOT_FOUND (as for a missing id) otherwise. */
  async reach(id: string, need: Need): Promise<UploadView> {
    // The scope is asked before the lookup, so a token without it learns nothing of which ids exist.
    requireScope(this.principal, need)
    return reachable(this.principal, need, id, await this.service.get(id).catch(missing))
  }

  get(id: string): Promise<UploadView> {
    return this.reach(id, 'read')
  }

  /** The stored file of an upload this caller may read, open for a download (see UploadService.openStored). */
  async openStored(id: string): Promise<StoredReader> {
    await this.reach(id, 'read')
    return this.service.openStored(id)
  }

  /** Where a download of an upload this caller may read is served from instead (S3_PRESIGN_DOWNLOADS). */
  async downloadLocation(id: string): Promise<string | undefined> {
    await this.reach(id, 'read')
    return this.service.downloadLocation(id)
  }

  /** How many of a view's bytes storage has acknowledged (the view was already reached by its reader). */
  acknowledgedSize(view: UploadView): number {
    return this.service.acknowledgedSize(view)
  }

  /** A page of the uploads this caller may list: their own, or an admin's pick (everyone's, or one owner's). */
  async page(query: PageQuery & { owner?: string }): Promise<UploadPage> {
    const { owner, ...rest } = query
    const filter = listFilter(this.principal, owner)
    if (filter.kind === 'all') return this.service.page(rest)
    // An owner's uploads come from the store's owner index: as cheap with 100k of others' as with none.
    if (filter.owner !== null) return this.service.page({ ...rest, owner: filter.owner })
    const uploads: UploadView[] = []
    let after = rest.after
    // The operator's (no owner) are in no index: filled from everyone's pages, in their order; one more
    // than asked for says whether a next page exists.
    for (;;) {
      const page = await this.service.page({ ...rest, first: SCAN_PAGE, after })
      for (const upload of page.uploads) if (inList(filter, upload)) uploads.push(upload)
      if (uploads.length > rest.first || !page.hasNextPage || !page.endCursor) break
      after = page.endCursor
    }
    const shown = uploads.slice(0, rest.first)
    const last = shown.at(-1)
    return {
      uploads: shown,
      hasNextPage: uploads.length > rest.first,
      endCursor: last ? encodeCursor(sortKey(last)) : null,
    }
  }

  /** How many uploads the caller may list, by status. */
  async counts(): Promise<Counts> {
    const filter = listFilter(this.principal)
    if (filter.kind === 'all') return this.service.counts()
    const counts = { receiving: 0, inProgress: 0, paused: 0, completed: 0, canceled: 0, failed: 0 }
    const field: Record<UploadStatus, keyof typeof counts> = {
      RECEIVING: 'receiving',
      IN_PROGRESS: 'inProgress',
      PAUSED: 'paused',
      COMPLETED: 'completed',
      CANCELED: 'canceled',
      FAILED: 'failed',
    }
    for await (const upload of this.all(filter)) counts[field[upload.status]]++
    return { total: Object.values(counts).reduce((a, b) => a + b, 0), ...counts }
  }

  /** Every upload `filter` lets through: one owner's from the owner index, the operator's by a scan. */
  private async *all(filter: ListFilter, status?: UploadStatus[]): AsyncGenerator<UploadView> {
    const owner = filter.kind === 'owner' && filter.owner !== null ? { owner: filter.owner } : {}
    let after: string | undefined
    for (;;) {
      const page = await this.service.page({ status, first: SCAN_PAGE, after, ...owner })
      for (const upload of page.uploads) if (inList(filter, upload)) yield upload
      if (!page.hasNextPage || !page.endCursor) return
      after = page.endCursor
    }
  }

  /** What the caller holds now: derived from the records, which every instance shares (see quotas.ts). */
  async usage(): Promise<Usage> {
    const usage: Usage = { bytesStored: 0, running: 0 }
    if (this.principal.sub === null) return usage
    for await (const upload of this.all({ kind: 'owner', owner: this.principal.sub })) {
      if (upload.status !== 'CANCELED' && upload.status !== 'FAILED')
        usage.bytesStored += isReceiving(upload.status)
          ? Math.max(upload.totalSize, upload.claimedSize ?? 0)
          : upload.totalSize
      if (isLive(upload.status)) usage.running++
    }
    return usage
  }

  limits(): Limits {
    requireScope(this.principal, 'read')
    return this.service.limits()
  }

  /** The cap on every user's transfers together: an admin's alone. */
  setMaxTotalSpeed(speed: number): Limits {
    this.requireAdmin()
    return this.service.setMaxTotalSpeed(speed)
  }

  /** One upload's live states, or those of every upload the caller may list. */
  async watch(id?: string): Promise<AsyncIterableIterator<UploadView>> {
    if (id !== undefined) {
      await this.reach(id, 'read')
      return this.service.watch(id)
    }
    const filter = listFilter(this.principal)
    const feed = await this.service.watch()
    if (filter.kind === 'all') return feed
    return only(feed, (view) => inList(filter, view))
  }

  // ---- what changes uploads ------------------------------------------------------------------------------

  /**
   * A multipart upload, its quotas asked before its first byte is read: its size is the request's
   * Content-Length (the file and a little form framing), the only figure known by then.
   */
  async create(file: IncomingFile, speed?: number | null): Promise<UploadView> {
    requireScope(this.principal, 'write')
    const owner = this.principal.sub
    if (owner === null || !this.limited()) return this.service.create(file, speed, owner)
    const { bytes } = this.principal.quotas
    // Without a declared length its size is known only once it has all arrived: too late for a quota on
    // stored bytes, so such a body is asked for its length (every browser and curl -F sends one).
    if (bytes > 0 && this.bodyLength === undefined)
      throw new ServiceError(
        'LENGTH_REQUIRED',
        'Your uploads have a quota on stored bytes: send the request with a Content-Length, not chunked',
      )
    const size = this.bodyLength ?? 0
    // Asked at once, so a refusal comes before the body is awaited; asked again as it is recorded, under the
    // owner's lock, since another creation may have taken the room meanwhile. While it arrives it counts as
    // its Content-Length (claimedSize), so a creation after it cannot take the same room.
    const allowed = await this.admitted(size, speed)
    return this.service.create(
      file,
      allowed,
      owner,
      (record) =>
        this.service.admitting(owner, async () => {
          const refused = admit(this.principal.quotas, await this.usage(), { size })
          if (refused) throw refused
          await record()
        }),
      bytes > 0 ? size : undefined,
      // The pre-create hook's speed, as on tus (createResumable).
      (approved) => heldToCap(this.principal.quotas, approved),
    )
  }

  /**
   * A tus creation asked of the pre-create hook at the speed this caller would get: a speed over their cap
   * is refused (422) before the hook is asked, and no speed is the default held to their cap.
   */
  approveResumable(proposal: Parameters<UploadService['approveResumable']>[0]) {
    requireScope(this.principal, 'write')
    if (this.principal.sub === null || !this.limited()) return this.service.approveResumable(proposal)
    const { quotas } = this.principal
    const refused = proposal.speed == null ? undefined : speedRefusal(quotas, proposal.speed)
    if (refused) throw refused
    const speed = speedFor(quotas, proposal.speed ?? undefined, this.service.defaultSpeed)
    return this.service.approveResumable({ ...proposal, speed })
  }

  /** A tus upload: its size is declared up front, so its quotas are asked exactly, before it is on record. */
  createResumable(input: { id: string; filename: string; size: number; speed?: number | null }) {
    requireScope(this.principal, 'write')
    const owner = this.principal.sub
    if (owner === null || !this.limited())
      return this.service.createResumable({ ...input, owner: this.principal.sub })
    // Under the owner's lock until it is on record: the next admission counts it. Its speed is what the
    // pre-create hook answered (a speed the caller named over their cap was refused before it was asked), held
    // to the cap as on every transport.
    const approved = input.speed == null ? input.speed : heldToCap(this.principal.quotas, input.speed)
    return this.service.admitting(owner, async () => {
      const speed = await this.admitted(input.size, approved)
      return this.service.createResumable({ ...input, speed, owner })
    })
  }

  async pause(id: string): Promise<UploadView> {
    await this.reach(id, 'write')
    return this.service.pause(id)
  }

  /** A paused upload runs again: one more running upload, at a speed within the caller's cap. */
  async resume(id: string, speed?: number | null): Promise<UploadView> {
    const upload = await this.reach(id, 'write')
    const owner = this.principal.sub
    if (owner === null || !this.limited()) return this.service.resume(id, speed)
    return this.service.admitting(owner, async () => {
      const { quotas } = this.principal
      const refused =
        speedRefusal(quotas, speed ?? upload.targetSpeed) ??
        // One more running upload; no more stored bytes (they are counted already, whatever the quota is now).
        (upload.status === 'PAUSED' ? runningRefusal(quotas, await this.usage()) : undefined)
      if (refused) throw refused
      return this.service.resume(id, speed)
    })
  }

  async setSpeed(id: string, speed: number): Promise<UploadView> {
    await this.reach(id, 'write')
    const refused = this.principal.sub === null ? undefined : speedRefusal(this.principal.quotas, speed)
    if (refused) throw refused
    return this.service.setSpeed(id, speed)
  }

  async cancel(id: string): Promise<UploadView> {
    await this.reach(id, 'write')
    return this.service.cancel(id)
  }

  async delete(id: string, keepFile = false): Promise<UploadView> {
    await this.reach(id, 'write')
    return this.service.delete(id, keepFile)
  }

  /** Deletes the caller's ended uploads in `statuses` (an admin's: everyone's). */
  async clear(statuses: readonly UploadStatus[] = ENDED, keepFiles = false): Promise<number> {
    requireScope(this.principal, 'write')
    if (this.principal.scopes.admin) return this.service.clear(statuses, keepFiles)
    const running = statuses.filter((status) => !isFinal(status))
    if (running.length > 0) throw badInput(`only ended uploads can be cleared; not ${running.join(', ')}`)
    const mine: UploadRecord[] = []
    for await (const upload of this.all(listFilter(this.principal), [...statuses])) mine.push(upload)
    let removed = 0
    for (const upload of mine) await this.service.delete(upload.id, keepFiles).then(() => removed++, missing)
    return removed
  }

  private requireAdmin(): void {
    requireAdmin(this.principal)
  }
}

/** The states of `feed` that pass `keep`; ending it ends the feed. */
function only(
  feed: AsyncIterableIterator<UploadView>,
  keep: (view: UploadView) => boolean,
): AsyncIterableIterator<UploadView> {
  const filtered: AsyncIterableIterator<UploadView> = {
    async next() {
      for (;;) {
        const step = await feed.next()
        if (step.done || keep(step.value)) return step
      }
    },
    return: async (value?: unknown) => feed.return?.(value) ?? { done: true, value: undefined },
    throw: async (error?: unknown) => feed.throw?.(error) ?? { done: true, value: undefined },
    [Symbol.asyncIterator]: () => filtered,
  }
  return filtered
}
