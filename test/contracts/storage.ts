import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { afterEach, describe, expect, it } from 'vitest'
import {
  StoredBytesMismatch,
  StoredFileMissing,
  TargetChangedError,
  type Storage,
  type TransferSink,
  type TransferTarget,
} from '../../src/seams/storage/index.js'

/** One backing store (a folder, a bucket) for a test: storages opened over it see the same bytes. */
export interface StorageBacking {
  /** A storage over the backing, as a (re)started server opens it. */
  open(): Promise<Storage>
  /** Removes the backing and everything in it. */
  dispose(): Promise<void>
}

/** Seeded bytes, so a failure can be replayed. */
function bytes(size: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(size)
  let x = seed >>> 0 || 1
  for (let i = 0; i < size; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = x & 0xff
  }
  return out
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex')

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

let uploads = 0
function target(data: Buffer): TransferTarget {
  const id = `00000000-0000-4000-8000-${String(++uploads).padStart(12, '0')}`
  return { id, storedName: `${id}_file ${uploads}.bin`, totalSize: data.length, sha256: sha256(data) }
}

/** Stages `data` whole for the upload, as a multipart body that arrived and was kept. */
async function stage(storage: Storage, upload: TransferTarget, data: Buffer): Promise<void> {
  const arrival = await storage.receive(upload.id)
  await pipeline(Readable.from([data]), arrival.sink)
  await arrival.keep()
}

/** Writes data[from, to) into the sink as a transfer does: in order, never across a part's end. */
async function writeRange(sink: TransferSink, data: Buffer, from: number, to: number): Promise<void> {
  for (let at = from; at < to;) {
    let end = Math.min(to, at + 256 * 1024)
    if (sink.partSize > 0) end = Math.min(end, at + sink.partSize - (at % sink.partSize))
    await sink.write(data.subarray(at, end), at, () => undefined)
    at = end
  }
}

/** A transfer written whole and completed, verified. */
async function store(storage: Storage, upload: TransferTarget, data: Buffer): Promise<void> {
  await stage(storage, upload, data)
  const sink = await storage.openTransfer(upload, { offset: 0 })
  try {
    await writeRange(sink, data, 0, data.length)
    await sink.end(true)
  } finally {
    await sink.close()
  }
  await storage.complete(upload, sha256(data))
}

/**
 * What the upload service relies on from its storage, whichever it is: run once per implementation (see
 * test/seams-storage.test.ts) with a factory of fresh backings.
 */
export function storageContract(name: string, makeBacking: () => Promise<StorageBacking>): void {
  describe(`storage contract: ${name}`, () => {
    const backings: StorageBacking[] = []
    const fresh = async () => {
      const backing = await makeBacking()
      backings.push(backing)
      const storage = await backing.open()
      await storage.prepare()
      return { backing, storage }
    }
    afterEach(async () => {
      for (const backing of backings.splice(0)) await backing.dispose()
    })

    it('stages a whole body only once it is kept, and a discarded one leaves nothing', async () => {
      const { storage } = await fresh()
      const data = bytes(3 * 1024 * 1024 + 17, 1)
      const kept = target(data)
      const arrival = await storage.receive(kept.id)
      await pipeline(Readable.from([data]), arrival.sink)
      expect(arrival.written()).toBe(data.length)
      expect(await storage.stagedSize(kept.id)).toBeUndefined()
      await arrival.keep()
      expect(await storage.stagedSize(kept.id)).toBe(data.length)
      expect((await collect(storage.readStaged(kept.id))).equals(data)).toBe(true)

      const dropped = target(data)
      const other = await storage.receive(dropped.id)
      await pipeline(Readable.from([data.subarray(0, 1000)]), other.sink)
      await other.discard()
      expect(await storage.stagedSize(dropped.id)).toBeUndefined()
      expect(await storage.leftovers([kept])).toEqual([])
    })

    it('stages an empty resumable upload at its creation, holding nothing', async () => {
      const { storage } = await fresh()
      const upload = target(Buffer.alloc(0))
      expect(await storage.stagedSize(upload.id)).toBeUndefined()
      await storage.createStaged(upload.id)
      expect(await storage.stagedSize(upload.id)).toBe(0)
    })

    it('stages a resumable upload across requests from its first bytes, each going on where storage says the last one stopped', async () => {
      const { storage } = await fresh()
      const data = bytes(2 * 1024 * 1024 + 5, 2)
      const upload = target(data)
      // Nothing until its first bytes come: they make its staged bytes.
      expect(await storage.stagedSize(upload.id)).toBeUndefined()
      let offset = 0
      for (const cut of [700_000, 1_500_000, data.length]) {
        const write = await storage.append(upload.id, offset)
        await pipeline(Readable.from([data.subarray(offset, cut)]), write.sink)
        offset = (await storage.stagedSize(upload.id)) ?? -1
        expect(offset).toBe(cut)
        // Any prefix reads back, also while it is still arriving (the next request hashes it).
        expect(
          (await collect(storage.readStaged(upload.id, 0, offset))).equals(data.subarray(0, offset)),
        ).toBe(true)
      }
      expect((await collect(storage.readStaged(upload.id, 100, 5000))).equals(data.subarray(100, 5000))).toBe(
        true,
      )
    })

    it('reads the staged bytes at any offset asked for', async () => {
      const { storage } = await fresh()
      const data = bytes(1024 * 1024, 3)
      const upload = target(data)
      await stage(storage, upload, data)
      const reader = await storage.openStaged(upload.id)
      try {
        const buffer = Buffer.alloc(4096)
        expect(await reader.read(buffer, 10, 4000, 123_456)).toBeGreaterThan(0)
        const n = await reader.read(buffer, 0, 4096, 500_000)
        expect(buffer.subarray(0, n).equals(data.subarray(500_000, 500_000 + n))).toBe(true)
        expect(await reader.read(buffer, 0, 4096, data.length)).toBe(0)
      } finally {
        await reader.close()
      }
    })

    it('writes a transfer, completes it verified, and serves any range of the stored file', async () => {
      const { storage } = await fresh()
      const data = bytes(6 * 1024 * 1024 + 3, 4)
      const upload = target(data)
      await expect(storage.openStored(upload)).rejects.toBeInstanceOf(StoredFileMissing)
      await store(storage, upload, data)
      expect(await storage.storedSha256(upload, data.length)).toBe(upload.sha256)
      expect(await storage.storedSha256(upload, data.length + 1)).toBeUndefined()
      const whole = await storage.openStored(upload)
      expect(whole.size).toBe(data.length)
      expect((await collect(whole.read(0, data.length - 1))).equals(data)).toBe(true)
      const ranged = await storage.openStored(upload)
      const [start, end] = [5 * 1024 * 1024 - 7, 5 * 1024 * 1024 + 99]
      expect((await collect(ranged.read(start, end))).equals(data.subarray(start, end + 1))).toBe(true)
      const unread = await storage.openStored(upload)
      await unread.close()
    })

    it('a storage that links staged bytes makes them the transfer as they are; a fresh transfer never empties them', async (ctx) => {
      const { backing, storage } = await fresh()
      if (!storage.linkStaged) return ctx.skip()
      const data = bytes(2 * 1024 * 1024 + 5, 12)
      const upload = target(data)
      await stage(storage, upload, data)
      const mark = await storage.linkStaged(upload)
      expect(mark).toBeDefined()
      expect(await storage.unchanged(upload, mark)).toBe(true)
      // After a crash here, a new storage finds the whole transfer, checked against staging.
      const restarted = await backing.open()
      const verified = await restarted.verifiedPrefix(upload)
      expect(verified.offset).toBe(data.length)
      expect(verified.hash.copy().digest('hex')).toBe(upload.sha256)
      // A transfer started over (a recheck, a speed set) writes a new file: the staged bytes stay whole.
      const again = await storage.openTransfer(upload, { offset: 0 })
      await writeRange(again, data, 0, 1000)
      await again.close()
      expect((await collect(storage.readStaged(upload.id))).equals(data)).toBe(true)
      const linked = await storage.linkStaged(upload)
      await storage.complete(upload, upload.sha256, linked)
      await storage.remove(upload, 'staged')
      const stored = await storage.openStored(upload)
      expect((await collect(stored.read(0, data.length - 1))).equals(data)).toBe(true)
    })

    it('a storage that stores a whole body at once makes it the stored file, staging and transfer untouched', async (ctx) => {
      const { backing, storage } = await fresh()
      if (!storage.storeWhole) return ctx.skip()
      const data = bytes(64 * 1024, 13)
      const upload = target(data)
      await storage.storeWhole(upload, data)
      expect(await storage.stagedSize(upload.id)).toBeUndefined()
      // A new storage (after a crash before COMPLETED was recorded) finds it whole, as after `complete`.
      const restarted = await backing.open()
      expect(await restarted.storedSha256(upload, data.length)).toBe(upload.sha256)
      const stored = await restarted.openStored(upload)
      expect((await collect(stored.read(0, data.length - 1))).equals(data)).toBe(true)
      // Nothing of it is left where start-up looks for what nobody owns.
      expect(await restarted.leftovers([])).toEqual([])
    })

    it('never completes a transfer whose bytes do not hash to what arrived', async () => {
      const { storage } = await fresh()
      const data = bytes(2 * 1024 * 1024, 5)
      const upload = target(data)
      await stage(storage, upload, data)
      const sink = await storage.openTransfer(upload, { offset: 0 })
      await writeRange(sink, data, 0, data.length)
      await sink.end(true)
      await sink.close()
      // What arrived was something else: storage hashes what it holds (no digest from memory) and refuses.
      const wrong = { ...upload, sha256: sha256(Buffer.from('something else')) }
      await expect(storage.complete(wrong)).rejects.toBeInstanceOf(StoredBytesMismatch)
      // A digest from memory that differs is refused too.
      await expect(storage.complete(upload, wrong.sha256)).rejects.toBeInstanceOf(StoredBytesMismatch)
      await expect(storage.openStored(upload)).rejects.toBeInstanceOf(StoredFileMissing)
      expect(await storage.storedSha256(upload, data.length)).toBeUndefined()
      // The right one still completes: nothing was lost by the refusals.
      await storage.complete(upload)
      expect(await storage.storedSha256(upload, data.length)).toBe(upload.sha256)
    })

    it('a paused transfer goes on from what storage acknowledged, as the run left it', async () => {
      const { storage } = await fresh()
      const data = bytes(7 * 1024 * 1024 + 11, 6)
      const upload = target(data)
      await stage(storage, upload, data)
      const first = await storage.openTransfer(upload, { offset: 0 })
      const half = 4 * 1024 * 1024 + 1234
      await writeRange(first, data, 0, half)
      const paused = await first.end(false)
      await first.close()
      expect(paused.acknowledged).toBeLessThanOrEqual(half)
      expect(await storage.unchanged(upload, paused.mark)).toBe(paused.mark !== undefined)
      const second = await storage.openTransfer(upload, { offset: paused.acknowledged, mark: paused.mark })
      await writeRange(second, data, paused.acknowledged, data.length)
      const ended = await second.end(true)
      await second.close()
      expect(ended.acknowledged).toBe(data.length)
      await storage.complete(upload)
      const stored = await storage.openStored(upload)
      expect(sha256(await collect(stored.read(0, data.length - 1)))).toBe(upload.sha256)
    })

    it('refuses to go on from a mark storage no longer matches', async () => {
      const { storage } = await fresh()
      const data = bytes(11 * 1024 * 1024, 7)
      const upload = target(data)
      await stage(storage, upload, data)
      const first = await storage.openTransfer(upload, { offset: 0 })
      await writeRange(first, data, 0, 5 * 1024 * 1024)
      const old = await first.end(false)
      await first.close()
      // Past a whole part more: a part store has then acknowledged bytes the old mark knows nothing of.
      const second = await storage.openTransfer(upload, { offset: old.acknowledged, mark: old.mark })
      await writeRange(second, data, old.acknowledged, 10 * 1024 * 1024 + 100)
      await second.end(false)
      await second.close()
      expect(await storage.unchanged(upload, old.mark)).toBe(false)
      if (first.partSize === 0) {
        // A file written past the mark is not what the mark says: going on from it would trust bytes unread.
        await expect(
          storage.openTransfer(upload, { offset: old.acknowledged, mark: old.mark }),
        ).rejects.toBeInstanceOf(TargetChangedError)
        return
      }
      // A part store holds the mark's parts as they were, and the parts past them are sent again: going on
      // from the mark is safe, and ends byte-identical.
      const third = await storage.openTransfer(upload, { offset: old.acknowledged, mark: old.mark })
      expect(third.acknowledged()).toBe(old.acknowledged)
      await writeRange(third, data, old.acknowledged, data.length)
      await third.end(true)
      await third.close()
      await storage.complete(upload)
      const stored = await storage.openStored(upload)
      expect((await collect(stored.read(0, data.length - 1))).equals(data)).toBe(true)
    })

    it('after a crash-like stop, a new storage verifies what it holds against staging and the transfer completes', async () => {
      const { backing, storage } = await fresh()
      const data = bytes(9 * 1024 * 1024 + 321, 8)
      const upload = target(data)
      await stage(storage, upload, data)
      const sink = await storage.openTransfer(upload, { offset: 0 })
      const written = 6 * 1024 * 1024 + 4321
      await writeRange(sink, data, 0, written)
      const acknowledged = sink.acknowledged()
      // No end: the process died. Whatever storage kept is found by the next one, and checked.
      await sink.close()
      const restarted = await backing.open()
      await restarted.prepare()
      const verified = await restarted.verifiedPrefix(upload)
      expect(verified.offset).toBeGreaterThanOrEqual(acknowledged)
      expect(verified.offset).toBeLessThanOrEqual(written)
      expect(verified.hash.copy().digest('hex')).toBe(sha256(data.subarray(0, verified.offset)))
      const resumed = await restarted.openTransfer(upload, { offset: verified.offset, mark: verified.mark })
      await writeRange(resumed, data, verified.offset, data.length)
      await resumed.end(true)
      await resumed.close()
      verified.hash.update(data.subarray(verified.offset))
      await restarted.complete(upload, verified.hash.digest('hex'))
      const stored = await restarted.openStored(upload)
      expect((await collect(stored.read(0, data.length - 1))).equals(data)).toBe(true)
    })

    it('verifies nothing past the first byte that differs from staging', async () => {
      const { storage } = await fresh()
      const data = bytes(3 * 1024 * 1024, 9)
      const other = bytes(3 * 1024 * 1024, 10)
      const upload = target(data)
      await stage(storage, upload, data)
      // The transfer holds bytes of another file: none of them is what arrived (bar chance first bytes).
      const sink = await storage.openTransfer(upload, { offset: 0 })
      await writeRange(sink, other, 0, other.length)
      await sink.end(false)
      await sink.close()
      const verified = await storage.verifiedPrefix(upload)
      expect(verified.offset).toBeLessThan(8)
      expect(verified.hash.copy().digest('hex')).toBe(sha256(data.subarray(0, verified.offset)))
    })

    it('removes what an upload has, and only what is asked', async () => {
      const { storage } = await fresh()
      const data = bytes(1024 * 1024, 11)
      const done = target(data)
      await store(storage, done, data)
      const unfinished = target(data)
      await stage(storage, unfinished, data)
      const sink = await storage.openTransfer(unfinished, { offset: 0 })
      await writeRange(sink, data, 0, data.length)
      await sink.end(false)
      await sink.close()

      await storage.remove(done, 'bytes')
      expect(await storage.storedSha256(done, data.length)).toBe(done.sha256)
      await storage.remove(unfinished, 'transfer')
      expect(await storage.stagedSize(unfinished.id)).toBe(data.length)
      expect((await storage.verifiedPrefix(unfinished)).offset).toBe(0)
      await storage.remove(unfinished, 'bytes')
      expect(await storage.stagedSize(unfinished.id)).toBeUndefined()
      expect(await storage.holdsTransfers()).toBe(false)
      await storage.remove(done, 'all')
      await expect(storage.openStored(done)).rejects.toBeInstanceOf(StoredFileMissing)
    })

    it('lists as leftovers only the bytes no unfinished upload owns, and removes them', async () => {
      const { storage } = await fresh()
      const data = bytes(200_000, 12)
      const owned = target(data)
      const orphan = target(data)
      await stage(storage, owned, data)
      await stage(storage, orphan, data)
      const arriving = await storage.receive(target(data).id)
      await pipeline(Readable.from([data.subarray(0, 1000)]), arriving.sink)
      expect(await storage.holdsTransfers()).toBe(true)
      const leftovers = await storage.leftovers([owned])
      expect(leftovers.filter((l) => l.id === orphan.id)).toHaveLength(1)
      expect(leftovers.some((l) => l.id === owned.id)).toBe(false)
      expect(leftovers.filter((l) => l.arrivingAt !== undefined)).toHaveLength(1)
      await storage.removeLeftovers(leftovers)
      expect(await storage.leftovers([owned])).toEqual([])
      expect(await storage.stagedSize(owned.id)).toBe(data.length)
      expect(await storage.stagedSize(orphan.id)).toBeUndefined()
    })

    it('says how much room there is, and never promises the same free bytes twice', async () => {
      const { storage } = await fresh()
      expect(await storage.writable()).toBeUndefined()
      const free = await storage.room.free()
      expect(free).toBeGreaterThan(0)
      if (!Number.isFinite(free)) return
      const hold = await storage.room.grant(Math.floor(free / 2) + 1)
      await expect(storage.room.grant(Math.floor(free / 2) + 1)).rejects.toMatchObject({
        code: 'INSUFFICIENT_STORAGE',
      })
      hold.release()
      const again = await storage.room.grant(Math.floor(free / 2) + 1)
      again.release()
    })
  })
}
