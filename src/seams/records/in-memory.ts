import { UPLOAD_STATUSES, type UploadRecord, type UploadStatus } from '../../model/record.js'
import type { Page, PageQuery } from './index.js'
import { applyProgress, unfinished } from './local-files.js'
import { decodeCursor, encodeCursor, idOf, insertSorted, lowerBound, sortKey, upperBound } from './order.js'

function removeSorted(keys: string[], key: string): void {
  const at = lowerBound(keys, key)
  if (keys[at] === key) keys.splice(at, 1)
}

/**
 * The embedded store's records as they are known, with the orders that pages walk: apart from local.ts, which
 * decides when a change may be applied here (once its journal line is durable) and how it is kept on disk.
 * `records` is the snapshot's own `uploads` object, so a snapshot written from it holds exactly this.
 */
export class InMemoryRecords {
  /** Sort keys in creation order, for pages; kept sorted by insertion (new records almost always go last). */
  private readonly order: string[] = []
  /**
   * The owner index: each owner's sort keys, in creation order as `order`. Built from the records on open
   * and kept with every put and removal, so it is never on disk and cannot disagree with what is.
   */
  private readonly owned = new Map<string, string[]>()

  constructor(private readonly records: Record<string, UploadRecord>) {
    for (const record of Object.values(this.records)) {
      Object.freeze(record)
      this.order.push(sortKey(record))
      if (record.owner) this.ownedBy(record.owner).push(sortKey(record))
    }
    this.order.sort()
    for (const keys of this.owned.values()) keys.sort()
  }

  // ---- reads ---------------------------------------------------------------------------------------------

  get(id: string): UploadRecord | undefined {
    return Object.hasOwn(this.records, id) ? this.records[id] : undefined
  }

  page({ status, after, first, owner }: PageQuery): Page {
    const order = owner === undefined ? this.order : (this.owned.get(owner) ?? [])
    let start = 0
    if (after !== undefined) {
      const key = decodeCursor(after)
      start = key === undefined ? order.length : upperBound(order, key)
    }
    const wanted = status === undefined ? undefined : new Set(status)
    const records: UploadRecord[] = []
    let i = start
    for (; i < order.length && records.length < first; i++) {
      const record = this.records[idOf(order[i] ?? '')]
      if (record && (!wanted || wanted.has(record.status))) records.push(record)
    }
    let hasNextPage = false
    for (; i < order.length && !hasNextPage; i++) {
      const record = this.records[idOf(order[i] ?? '')]
      hasNextPage = record !== undefined && (!wanted || wanted.has(record.status))
    }
    const end = records.at(-1)
    return { records, hasNextPage, endCursor: end ? encodeCursor(sortKey(end)) : null }
  }

  unfinished(): UploadRecord[] {
    const records: UploadRecord[] = []
    for (const key of this.order) {
      const record = this.records[idOf(key)]
      if (record && unfinished(record)) records.push(record)
    }
    return records
  }

  countByStatus(): Record<UploadStatus, number> {
    const counts = Object.fromEntries(UPLOAD_STATUSES.map((status) => [status, 0])) as Record<
      UploadStatus,
      number
    >
    for (const { status } of Object.values(this.records)) counts[status]++
    return counts
  }

  // ---- changes (each applied once its journal line is durable) ------------------------------------------

  set(record: UploadRecord): void {
    const old = Object.hasOwn(this.records, record.id) ? this.records[record.id] : undefined
    if (!old) insertSorted(this.order, sortKey(record))
    if (old?.owner !== record.owner) {
      if (old?.owner) this.unindex(old.owner, sortKey(old))
      if (record.owner) insertSorted(this.ownedBy(record.owner), sortKey(record))
    }
    this.records[record.id] = record
  }

  delete(id: string): void {
    const record = this.records[id]
    if (!record) return
    Reflect.deleteProperty(this.records, id)
    removeSorted(this.order, sortKey(record))
    if (record.owner) this.unindex(record.owner, sortKey(record))
  }

  progress(entries: [string, number, string][]): void {
    applyProgress(this.records, entries)
  }

  private ownedBy(owner: string): string[] {
    let keys = this.owned.get(owner)
    if (!keys) this.owned.set(owner, (keys = []))
    return keys
  }

  private unindex(owner: string, key: string): void {
    const keys = this.owned.get(owner)
    if (!keys) return
    removeSorted(keys, key)
    if (keys.length === 0) this.owned.delete(owner)
  }
}
