import type { UploadRecord, UploadStatus } from '../../model/record.js'
import type { HookEvent } from '../outbox/index.js'

/** A running upload's byte count, checkpointed about once a second (state changes go through `put`). */
export interface Progress {
  id: string
  uploadedSize: number
  updatedAt: string
  /** The writer's lease (see seams/leases): a store shared by several processes writes only under the current one. */
  fence?: string
}

export interface PageQuery {
  /** Only uploads in these states; all when absent. */
  status?: readonly UploadStatus[]
  /**
   * Only this owner's uploads (a token's `sub`), read from the store's owner index: what it costs grows with
   * that owner's uploads, not everyone's. Absent: every owner's, the operator's (no owner) included.
   */
  owner?: string
  /** An `endCursor` from an earlier page: the page starts after it. */
  after?: string
  first: number
}

export interface Page {
  records: UploadRecord[]
  hasNextPage: boolean
  /** Cursor of the last record on the page; null when the page is empty. */
  endCursor: string | null
}

/**
 * Where upload records live: the embedded store (lowdb and a journal, one process) or Redis (several
 * instances). A write resolves once it is durable, and only then do reads see it: an acknowledged change
 * survives a crash, and memory never holds what the disk does not. Records are never mutated in place; a
 * change is a new record passed to `put`.
 */
export interface RecordStore {
  get(id: string): Promise<UploadRecord | undefined>
  /** Oldest first (by createdAt, then id). */
  page(query: PageQuery): Promise<Page>
  /** Every upload that has not ended (RECEIVING, IN_PROGRESS, PAUSED), oldest first. */
  unfinished(): Promise<UploadRecord[]>
  /** How many uploads are in each state: every state, 0 for none (a gauge that drops to 0 says so). */
  countByStatus(): Promise<Record<UploadStatus, number>>
  /**
   * Writes a whole record. With `fence` (a lease's value), a store shared by several processes refuses with
   * a FencedError when that lease is no longer the upload's current one. `events` are the notifications the
   * change causes (issue 23): queued in the store's outbox in the same durable write, so they are kept
   * exactly when the change is (a refused write queues none). An eventId already queued is not queued again.
   */
  put(record: UploadRecord, fence?: string, events?: readonly HookEvent[]): Promise<void>
  remove(id: string, fence?: string, events?: readonly HookEvent[]): Promise<void>
  /** Byte counts of running uploads; applied only to records that have not ended meanwhile, and never past their size. */
  progress(entries: readonly Progress[]): Promise<void>
  close(): Promise<void>
}

/** A write under a lease that another process has since taken over: it did not happen. */
export class FencedError extends Error {
  override readonly name = 'FencedError'
}
