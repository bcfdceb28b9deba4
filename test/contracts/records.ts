import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { HookEvent, Outbox } from '../../src/seams/outbox/index.js'
import { FencedError, type PageQuery, type RecordStore } from '../../src/seams/records/index.js'
import type { UploadRecord, UploadStatus } from '../../src/model/record.js'

export const at = (second: number) => new Date(Date.UTC(2026, 11, 1, 10, 0, second)).toISOString()
const hex = (n: number) => n.toString(16).padStart(64, '0')

/** Upload `n`, created at second `n`, whole (COMPLETED by default). */
export const record = (
  n: number,
  status: UploadStatus = 'COMPLETED',
  extra: Partial<UploadRecord> = {},
): UploadRecord => {
  const id = `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`
  return {
    id,
    filename: `file ${n}.bin`,
    storedName: `${id}_file ${n}.bin`,
    status,
    receivedSize: 100,
    source: 'multipart',
    expiresAt: null,
    receivedAt: at(n),
    uploadedSize: status === 'COMPLETED' ? 100 : 10,
    totalSize: 100,
    targetSpeed: 1000,
    sha256: hex(n),
    error: status === 'FAILED' ? 'it broke' : null,
    createdAt: at(n),
    updatedAt: at(n),
    completedAt: status === 'COMPLETED' ? at(n) : null,
    metadata: {},
    ...extra,
  }
}

/** A tus upload still arriving: `received` of its 100 bytes in, no hash yet, expiring unless more come. */
export const receiving = (n: number, received = 40, expiresAt = at(n + 30)): UploadRecord =>
  record(n, 'RECEIVING', {
    source: 'tus',
    receivedSize: received,
    uploadedSize: 0,
    sha256: '',
    receivedAt: null,
    expiresAt,
  })

export interface RecordStoreSubject {
  store: RecordStore
  /** Closes the store and opens it again on the same state: what a restart finds. */
  reopen(): Promise<RecordStore>
  /**
   * Makes `value` the upload's current lease, where the store is shared by several processes and checks
   * the fence of each write. Absent for a store of one process, where every lease is its own, always current.
   */
  lease?(id: string, value: string): Promise<void>
  /** The hooks' outbox kept in the store `subject.store` is now (after a reopen, the reopened one's). */
  outbox(): Outbox
}

const hookEvent = (uploadId: string, type: HookEvent['type'], n: number): HookEvent => ({
  eventId: `${uploadId}.${type}`,
  uploadId,
  type,
  body: JSON.stringify({ eventId: `${uploadId}.${type}`, type, upload: { id: uploadId } }),
  createdAt: n,
})

const names = (records: readonly UploadRecord[]) => records.map((r) => r.filename)

/**
 * What the service relies on from any RecordStore (seams/records): records given back whole, lists in
 * creation order by state with cursors, counts, the unfinished (still arriving included), byte counts only
 * where they may go, removal, fenced writes, and everything read back after a reopen.
 */
