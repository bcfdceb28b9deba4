import { isFinal, isReceiving, isStored, UPLOAD_STATUSES, type UploadRecord, type UploadStatus } from '../model/record.js'

/** A running upload's byte count, checkpointed about once a second (state changes go through `put`). */
export interface Progress {
  id: string
  uploadedSize: number
  updatedAt: string
  /** The writer's lease (see lease.ts): a store shared by several processes writes only under the current one. */
  fence?: string
}

export interface PageQuery {
  /** Only uploads in these states; all when absent. */
  status?: readonly UploadStatus[]
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
   * a FencedError when that lease is no longer the upload's current one.
   */
  put(record: UploadRecord, fence?: string): Promise<void>
  remove(id: string, fence?: string): Promise<void>
  /** Byte counts of running uploads; applied only to records that have not ended meanwhile, and never past their size. */
  progress(entries: readonly Progress[]): Promise<void>
  close(): Promise<void>
}

/** A write under a lease that another process has since taken over: it did not happen. */
export class FencedError extends Error {
  override readonly name = 'FencedError'
}

/** Creation order: a cursor is the sort key of the last record seen, opaque to clients. */
export const sortKey = (record: Pick<UploadRecord, 'createdAt' | 'id'>) => `${record.createdAt}|${record.id}`
export const encodeCursor = (key: string) => Buffer.from(key).toString('base64url')
export function decodeCursor(cursor: string): string | undefined {
  const key = Buffer.from(cursor, 'base64url').toString()
  return /^\d{4}-\d\d-\d\dT[\d:.]+Z\|.+$/.test(key) ? key : undefined
}

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/
const HEX64 = /^[0-9a-f]{64}$/
const count = (value: unknown) => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0

/**
 * What is wrong with a record read back from storage, or undefined when it is whole. A state file is
 * trusted with paths (the stored name is joined to the folder), so a record that could point outside it is
 * as wrong as one that is missing a field.
 */
export function recordProblem(value: unknown, id?: string): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'is not an object'
  const r = value as Record<string, unknown>
  if (typeof r.id !== 'string' || r.id === '') return 'has no id'
  if (id !== undefined && r.id !== id) return `is filed under ${JSON.stringify(id)} but has id ${JSON.stringify(r.id)}`
  if (typeof r.filename !== 'string') return 'has no filename'
  if (typeof r.storedName !== 'string' || !r.storedName.startsWith(`${r.id}_`) || /[/\\\0]/.test(r.storedName))
    return 'has a storedName that is not {id}_{name}'
  if (typeof r.status !== 'string' || !UPLOAD_STATUSES.includes(r.status as UploadStatus))
    return `has an unknown status ${JSON.stringify(r.status)}`
  for (const field of ['uploadedSize', 'totalSize', 'targetSpeed'] as const)
    if (!count(r[field])) return `has no whole, non-negative ${field}`
  if ((r.uploadedSize as number) > (r.totalSize as number)) return 'has more bytes uploaded than its size'
  if (!count(r.receivedSize)) return 'has no whole, non-negative receivedSize'
  if (r.source !== 'multipart' && r.source !== 'tus') return `has an unknown source ${JSON.stringify(r.source)}`
  for (const field of ['expiresAt', 'receivedAt'] as const)
    if (r[field] !== null && (typeof r[field] !== 'string' || !ISO.test(r[field]))) return `has a ${field} that is not a time`
  // Known once every byte is in: an upload still arriving, or one that ended before it all did, has none.
  const status = r.status as UploadStatus // checked above
  const mayLackHash = isReceiving(status) || (isFinal(status) && !isStored(status))
  if (typeof r.sha256 !== 'string' || !(HEX64.test(r.sha256) || (mayLackHash && r.sha256 === ''))) return 'has no sha256'
  if (r.error !== null && typeof r.error !== 'string') return 'has an error that is not text'
  for (const field of ['createdAt', 'updatedAt'] as const)
    if (typeof r[field] !== 'string' || !ISO.test(r[field] as string)) return `has no ${field}`
  if (r.completedAt !== null && (typeof r.completedAt !== 'string' || !ISO.test(r.completedAt)))
    return 'has a completedAt that is not a time'
  if (isStored(status) && r.completedAt === null) return 'is completed but has no completedAt'
  return undefined
}

export const unfinished = (record: UploadRecord) => !isFinal(record.status)

/**
 * A record as stored before uploads could be received over time (no receivedSize, source, expiresAt or receivedAt):
 * it had arrived whole, over multipart. Applied before a record read back is checked.
 */
export function withDefaults(value: unknown): unknown {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return value
  const r = value as Record<string, unknown>
  if ('receivedSize' in r && 'source' in r && 'expiresAt' in r && 'receivedAt' in r) return value
  // It had arrived whole when it was recorded (or, with the rest of these fields, ended before receivedAt was kept).
  const receivedAt = isReceiving(r.status as UploadStatus) || r.sha256 === '' ? null : r.createdAt
  return { receivedSize: r.totalSize, source: 'multipart', expiresAt: null, receivedAt, ...r }
}
