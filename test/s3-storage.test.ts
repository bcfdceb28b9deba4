import { createHash, randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { CreateMultipartUploadCommand, UploadPartCommand } from '@aws-sdk/client-s3'
import { describe, expect, it } from 'vitest'
import type { S3Settings } from '../src/config.js'
import {
  sha256Of,
  StorageRefused,
  StorageUnavailable,
  StoredBytesMismatch,
  type TransferSink,
  type TransferTarget,
} from '../src/seams/storage/index.js'
import { S3Storage } from '../src/seams/storage/s3.js'
import {
  abortUpload,
  listKeys,
  listParts,
  listUploads,
  S3SetupError,
} from '../src/seams/storage/s3-bucket.js'
import { settle, UploadGoneError } from '../src/seams/storage/s3-multipart.js'
import { bytes } from './support/clients.js'
import { motoForTests } from './support/moto.js'
import { freePort } from './support/redis.js'

/**
 * S3 storage against a real S3-compatible server (moto, on loopback). moto does not check the checksums it
 * is sent, so every test hashes what it reads back itself.
 */
const MiB = 1024 * 1024
const PREFIX = 'gw/'

const moto = motoForTests()

/** A storage of the test's own over `bucket` (closed with moto), S3_TIMEOUT 5 s unless `over` says. */
const open = (bucket: string, over: Partial<S3Settings> = {}): S3Storage =>
  moto().storage(bucket, PREFIX, { timeoutMs: 5000, ...over })

/** A storage of its own over a new bucket: another instance is another S3Storage over the same bucket. */
async function storageOnNewBucket(): Promise<{ storage: S3Storage; bucket: string }> {
  const bucket = await moto().createBucket()
  return { storage: instance(bucket), bucket }
}

function instance(bucket: string): S3Storage {
  return open(bucket)
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex')

/** An upload whose body arrived whole into staging, as an arrival keeps it. */
async function staged(
  storage: S3Storage,
  data: Buffer,
  filename = 'report final.pdf',
): Promise<TransferTarget> {
  const id = randomUUID()
  const arrival = await storage.receive(id)
  await pipeline(Readable.from(chunks(data, 256 * 1024)), arrival.sink)
  await arrival.keep()
  return { id, storedName: `${id}_${filename}`, totalSize: data.length, sha256: sha256(data) }
}

function* chunks(data: Buffer, size: number): Generator<Buffer> {
  for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size)
}

/**
 * Copies staged bytes [from, to) into the sink as the transfer engine does: from the staged reader, in
 * chunks that never cross a part's end. Returns the sha256 state of what it wrote, fed into `hash`.
 */
async function copy(
  storage: S3Storage,
  upload: TransferTarget,
  sink: TransferSink,
  from: number,
  to: number,
  hash = createHash('sha256'),
  /** Hand the sink the reader's own buffer, read into again as soon as a write resolves (as Transfer does). */
  reuse = false,
) {
  const reader = await storage.openStaged(upload.id)
  const buffer = Buffer.alloc(64 * 1024)
  try {
    for (let at = from; at < to;) {
      const partEnd = (Math.floor(at / sink.partSize) + 1) * sink.partSize
      const n = await reader.read(buffer, 0, Math.min(buffer.length, to - at, partEnd - at), at)
      if (n === 0) throw new Error(`staging ended at ${at}`)
      const chunk = reuse ? buffer.subarray(0, n) : Buffer.from(buffer.subarray(0, n))
      hash.update(chunk)
      await sink.write(chunk, at, () => undefined)
      at += n
    }
  } finally {
    await reader.close()
  }
  return hash
}

async function readBack(storage: S3Storage, upload: TransferTarget, start = 0, end = upload.totalSize - 1) {
  const reader = await storage.openStored(upload)
  const chunksRead: Buffer[] = []
  for await (const chunk of reader.read(start, end)) chunksRead.push(chunk as Buffer)
  return { size: reader.size, data: Buffer.concat(chunksRead) }
}

/** The part numbers sent by UploadPart through this storage from now on. */
function partsSent(storage: S3Storage): number[] {
  const sent: number[] = []
  storage.access.streams.middlewareStack.add(
    (next) => async (args) => {
      const input = args.input as { PartNumber?: number }
      if (input.PartNumber !== undefined) sent.push(input.PartNumber)
      return next(args)
    },
    { step: 'initialize', name: 'countParts' },
  )
  return sent
}

describe('S3 storage (moto)', () => {
  it('keeps an upload under keys an operator can read: {prefix}{id}/{name} once stored, {prefix}.staging/{id} before', async () => {
    const { storage } = await storageOnNewBucket()
    const upload = await staged(storage, bytes(300_000))
    expect(await listKeys(storage.access, PREFIX)).toEqual([`${PREFIX}.staging/${upload.id}`])
    const sink = await storage.openTransfer(upload, { offset: 0 })
    // While the transfer is written, S3 lists its multipart upload under the stored key.
    expect((await listUploads(storage.access, PREFIX)).map((u) => u.key)).toEqual([
      `${PREFIX}${upload.id}/report final.pdf`,
    ])
    await copy(storage, upload, sink, 0, upload.totalSize)
    await sink.end(true)
    await storage.complete(upload, upload.sha256)
    expect((await listKeys(storage.access, PREFIX)).sort()).toEqual(
      [`${PREFIX}${upload.id}/report final.pdf`, `${PREFIX}.staging/${upload.id}`].sort(),
    )
    await storage.remove(upload, 'staged')
    expect(await listKeys(storage.access, PREFIX)).toEqual([`${PREFIX}${upload.id}/report final.pdf`])
  })

  it('writes a transfer of several parts byte-identical, its sha256 stored with the object, no multipart upload left', async () => {
    const { storage } = await storageOnNewBucket()
    const data = bytes(12 * MiB + 12_345)
    const upload = await staged(storage, data)
    expect(await storage.stagedSize(upload.id)).toBe(data.length)
    const sink = await storage.openTransfer(upload, { offset: 0 })
    expect(sink.partSize).toBe(5 * MiB)
    const hash = await copy(storage, upload, sink, 0, data.length)
    expect(await sink.end(true)).toMatchObject({ acknowledged: data.length })
    await storage.complete(upload, hash.digest('hex'))
    const back = await readBack(storage, upload)
    expect(back.size).toBe(data.length)
    expect(sha256(back.data)).toBe(sha256(data))
    expect(await storage.storedSha256(upload, data.length)).toBe(sha256(data))
    expect(await listUploads(storage.access, PREFIX)).toEqual([])
  })

  it('counts a part as stored only once S3 acknowledged it; another instance resumes from S3’s own record and sends no acknowledged part again', async () => {
    const { storage, bucket } = await storageOnNewBucket()
    const data = bytes(12 * MiB)
    const upload = await staged(storage, data)
    const sink = await storage.openTransfer(upload, { offset: 0 })
    await copy(storage, upload, sink, 0, 7 * MiB)
    // Part 1 is acknowledged; 2 MiB of part 2 are written, but S3 holds nothing of them yet.
    expect(sink.acknowledged()).toBe(5 * MiB)
    expect(await sink.end(false)).toMatchObject({ acknowledged: 5 * MiB })
    await sink.close()

    // Another instance, knowing nothing of this one (as after a SIGKILL): S3's ListParts is the record.
    const other = instance(bucket)
    const sent = partsSent(other)
    const verified = await other.verifiedPrefix(upload)
    expect(verified.offset).toBe(5 * MiB)
    expect(verified.hash.copy().digest('hex')).toBe(sha256(data.subarray(0, 5 * MiB)))
    const resumed = await other.openTransfer(upload, { offset: verified.offset, mark: verified.mark })
    const hash = await copy(other, upload, resumed, verified.offset, data.length, verified.hash)
    await resumed.end(true)
    await other.complete(upload, hash.digest('hex'))
    expect(sent).toEqual([2, 3])
    expect(sha256((await readBack(other, upload)).data)).toBe(sha256(data))
  })

  it('after a restart (no runs’ hash in memory) completes by checking every part against staging', async () => {
    const { storage, bucket } = await storageOnNewBucket()
    const data = bytes(6 * MiB)
    const upload = await staged(storage, data)
    const sink = await storage.openTransfer(upload, { offset: 0 })
    await copy(storage, upload, sink, 0, data.length)
    await sink.end(true)
    await instance(bucket).complete(upload)
    expect(sha256((await readBack(storage, upload)).data)).toBe(sha256(data))
  })

  it('reads S3’s list of parts to its last page', async () => {
    const { storage } = await storageOnNewBucket()
    const key = `${PREFIX}pages`
    const { UploadId } = await storage.access.client.send(
      new CreateMultipartUploadCommand({ Bucket: storage.access.bucket, Key: key }),
    )
    for (const n of [1, 2, 3, 4, 5])
      await storage.access.client.send(
        new UploadPartCommand({
          Bucket: storage.access.bucket,
          Key: key,
          UploadId,
          PartNumber: n,
          Body: Buffer.from(`part ${n}`),
        }),
      )
    const parts = await listParts(storage.access, key, UploadId!, 2)
    expect(parts?.map((part) => part.PartNumber)).toEqual([1, 2, 3, 4, 5])
  })

  it('settles a multipart upload gone under a transfer (NoSuchUpload) with a HEAD: started again unless the object is whole', async () => {
    const { storage } = await storageOnNewBucket()
    const data = bytes(6 * MiB)
    const upload = await staged(storage, data)
    const sink = await storage.openTransfer(upload, { offset: 0 })
    await copy(storage, upload, sink, 0, 5 * MiB)
    const [open] = await listUploads(storage.access, PREFIX)
    await abortUpload(storage.access, open!.key, open!.uploadId)
    await expect(copy(storage, upload, sink, 5 * MiB, data.length)).rejects.toThrow(UploadGoneError)
    const key = open!.key
    const expected = { size: upload.totalSize, sha256: upload.sha256 }
    expect(await settle(storage.access, key, expected)).toBe('restart')
    expect(await storage.storedSha256(upload, data.length)).toBeUndefined()

    // Started again and completed: a run that died before its record said so is settled as completed.
    const again = await storage.openTransfer(upload, { offset: 0 })
    const hash = await copy(storage, upload, again, 0, data.length)
    await again.end(true)
    await storage.complete(upload, hash.digest('hex'))
    expect(await settle(storage.access, key, expected)).toBe('completed')
    expect(await storage.storedSha256(upload, data.length)).toBe(upload.sha256)
    expect(sha256((await readBack(storage, upload)).data)).toBe(sha256(data))
  })

  it('cancel: once the transfer is removed, ListMultipartUploads shows nothing of it and no object of it exists', async () => {
    const { storage } = await storageOnNewBucket()
    const upload = await staged(storage, bytes(8 * MiB))
    const sink = await storage.openTransfer(upload, { offset: 0 })
    await copy(storage, upload, sink, 0, 6 * MiB)
    await sink.close()
    expect(await listUploads(storage.access, PREFIX)).toHaveLength(1)
    await storage.remove(upload, 'bytes')
    expect(await listUploads(storage.access, PREFIX)).toEqual([])
    expect(await listKeys(storage.access, PREFIX)).toEqual([])
  })

  it('never completes bytes that do not hash to the upload’s sha256: no object appears', async () => {
    const { storage } = await storageOnNewBucket()
    const data = bytes(1 * MiB)
    const upload = await staged(storage, data)
    const sink = await storage.openTransfer(upload, { offset: 0 })
    await copy(storage, upload, sink, 0, data.length)
    await sink.end(true)
    const wrong = { ...upload, sha256: sha256(Buffer.from('something else')) }
    await expect(storage.complete(wrong, upload.sha256)).rejects.toThrow(StoredBytesMismatch)
    // Without the runs' hash, storage hashes the parts against staging: the same refusal.
    await expect(storage.complete(wrong)).rejects.toThrow(StoredBytesMismatch)
    expect(await storage.storedSha256(upload, data.length)).toBeUndefined()
    expect(await listKeys(storage.access, `${PREFIX}${upload.id}/`)).toEqual([])
  })

  it('reads any range of a stored object, streamed from S3', async () => {
    const { storage } = await storageOnNewBucket()
    const data = bytes(6 * MiB + 7)
    const upload = await staged(storage, data)
    const sink = await storage.openTransfer(upload, { offset: 0 })
    await copy(storage, upload, sink, 0, data.length)
    await sink.end(true)
    await storage.complete(upload, upload.sha256)
    for (const [start, end] of [
      [0, 0],
      [5 * MiB - 3, 5 * MiB + 3],
      [data.length - 1, data.length - 1],
      [12_345, 4 * MiB],
    ] as const) {
      const { data: got } = await readBack(storage, upload, start, end)
      expect(sha256(got)).toBe(sha256(data.subarray(start, end + 1)))
    }
    // Staged bytes too, from any offset (a transfer resuming reads from there).
    expect(await sha256Of(storage.readStaged(upload.id, 1000, 2000))).toBe(sha256(data.subarray(1000, 2000)))
  })

  it('keeps an arriving body only when kept: a discarded one leaves nothing in the bucket', async () => {
    const { storage } = await storageOnNewBucket()
    const id = randomUUID()
    const arrival = await storage.receive(id)
    const source = Readable.from(chunks(bytes(7 * MiB), 512 * 1024))
    source.pipe(arrival.sink)
    // Wait until one part has gone (the body is gathered a part at a time), then give up on it.
    while (arrival.written() === 0) await once(arrival.sink, 'drain').catch(() => undefined)
    source.unpipe(arrival.sink)
    await arrival.discard()
    expect(await listUploads(storage.access, PREFIX)).toEqual([])
    expect(await storage.stagedSize(id)).toBeUndefined()
  })

  it('keeps the bytes of a chunk whose buffer the caller reads into again as soon as its write resolves', async () => {
    const { storage } = await storageOnNewBucket()
    const data = bytes(11 * MiB)
    const upload = await staged(storage, data)
    const sink = await storage.openTransfer(upload, { offset: 0 })
    const hash = await copy(storage, upload, sink, 0, data.length, createHash('sha256'), true)
    await sink.end(true)
    await storage.complete(upload, hash.digest('hex'))
    expect(sha256((await readBack(storage, upload)).data)).toBe(sha256(data))
  })

  it('waits while S3 answers nothing (frozen), sends the part again from staging, and completes byte-identical', async () => {
    const bucket = await moto().createBucket()
    const storage = open(bucket, { timeoutMs: 1500 })
    const data = bytes(7 * MiB)
    const upload = await staged(storage, data)
    const sink = await storage.openTransfer(upload, { offset: 0 })
    const hash = await copy(storage, upload, sink, 0, 3 * MiB)
    // Frozen with part 1 in flight; thawed a few seconds later, with the copy still waiting on its write.
    moto().freeze()
    const thawed = new Promise<void>((resolve) =>
      setTimeout(() => {
        moto().thaw()
        resolve()
      }, 5000),
    )
    try {
      // From memory, not staging: what is tested is the sink's own waiting (the run's reads are the core's).
      for (let at = 3 * MiB; at < data.length;) {
        const end = Math.min(
          data.length,
          at + 256 * 1024,
          (Math.floor(at / sink.partSize) + 1) * sink.partSize,
        )
        const chunk = data.subarray(at, end)
        hash.update(chunk)
        await sink.write(chunk, at, () => undefined)
        at = end
      }
    } finally {
      moto().thaw()
    }
    await thawed
    await sink.end(true)
    expect(storage.outcomes().retried).toBeGreaterThan(0)
    await storage.complete(upload, hash.digest('hex'))
    expect(sha256((await readBack(storage, upload)).data)).toBe(sha256(data))
  }, 60_000)

  it('a stop (the run’s signal) ends a write waiting on a frozen S3 at once', async () => {
    const bucket = await moto().createBucket()
    const storage = open(bucket, { timeoutMs: 20_000 })
    const data = bytes(6 * MiB)
    const upload = await staged(storage, data)
    const stop = new AbortController()
    const sink = await storage.openTransfer(upload, { offset: 0 }, stop.signal)
    const hash = await copy(storage, upload, sink, 0, 1 * MiB)
    moto().freeze()
    try {
      // The rest of part 1: its answer never comes while S3 is frozen.
      const chunk = data.subarray(1 * MiB, 5 * MiB)
      hash.update(chunk)
      const writing = sink.write(chunk, 1 * MiB, () => undefined)
      const stopped = writing.catch((error: unknown) => error)
      setTimeout(() => stop.abort(), 300)
      const started = performance.now()
      expect(await stopped).toMatchObject({ name: 'AbortError' })
      expect(performance.now() - started).toBeLessThan(5000)
    } finally {
      moto().thaw()
    }
    const ended = await sink.end(false)
    expect(ended.acknowledged).toBe(0)
    await sink.close()
  }, 60_000)

  it('says S3 refused, with its code, when it refuses (4xx): no bucket of that name', async () => {
    const storage = open('no-such-bucket-here')
    const upload: TransferTarget = {
      id: randomUUID(),
      storedName: 'x_y',
      totalSize: 10,
      sha256: sha256(Buffer.alloc(10)),
    }
    await expect(storage.openTransfer(upload, { offset: 0 })).rejects.toThrow(StorageRefused)
    await expect(storage.openTransfer(upload, { offset: 0 })).rejects.toThrow(/S3 refused .*NoSuchBucket/)
    expect(storage.outcomes().refused).toBeGreaterThan(0)
  })

  it('says S3 is unavailable, not refused, when nobody answers', async () => {
    const storage = open('any', { endpoint: `http://127.0.0.1:${await freePort()}` })
    await expect(storage.stagedSize(randomUUID())).rejects.toThrow(StorageUnavailable)
  }, 60_000)

  it('lists an abandoned multipart upload and staging object as leftovers with when they were begun', async () => {
    const { storage } = await storageOnNewBucket()
    const before = Date.now() - 60_000
    const orphan = await staged(storage, bytes(1000))
    const arrival = await storage.receive(randomUUID())
    await pipeline(Readable.from([bytes(2000)]), arrival.sink)
    const leftovers = await storage.leftovers([])
    expect(leftovers).toHaveLength(2)
    // moto says every multipart upload was initiated on one fixed day in 2010: only "no later than now" holds.
    for (const item of leftovers) expect(item.since).toBeLessThanOrEqual(Date.now() + 60_000)
    expect(leftovers.find((item) => item.id === orphan.id)?.since).toBeGreaterThan(before)
    expect(leftovers.find((item) => item.id === orphan.id)?.arrivingAt).toBeUndefined()
    expect(leftovers.find((item) => item.id !== orphan.id)?.arrivingAt).toBe('default')
    await storage.removeLeftovers(leftovers)
    expect(await listUploads(storage.access, PREFIX)).toEqual([])
    expect(await listKeys(storage.access, PREFIX)).toEqual([])
  })

  it('presigns a download only when S3_PRESIGN_DOWNLOADS is set, and the link reads the stored bytes', async () => {
    const bucket = await moto().createBucket()
    const plain = open(bucket)
    const signing = open(bucket, { presignMs: 60_000 })
    const data = bytes(300_000)
    const upload = await staged(signing, data, 'naïve résumé.pdf')
    const sink = await signing.openTransfer(upload, { offset: 0 })
    const hash = await copy(signing, upload, sink, 0, data.length)
    await sink.end(true)
    await signing.complete(upload, hash.digest('hex'))
    expect(await plain.downloadUrl(upload, 'naïve résumé.pdf')).toBeUndefined()
    const url = await signing.downloadUrl(upload, 'naïve résumé.pdf')
    expect(url).toMatch(/X-Amz-Expires=60&/)
    // The name rides in the signed URL (moto does not answer with it; S3 does).
    expect(new URL(url!).searchParams.get('response-content-disposition')).toBe(
      `attachment; filename*=UTF-8''${encodeURIComponent('naïve résumé.pdf')}`,
    )
    const answer = await fetch(url!)
    expect(answer.status).toBe(200)
    expect(sha256(Buffer.from(await answer.arrayBuffer()))).toBe(sha256(data))
  })

  describe('refuses at start-up, in one line', () => {
    it('an unknown bucket', async () => {
      const storage = instance('no-such-bucket')
      const refusal = storage.prepare()
      await expect(refusal).rejects.toThrow(S3SetupError)
      await expect(refusal).rejects.toThrow(
        /^S3_BUCKET no-such-bucket does not exist at http:\/\/127\.0\.0\.1:\d+: /,
      )
    })

    it('an endpoint nobody answers at', async () => {
      const endpoint = `http://127.0.0.1:${await freePort()}`
      const storage = open('anything', { endpoint })
      const refusal = storage.prepare()
      await expect(refusal).rejects.toThrow(S3SetupError)
      await expect(refusal).rejects.toThrow(
        new RegExp(`^S3 endpoint ${endpoint} is unreachable \\(ECONNREFUSED\\)`),
      )
      expect(await storage.writable()).toMatch(/^storage is not writable: S3 endpoint .* is unreachable/)
    })

    it('and takes a bucket that exists', async () => {
      const { storage } = await storageOnNewBucket()
      await expect(storage.prepare()).resolves.toBeUndefined()
      expect(await storage.writable()).toBeUndefined()
    })
  })
})