export function recordStoreContract(name: string, make: () => Promise<RecordStoreSubject>): void {
  describe(`RecordStore contract: ${name}`, () => {
    let subject: RecordStoreSubject
    let store: RecordStore
    beforeAll(async () => {
      subject = await make()
      store = subject.store
      // Out of creation order on purpose: lists come back in creation order whatever the writing order.
      for (const n of [3, 1, 2, 5, 4]) await store.put(record(n, n % 2 ? 'COMPLETED' : 'IN_PROGRESS'))
      await store.put(record(6, 'PAUSED', { metadata: { tenant: 'acme', note: 'a, b = "c"' } }))
      await store.put(record(7, 'FAILED'))
      await store.put(receiving(8))
    })
    afterAll(() => store.close())

    it('gives back what was put, whole, nulls included; nothing for an unknown id', async () => {
      expect(await store.get(record(7).id)).toEqual(record(7, 'FAILED'))
      expect(await store.get(record(2).id)).toEqual(record(2, 'IN_PROGRESS'))
      expect(await store.get(record(8).id)).toEqual(receiving(8))
      // What a pre-create hook asked to keep (HOOKS_URL) comes back as it was.
      expect((await store.get(record(6).id))?.metadata).toEqual({ tenant: 'acme', note: 'a, b = "c"' })
      expect(await store.get('nope')).toBeUndefined()
      expect(await store.get('__proto__')).toBeUndefined()
    })

    it('pages in creation order, resuming after a cursor, filtered by status', async () => {
      const first = await store.page({ first: 3 })
      expect(names(first.records)).toEqual(['file 1.bin', 'file 2.bin', 'file 3.bin'])
      expect(first.hasNextPage).toBe(true)
      const rest = await store.page({ first: 10, after: first.endCursor! })
      expect(names(rest.records)).toEqual([
        'file 4.bin',
        'file 5.bin',
        'file 6.bin',
        'file 7.bin',
        'file 8.bin',
      ])
      expect(rest.hasNextPage).toBe(false)
      const active = await store.page({ first: 10, status: ['IN_PROGRESS', 'PAUSED'] })
      expect(names(active.records)).toEqual(['file 2.bin', 'file 4.bin', 'file 6.bin'])
      const arriving = await store.page({ first: 10, status: ['RECEIVING', 'FAILED'] })
      expect(names(arriving.records)).toEqual(['file 7.bin', 'file 8.bin'])
      const one = await store.page({ first: 1, status: ['PAUSED', 'RECEIVING'] })
      expect([names(one.records), one.hasNextPage]).toEqual([['file 6.bin'], true])
      expect(await store.page({ first: 10, status: [] })).toEqual({
        records: [],
        hasNextPage: false,
        endCursor: null,
      })
      const none = await store.page({ first: 10, status: ['CANCELED'] })
      expect(none).toEqual({ records: [], hasNextPage: false, endCursor: null })
    })

    it('counts every status (none is 0), and lists the unfinished, still arriving included, oldest first', async () => {
      expect(await store.countByStatus()).toEqual({
        RECEIVING: 1,
        IN_PROGRESS: 2,
        PAUSED: 1,
        COMPLETED: 3,
        CANCELED: 0,
        FAILED: 1,
      })
      expect(names(await store.unfinished())).toEqual([
        'file 2.bin',
        'file 4.bin',
        'file 6.bin',
        'file 8.bin',
      ])
    })

    it('a new state moves a record between lists, and keeps its place in creation order', async () => {
      await store.put({ ...record(2, 'PAUSED'), updatedAt: at(50) })
      expect(names((await store.page({ first: 10, status: ['PAUSED'] })).records)).toEqual([
        'file 2.bin',
        'file 6.bin',
      ])
      expect(names((await store.page({ first: 10, status: ['IN_PROGRESS'] })).records)).toEqual([
        'file 4.bin',
      ])
      expect(names((await store.page({ first: 2 })).records)).toEqual(['file 1.bin', 'file 2.bin'])
      // Every byte arrived: it leaves the list of those still arriving.
      await store.put(receiving(9))
      await store.put(record(9, 'IN_PROGRESS'))
      expect(names((await store.page({ first: 10, status: ['RECEIVING'] })).records)).toEqual(['file 8.bin'])
      expect(await store.countByStatus()).toMatchObject({ RECEIVING: 1, IN_PROGRESS: 2 })
    })

    it('byte counts reach unfinished records only (still arriving included), and never past the size', async () => {
      await store.progress([
        { id: record(4).id, uploadedSize: 77, updatedAt: at(51) },
        { id: record(1).id, uploadedSize: 5, updatedAt: at(51) },
        { id: record(6).id, uploadedSize: 101, updatedAt: at(51) },
        { id: record(8).id, uploadedSize: 3, updatedAt: at(51) },
        { id: 'never-there', uploadedSize: 3, updatedAt: at(51) },
      ])
      expect(await store.get(record(4).id)).toMatchObject({ uploadedSize: 77, updatedAt: at(51) })
      expect(await store.get(record(1).id)).toMatchObject({ uploadedSize: 100 })
      expect(await store.get(record(6).id)).toMatchObject({ uploadedSize: 10, updatedAt: at(6) })
      expect(await store.get(record(8).id)).toMatchObject({ uploadedSize: 3, updatedAt: at(51) })
      expect(await store.get('never-there')).toBeUndefined()
    })

    it('a resumable upload arriving over time: created empty, grown, listed page by page while RECEIVING, then ended', async () => {
      // Created before a byte is in, expiring unless one comes (as the tus store creates it).
      const created = receiving(30, 0, at(90))
      await store.put(created)
      expect(await store.get(created.id)).toEqual(created)
      // Each PATCH records the bytes in so far and moves the expiry on.
      const grown = { ...receiving(30, 60, at(120)), updatedAt: at(60) }
      await store.put(grown)
      expect(await store.get(created.id)).toEqual(grown)
      await store.put(receiving(31, 10, at(95)))
      // Expiry walks those still arriving one page at a time, as the service does, and reads each one's expiry.
      const walked: [string, string | null, number][] = []
      let after: string | undefined
      for (;;) {
        const page = await store.page({ first: 1, status: ['RECEIVING'], ...(after ? { after } : {}) })
        walked.push(
          ...page.records.map((r): [string, string | null, number] => [
            r.filename,
            r.expiresAt,
            r.receivedSize,
          ]),
        )
        if (!page.hasNextPage || page.endCursor === null) break
        after = page.endCursor
      }
      expect(walked).toEqual([
        ['file 8.bin', at(38), 40],
        ['file 30.bin', at(120), 60],
        ['file 31.bin', at(95), 10],
      ])
      expect(names(await store.unfinished())).toEqual(expect.arrayContaining(['file 30.bin', 'file 31.bin']))
      // Expired: it fails with no hash (it never arrived whole), and is no longer listed as arriving or unfinished.
      const expired = {
        ...grown,
        status: 'FAILED' as const,
        error: 'Expired',
        expiresAt: null,
        updatedAt: at(121),
      }
      await store.put(expired)
      expect(await store.get(created.id)).toEqual(expired)
      expect(names((await store.page({ first: 10, status: ['RECEIVING'] })).records)).toEqual([
        'file 8.bin',
        'file 31.bin',
      ])
      expect(names(await store.unfinished())).not.toContain('file 30.bin')
      // Ended, its byte count stays as it was.
      await store.progress([{ id: created.id, uploadedSize: 50, updatedAt: at(122) }])
      expect(await store.get(created.id)).toEqual(expired)
      // The other arrives whole: no longer arriving, no expiry, a hash and the time it was received.
      const whole = { ...record(31, 'IN_PROGRESS'), source: 'tus' as const, uploadedSize: 0 }
      await store.put(whole)
      expect(await store.get(whole.id)).toEqual(whole)
      expect(await store.countByStatus()).toMatchObject({ RECEIVING: 1, FAILED: 2 })
    })

    it('removes a record from every list', async () => {
      await store.remove(record(3).id)
      expect(await store.get(record(3).id)).toBeUndefined()
      expect(names((await store.page({ first: 10 })).records)).not.toContain('file 3.bin')
      expect((await store.countByStatus()).COMPLETED).toBe(2)
      await store.remove(record(8).id)
      expect((await store.page({ first: 10, status: ['RECEIVING'] })).records).toEqual([])
      expect((await store.countByStatus()).RECEIVING).toBe(0)
      expect(names(await store.unfinished())).not.toContain('file 8.bin')
      await store.remove('never-there')
    })

    it('a write under a lease that is no longer current is refused, when the store is shared', async () => {
      if (!subject.lease) return // one process: every lease is its own, always current
      const r = record(20, 'IN_PROGRESS')
      await store.put(r)
      await expect(store.put({ ...r, status: 'PAUSED' }, 'someone:1')).rejects.toBeInstanceOf(FencedError)
      await expect(store.remove(r.id, 'someone:1')).rejects.toBeInstanceOf(FencedError)
      await store.progress([{ id: r.id, uploadedSize: 50, updatedAt: at(52), fence: 'someone:1' }])
      expect(await store.get(r.id)).toEqual(r)
      // Under its current lease, each goes through.
      await subject.lease(r.id, 'me:2')
      await store.progress([{ id: r.id, uploadedSize: 50, updatedAt: at(52), fence: 'me:2' }])
      expect(await store.get(r.id)).toMatchObject({ uploadedSize: 50 })
      await store.put({ ...r, status: 'PAUSED' }, 'me:2')
      expect((await store.get(r.id))?.status).toBe('PAUSED')
      await store.remove(r.id, 'me:2')
      expect(await store.get(r.id)).toBeUndefined()
    })

    it('queues the events a write causes with it, once per eventId, and none for a write refused by its fence', async () => {
      const r = record(30, 'IN_PROGRESS')
      await store.put(r, undefined, [hookEvent(r.id, 'received', 1)])
      await store.put(record(30), undefined, [hookEvent(r.id, 'completed', 2)])
      // Written again (its answer lost, say): the same eventId is not queued twice.
      await store.put(record(30), undefined, [hookEvent(r.id, 'completed', 2)])
      if (subject.lease) {
        await subject.lease(r.id, 'other:1')
        await expect(store.remove(r.id, 'me:1', [hookEvent(r.id, 'deleted', 3)])).rejects.toThrow(FencedError)
        await expect(store.put(record(30, 'FAILED'), 'me:1', [hookEvent(r.id, 'failed', 3)])).rejects.toThrow(
          FencedError,
        )
        expect((await store.get(r.id))?.status).toBe('COMPLETED')
      }
      const ids = (await subject.outbox().pending(100))
        .filter((e) => e.uploadId === r.id)
        .map((e) => e.eventId)
      expect(ids).toEqual([`${r.id}.received`, `${r.id}.completed`])
      await store.remove(r.id, subject.lease ? 'other:1' : undefined, [hookEvent(r.id, 'deleted', 3)])
      const after = (await subject.outbox().pending(100)).filter((e) => e.uploadId === r.id)
      expect(after.map((e) => e.type)).toEqual(['received', 'completed', 'deleted'])
    })

    it('lists one owner’s uploads from the owner index: creation order, cursors, states; it follows new states, owner changes and removals', async () => {
      await store.put(record(43, 'IN_PROGRESS', { owner: 'ann' }))
      await store.put(record(41, 'COMPLETED', { owner: 'ann' }))
      await store.put(record(42, 'COMPLETED', { owner: 'bob' }))
      await store.put(record(44, 'PAUSED', { owner: 'ann' }))
      await store.put(record(45, 'COMPLETED', { owner: 'bob' }))
      const of = async (owner: string, query: Partial<PageQuery> = {}) =>
        names((await store.page({ owner, first: 10, ...query })).records)
      expect(await of('ann')).toEqual(['file 41.bin', 'file 43.bin', 'file 44.bin'])
      expect(await of('bob')).toEqual(['file 42.bin', 'file 45.bin'])
      expect(await of('nobody')).toEqual([])
      const first = await store.page({ owner: 'ann', first: 2 })
      expect([names(first.records), first.hasNextPage]).toEqual([['file 41.bin', 'file 43.bin'], true])
      const rest = await store.page({ owner: 'ann', first: 2, after: first.endCursor! })
      expect([names(rest.records), rest.hasNextPage]).toEqual([['file 44.bin'], false])
      expect(await of('ann', { status: ['IN_PROGRESS', 'PAUSED'] })).toEqual(['file 43.bin', 'file 44.bin'])
      const one = await store.page({ owner: 'ann', first: 1, status: ['PAUSED', 'IN_PROGRESS'] })
      expect([names(one.records), one.hasNextPage]).toEqual([['file 43.bin'], true])
      expect(await store.page({ owner: 'ann', first: 10, status: [] })).toEqual({
        records: [],
        hasNextPage: false,
        endCursor: null,
      })
      // A new state keeps it in its owner's list, in its place.
      await store.put(record(43, 'COMPLETED', { owner: 'ann' }))
      expect(await of('ann')).toEqual(['file 41.bin', 'file 43.bin', 'file 44.bin'])
      expect(await of('ann', { status: ['IN_PROGRESS'] })).toEqual([])
      // Another owner: it moves from one list to the other; no owner (the operator's): in neither.
      await store.put(record(44, 'PAUSED', { owner: 'bob' }))
      expect(await of('ann')).toEqual(['file 41.bin', 'file 43.bin'])
      expect(await of('bob')).toEqual(['file 42.bin', 'file 44.bin', 'file 45.bin'])
      await store.put(record(45, 'COMPLETED', { owner: null }))
      expect(await of('bob')).toEqual(['file 42.bin', 'file 44.bin'])
      await store.remove(record(41).id)
      expect(await of('ann')).toEqual(['file 43.bin'])
      // Everyone's list is as it was: the index only narrows.
      expect(names((await store.page({ first: 100 })).records)).toEqual(
        expect.arrayContaining(['file 42.bin', 'file 43.bin', 'file 44.bin', 'file 45.bin']),
      )
    })

    it('opened again on the same state, it reads back every change, and the events still pending', async () => {
      const owned = await Promise.all(['ann', 'bob'].map((owner) => store.page({ owner, first: 100 })))
      expect(owned.map((page) => page.records.length)).toEqual([1, 2])
      const before = await store.page({ first: 100 })
      const counts = await store.countByStatus()
      const unfinished = await store.unfinished()
      const pending = await subject.outbox().pending(100)
      expect(pending.length).toBeGreaterThan(0)
      store = await subject.reopen()
      expect(await store.page({ first: 100 })).toEqual(before)
      // The owner index too (the embedded store's is rebuilt from the records it reads back).
      for (const [i, owner] of ['ann', 'bob'].entries())
        expect(await store.page({ owner, first: 100 })).toEqual(owned[i])
      expect(await store.countByStatus()).toEqual(counts)
      expect(await store.unfinished()).toEqual(unfinished)
      expect(await subject.outbox().pending(100)).toEqual(pending)
    })
  })
}
