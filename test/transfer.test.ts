import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CATCH_UP_SECONDS } from '../src/core/transfer/scheduler.js'
import { chunkSizeFor, MAX_THROTTLED_CHUNK } from '../src/core/transfer/throttle.js'
import { api, bytes, restUpload, statusOf, waitFor, waitForStatus } from './support/clients.js'
import { startHookReceiver, type HookReceiver } from './support/hook-receiver.js'
import { listStorage, startServer, transferFile, type TestServer } from './support/server.js'

let server: TestServer
beforeAll(async () => {
  server = await startServer()
})
afterAll(() => server.stop())

const sizeOnDisk = (path: string) => stat(path).then((s) => s.size)
const partOf = (id: string) => transferFile(server.dir, id)

interface Record {
  createdAt: string
  receivedAt: string
  completedAt: string
}
async function recordOf(id: string): Promise<Record> {
  const response = await fetch(`${server.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query: `{ upload(id: "${id}") { createdAt receivedAt completedAt } }` }),
  })
  return ((await response.json()) as { data: { upload: Record } }).data.upload
}

describe('the throttled transfer', () => {
  it('writes the file at the speed asked for: never faster, and not stuck at a lower one', async () => {
    // From its arrival whole (the transfer starts after it): receiving the body is not the transfer's time,
    // and on a busy machine it took a second of the 800 KiB's (2026-12-07, load 14).
    const secondsOf = async (id: string) => {
      const { receivedAt, completedAt } = await recordOf(id)
      return (Date.parse(completedAt) - Date.parse(receivedAt)) / 1000
    }
    // What completing costs besides the transfer (state writes, flush, rename), on this disk, right now.
    const empty = await restUpload(server.url, bytes(0), { speed: 0 })
    await waitForStatus(server.url, empty.body.upload_id, 'completed')
    const overhead = await secondsOf(empty.body.upload_id)
    // 800 KiB at 400 KiB/s: two seconds.
    const content = bytes(800 * 1024)
    const { body } = await restUpload(server.url, content, { speed: 400 * 1024 })
    await waitForStatus(server.url, body.upload_id, 'completed')
    const seconds = await secondsOf(body.upload_id)
    const ideal = (800 * 1024) / (400 * 1024)
    expect(seconds).toBeGreaterThan(ideal * 0.97)
    // Half the speed would take twice as long. How close to the ideal it lands is a figure of the bench
    // (bench/throttle.ts, error per transfer), not of this test: the rest of the suite shares the two cores.
    expect(seconds).toBeLessThan(ideal * 1.6 + 2 * overhead)
    expect((await readFile(join(server.dir, `${body.upload_id}_data.bin`))).equals(content)).toBe(true)
  })

  it('keeps the bytes on disk close to the ideal line while it runs', async () => {
    const speed = 100 * 1024
    // Two seconds of bytes, sampled through the first: the transfer file must be there for every sample.
    const { body } = await restUpload(server.url, bytes(2 * speed), { speed })
    const started = performance.now()
    const part = partOf(body.upload_id)
    const line = (at: number) => ((at - started) / 1000) * speed
    const samples: { size: number; low: number; high: number }[] = []
    for (let i = 0; i < 8; i++) {
      await sleep(100)
      // The line is taken on both sides of the read, so a read the machine delays is not held against it.
      const before = performance.now()
      const size = await sizeOnDisk(part)
      samples.push({ size, low: line(before), high: line(performance.now()) })
    }
    expect(samples).toHaveLength(8)
    // 100 ms of slack for timers and for the answer that started the clock, plus one chunk.
    const slack = speed * 0.1 + chunkSizeFor(speed)
    for (const { size, low, high } of samples) {
      expect(size).toBeGreaterThan(low - slack)
      expect(size).toBeLessThan(high + slack)
    }
    await api(server.url, 'POST', `/api/upload/${body.upload_id}/cancel`)
  })

  it('makes up a stall of the process only so far: a longer one is never caught up by a burst', async () => {
    // The server runs in this process: holding its event loop is a real stall of every transfer in it.
    const speed = 200 * 1024
    const content = bytes(3 * speed)
    const { body } = await restUpload(server.url, content, { speed })
    await waitFor(async () => (await sizeOnDisk(partOf(body.upload_id)).catch(() => 0)) > speed / 10)
    const began = performance.now()
    while (performance.now() - began < 1500);
    const stall = (performance.now() - began) / 1000
    await waitForStatus(server.url, body.upload_id, 'completed', 30_000)
    const { createdAt, completedAt } = await recordOf(body.upload_id)
    const seconds = (Date.parse(completedAt) - Date.parse(createdAt)) / 1000
    // At most CATCH_UP_SECONDS of the stall is made up; the rest moved its line on. Timed from its creation,
    // which is before its transfer started, so a busy machine can only make this longer.
    expect(seconds).toBeGreaterThan(3 + stall - CATCH_UP_SECONDS - 0.1)
    expect((await readFile(join(server.dir, `${body.upload_id}_data.bin`))).equals(content)).toBe(true)
  })

  it('stores an unthrottled (speed=0) file byte for byte', async () => {
    const content = bytes(3 * 1024 * 1024 + 17)
    const { body } = await restUpload(server.url, content, { speed: 0 })
    await waitForStatus(server.url, body.upload_id, 'completed')
    expect((await readFile(join(server.dir, `${body.upload_id}_data.bin`))).equals(content)).toBe(true)
  })

  it('stores an empty file', async () => {
    const { body } = await restUpload(server.url, bytes(0), { speed: 1000, filename: 'empty.txt' })
    await waitForStatus(server.url, body.upload_id, 'completed')
    expect(await sizeOnDisk(join(server.dir, `${body.upload_id}_empty.txt`))).toBe(0)
  })

  it('reports current_speed near the target while running, and 0 when paused', async () => {
    const { body } = await restUpload(server.url, bytes(200_000), { speed: 50_000 })
    // The meter looks back one second: give it a full window of bytes first.
    await sleep(1100)
    const running = await statusOf(server.url, body.upload_id)
    expect(running.body.current_speed).toBeGreaterThan(40_000)
    expect(running.body.current_speed).toBeLessThan(60_000)
    await api(server.url, 'POST', `/api/upload/${body.upload_id}/pause`)
    expect((await statusOf(server.url, body.upload_id)).body.current_speed).toBe(0)
    await api(server.url, 'POST', `/api/upload/${body.upload_id}/cancel`)
  })

  it('never writes chunks larger than 64 KiB while throttled', () => {
    for (const speed of [1, 1000, 16 * 1024, 256 * 1024, 4 * 1024 ** 2, 64 * 1024 ** 2, 1024 ** 3]) {
      expect(chunkSizeFor(speed)).toBeLessThanOrEqual(MAX_THROTTLED_CHUNK)
    }
  })
})

describe('pause, resume, cancel', () => {
  it('pause stops the bytes: the transfer file does not grow after the answer', async () => {
    const { body } = await restUpload(server.url, bytes(100_000), { speed: 20_000 })
    const id = body.upload_id
    await waitFor(async () => ((await sizeOnDisk(partOf(id)).catch(() => 0)) > 5000 ? true : undefined))
    await api(server.url, 'POST', `/api/upload/${id}/pause`)
    const atPause = await sizeOnDisk(partOf(id))
    const reported = (await statusOf(server.url, id)).body.uploaded_size
    expect(reported).toBe(atPause)
    await sleep(400) // long enough for 8000 more bytes at 20 kB/s
    expect(await sizeOnDisk(partOf(id))).toBe(atPause)
    expect((await statusOf(server.url, id)).body).toMatchObject({ status: 'paused', uploaded_size: atPause })
    await api(server.url, 'POST', `/api/upload/${id}/cancel`)
  })

  it('resume continues from the same byte at the new speed and completes byte for byte', async () => {
    const content = bytes(300_000)
    const { body } = await restUpload(server.url, content, { speed: 20_000 })
    const id = body.upload_id
    await waitFor(async () => ((await sizeOnDisk(partOf(id)).catch(() => 0)) > 2000 ? true : undefined))
    await api(server.url, 'POST', `/api/upload/${id}/pause`)
    const pausedAt = (await statusOf(server.url, id)).body.uploaded_size
    expect(pausedAt).toBeGreaterThan(2000)
    expect(pausedAt).toBeLessThan(20_000)

    const resumedAt = performance.now()
    expect(await api(server.url, 'POST', `/api/upload/${id}/resume?speed=600000`)).toMatchObject({
      body: { status: 'resumed', speed: 600_000 },
    })
    // Starting over would show a count below pausedAt here: at 600 kB/s the first 30 kB chunk takes 50 ms.
    expect((await statusOf(server.url, id)).body.uploaded_size).toBeGreaterThanOrEqual(pausedAt)
    await waitForStatus(server.url, id, 'completed')
    // At the old speed the rest would take 14 s; at the new one, half a second.
    const seconds = (performance.now() - resumedAt) / 1000
    expect(seconds).toBeGreaterThan(((300_000 - pausedAt) / 600_000) * 0.8)
    expect(seconds).toBeLessThan(2)
    expect((await readFile(join(server.dir, `${id}_data.bin`))).equals(content)).toBe(true)
  })

  it('cancel stops at once, removes the partial and staging files, and keeps the count reached', async () => {
    const { body } = await restUpload(server.url, bytes(100_000), { speed: 20_000 })
    const id = body.upload_id
    await waitFor(async () => ((await sizeOnDisk(partOf(id)).catch(() => 0)) > 2000 ? true : undefined))
    expect((await listStorage(server.dir)).staging).toContain(id)
    const before = (await statusOf(server.url, id)).body.uploaded_size
    expect(before).toBeGreaterThan(0)
    await api(server.url, 'POST', `/api/upload/${id}/cancel`)
    const { stored, staging, transfers } = await listStorage(server.dir)
    expect(stored.filter((name) => name.startsWith(id))).toEqual([])
    expect(staging).not.toContain(id)
    expect(transfers).not.toContain(id)
    // Scripts that follow progress read a drop as corruption (the older service kept the count too).
    const after = (await statusOf(server.url, id)).body
    expect(after.status).toBe('canceled')
    expect(after.uploaded_size).toBeGreaterThanOrEqual(before)
    expect(after.uploaded_size).toBeLessThan(100_000)
  })

  it('cancel of a paused upload removes its bytes too', async () => {
    const { body } = await restUpload(server.url, bytes(100_000), { speed: 20_000 })
    const id = body.upload_id
    await waitFor(async () => ((await sizeOnDisk(partOf(id)).catch(() => 0)) > 0 ? true : undefined))
    await api(server.url, 'POST', `/api/upload/${id}/pause`)
    // The bytes are there while it is paused...
    expect((await listStorage(server.dir)).transfers).toContain(id)
    expect((await listStorage(server.dir)).staging).toContain(id)
    await api(server.url, 'POST', `/api/upload/${id}/cancel`)
    // ...and gone once it is canceled.
    const { stored, staging, transfers } = await listStorage(server.dir)
    expect(stored.filter((name) => name.startsWith(id))).toEqual([])
    expect(staging).not.toContain(id)
    expect(transfers).not.toContain(id)
  })
})

describe('an unthrottled transfer on a local folder', () => {
  let receiver: HookReceiver
  let hooked: TestServer
  beforeAll(async () => {
    receiver = await startHookReceiver()
    // pre-finish holds each completion 1.5 s (time for a busy machine to look): the transfer is whole then, and
    // staging still there.
    receiver.answerWith((payload) =>
      payload.type === 'pre-finish' ? { status: 204, delayMs: 1500 } : undefined,
    )
    hooked = await startServer({
      HOOKS_URL: receiver.url,
      HOOKS_SECRET: receiver.secret,
      HOOKS_EVENTS: 'pre-finish',
    })
  })
  afterAll(async () => {
    await hooked.stop()
    await receiver.stop()
  })

  /** The transfer's and staging's inodes as pre-finish is asked about the upload, and the stored bytes after. */
  async function whileAsked(content: ReturnType<typeof bytes>, speed: number) {
    const { body } = await restUpload(hooked.url, content, { speed })
    const id = body.upload_id
    await receiver.until((r) => r.arrived.some((p) => p.type === 'pre-finish' && p.upload.id === id))
    const [transfer, staged] = await Promise.all([
      stat(transferFile(hooked.dir, id)),
      stat(join(hooked.dir, '.staging', id)),
    ])
    await waitForStatus(hooked.url, id, 'completed')
    const stored = await readFile(join(hooked.dir, `${id}_data.bin`))
    return { transfer, staged, stored, listed: await listStorage(hooked.dir), id }
  }

  it('is the staged bytes themselves, read once to verify them, never a second copy', async () => {
    const content = bytes(5 * 1024 * 1024 + 3)
    const { transfer, staged, stored, listed, id } = await whileAsked(content, 0)
    expect(transfer.ino).toBe(staged.ino)
    expect(stored.equals(content)).toBe(true)
    expect(listed.staging).not.toContain(id)
    expect(listed.transfers).not.toContain(id)
  })

  it('under a server-wide cap, is a copy the cap paces', async () => {
    await api(hooked.url, 'POST', '/api/limits/total-speed?speed=4000000')
    try {
      const content = bytes(400_000)
      const { transfer, staged, stored } = await whileAsked(content, 0)
      expect(transfer.ino).not.toBe(staged.ino)
      expect(stored.equals(content)).toBe(true)
    } finally {
      await api(hooked.url, 'POST', '/api/limits/total-speed?speed=0')
    }
  })

  it('at a speed, is a copy written at that speed', async () => {
    const content = bytes(200_000)
    const { transfer, staged, stored } = await whileAsked(content, 1024 * 1024)
    expect(transfer.ino).not.toBe(staged.ino)
    expect(stored.equals(content)).toBe(true)
  })
})
