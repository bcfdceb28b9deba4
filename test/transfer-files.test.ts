import { createHash } from 'node:crypto'
import { open, readdir, readFile, rename, rm, stat, truncate, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import {
  api,
  bytes,
  gql,
  restUpload,
  waitFor,
  waitForStatus,
  type UploadStatusBody,
} from './support/clients.js'
import { startRedis, type TestRedis } from './support/redis.js'
import { startServer, transferFile, type TestServer } from './support/server.js'
import { tusCreate, tusPatch } from './support/tus.js'

/**
 * Where a transfer writes, and what a stored file is, can never be confused, whatever the client called its
 * file; and a transfer's file changed behind a paused upload is never trusted: the upload goes on from the
 * bytes that still match what was received, and completes with exactly those bytes.
 */
let server: TestServer | undefined
afterEach(async () => {
  await server?.stop()
  server = undefined
})

const sha = (content: Buffer) => createHash('sha256').update(content).digest('hex')
const sizeOf = (path: string) =>
  stat(path).then(
    (s) => s.size,
    () => 0,
  )

/** The download, and the ETag it claims for it. */
async function download(url: string, id: string): Promise<{ content: Buffer; etag: string | null }> {
  const response = await fetch(`${url}/api/files/${id}/download`)
  expect(response.status).toBe(200)
  return { content: Buffer.from(await response.arrayBuffer()), etag: response.headers.get('etag') }
}

/** The download, its ETag, and the stored file itself (a download stops at the recorded size) are `content`. */
async function expectStored(url: string, id: string, content: Buffer): Promise<void> {
  const got = await download(url, id)
  expect(got.content.length).toBe(content.length)
  expect(got.content.equals(content)).toBe(true)
  expect(got.etag).toBe(`"${sha(content)}"`)
  const dir = server!.dir
  const [stored, ...others] = (await readdir(dir)).filter((name) => name.startsWith(`${id}_`))
  expect(others).toEqual([])
  expect((await readFile(join(dir, stored!))).equals(content)).toBe(true)
}

describe('a stored file is never taken for a transfer, whatever its name', () => {
  it('a completed file named backup.part survives a restart and downloads byte for byte', async () => {
    server = await startServer()
    const content = bytes(50_000)
    const { body } = await restUpload(server.url, content, { filename: 'backup.part', speed: 0 })
    await waitForStatus(server.url, body.upload_id, 'completed')
    server = await server.restart()
    expect(await readdir(server.dir)).toContain(`${body.upload_id}_backup.part`)
    await expectStored(server.url, body.upload_id, content)
  })

  describe('with several instances (Redis)', () => {
    let redis: TestRedis
    beforeAll(async () => {
      redis = await startRedis()
    })
    afterAll(() => redis.stop())

    it('a completed file named backup.part survives a restart, though its record is ended', async () => {
      // Shared, start-up asks Redis which leftovers no unfinished upload owns: an ended record is no owner.
      server = await startServer({ REDIS_URL: redis.url, INSTANCE_ID: 'node-a' })
      const content = bytes(50_000)
      const { body } = await restUpload(server.url, content, { filename: 'backup.part', speed: 0 })
      await waitForStatus(server.url, body.upload_id, 'completed')
      server = await server.restart()
      expect(await readdir(server.dir)).toContain(`${body.upload_id}_backup.part`)
      await expectStored(server.url, body.upload_id, content)
    })

    it('a paused upload’s transfer in the layout before .transfers goes with its other bytes on cancel', async () => {
      server = await startServer({ REDIS_URL: redis.url, INSTANCE_ID: 'node-a' })
      const { body } = await restUpload(server.url, bytes(100_000), { speed: 20_000 })
      const id = body.upload_id
      await waitFor(async () => (await sizeOf(transferFile(server!.dir, id))) > 0)
      await api(server.url, 'POST', `/api/upload/${id}/pause`)
      const dir = server.dir
      await server.app.close()
      const legacy = join(dir, `${id}_data.bin.part`)
      await rename(transferFile(dir, id), legacy)
      server = await startServer({ REDIS_URL: redis.url, INSTANCE_ID: 'node-a' }, dir)
      // Shared, a paused upload is left as it is at start-up (whoever resumes it verifies its bytes) ...
      expect(await sizeOf(legacy)).toBeGreaterThan(0)
      // ... and a cancel removes them, wherever the older layout kept them.
      await api(server.url, 'POST', `/api/upload/${id}/cancel`)
      await expect(stat(legacy)).rejects.toThrow(/ENOENT/)
      await expect(stat(transferFile(dir, id))).rejects.toThrow(/ENOENT/)
    })
  })

  it('an unfinished transfer in the layout before .transfers is moved there, verified, and completes', async () => {
    server = await startServer()
    const content = bytes(200_000)
    const { body } = await restUpload(server.url, content, { speed: 50_000 })
    const id = body.upload_id
    await waitFor(async () => (await sizeOf(transferFile(server!.dir, id))) > 20_000)
    await api(server.url, 'POST', `/api/upload/${id}/pause`)
    const dir = server.dir
    await server.app.close()
    // Where the older layout kept it, beside the stored files; with a byte in it that is not what arrived.
    const legacy = join(dir, `${id}_data.bin.part`)
    await rename(transferFile(dir, id), legacy)
    const wrong = 10_000
    const file = await open(legacy, 'r+')
    await file.write(Buffer.from([content[wrong]! ^ 0xff]), 0, 1, wrong)
    await file.close()

    server = await startServer({}, dir)
    await expect(stat(legacy)).rejects.toThrow(/ENOENT/)
    const paused = (await api<UploadStatusBody>(server.url, 'GET', `/api/upload/${id}/status`)).body
    expect(paused).toMatchObject({ status: 'paused', uploaded_size: wrong })
    await api(server.url, 'POST', `/api/upload/${id}/resume?speed=0`)
    await waitForStatus(server.url, id, 'completed')
    await expectStored(server.url, id, content)
  })
})

describe('a transfer file changed behind a paused upload', () => {
  interface Said {
    status: string
    uploadedSize: number
  }

  /** 400 kB sent at 100 kB/s, paused with some of it written: the bytes sent, and where it paused. */
  async function pausedUpload(): Promise<{ id: string; content: Buffer; part: string; at: number }> {
    server = await startServer()
    const content = bytes(400_000)
    const { body } = await restUpload(server.url, content, { speed: 100_000 })
    const id = body.upload_id
    const part = transferFile(server.dir, id)
    await waitFor(async () => (await sizeOf(part)) > 20_000)
    const { data } = await gql<{ pauseUpload: Said }>(
      server.url,
      'mutation ($id: ID!) { pauseUpload(id: $id) { status uploadedSize } }',
      { id },
    )
    expect(data?.pauseUpload.status).toBe('PAUSED')
    const at = data!.pauseUpload.uploadedSize
    expect(await sizeOf(part)).toBe(at)
    return { id, content, part, at }
  }

  /** Resumes at full speed: what the resume said it goes on from, once the upload has completed. */
  async function resumeToCompletion(id: string): Promise<number> {
    const { data, errors } = await gql<{ resumeUpload: Said }>(
      server!.url,
      'mutation ($id: ID!) { resumeUpload(id: $id, speed: 0) { status uploadedSize } }',
      { id },
    )
    expect(errors).toBeUndefined()
    expect(data?.resumeUpload.status).toBe('IN_PROGRESS')
    await waitForStatus(server!.url, id, 'completed')
    return data!.resumeUpload.uploadedSize
  }

  it('cut short: the resume goes on from the bytes left, never zeros, and completes byte for byte', async () => {
    const { id, content, part } = await pausedUpload()
    await truncate(part, 1000)
    expect(await resumeToCompletion(id)).toBe(1000)
    await expectStored(server!.url, id, content)
  })

  it('cut to nothing: the resume starts it over and completes byte for byte', async () => {
    const { id, content, part } = await pausedUpload()
    await truncate(part, 0)
    expect(await resumeToCompletion(id)).toBe(0)
    await expectStored(server!.url, id, content)
  })

  it('overwritten with other bytes of the same length: the resume goes on from the first that differs', async () => {
    const { id, content, part, at } = await pausedUpload()
    const file = await open(part, 'r+')
    const other = Buffer.from(content.subarray(500, 1500)).map((byte) => byte ^ 0x5a)
    await file.write(other, 0, other.length, 500)
    await file.close()
    expect(await sizeOf(part)).toBe(at)
    expect(await resumeToCompletion(id)).toBe(500)
    await expectStored(server!.url, id, content)
  })

  it('grown past its full length: the bytes past where it paused are cut off, and it completes byte for byte', async () => {
    const { id, content, part, at } = await pausedUpload()
    const file = await open(part, 'a')
    await file.write(Buffer.alloc(content.length, 0xee))
    await file.close()
    expect(await resumeToCompletion(id)).toBe(at)
    await expectStored(server!.url, id, content)
  })

  it('replaced by another file of the same length and times: it is verified again, and completes byte for byte', async () => {
    const { id, content, part, at } = await pausedUpload()
    expect(at).toBeGreaterThan(3000)
    // Other bytes in a new file, given the old one's times and moved over it: the times alone prove nothing.
    const other = Buffer.from(await readFile(part))
    for (let i = 2000; i < 3000; i++) other[i] = other[i]! ^ 0xa5
    const { atime, mtime } = await stat(part)
    await writeFile(`${part}.new`, other)
    await utimes(`${part}.new`, atime, mtime)
    await rename(`${part}.new`, part)
    expect(await resumeToCompletion(id)).toBe(2000)
    await expect(sizeOf(part)).resolves.toBe(0) // renamed into place
    await expectStored(server!.url, id, content)
  })

  /**
   * 400 kB sent at 100 kB/s; once its transfer file holds more than `after` bytes, the file is cut to
   * `to(its size)` behind the run. The upload must still be stored byte for byte.
   */
  async function cutWhileRunning(after: number, to: (size: number) => number): Promise<void> {
    server = await startServer()
    const content = bytes(400_000)
    const { body } = await restUpload(server.url, content, { speed: 100_000 })
    const part = transferFile(server.dir, body.upload_id)
    await waitFor(async () => (await sizeOf(part)) > after)
    await truncate(part, to(await sizeOf(part)))
    await waitForStatus(server.url, body.upload_id, 'completed')
    await expectStored(server.url, body.upload_id, content)
  }

  it('cut short while it runs: never completes with the zeros written into the gap, but goes on from the bytes left', async () => {
    // Cut while the run sleeps between chunks, as almost always: its next write would grow the file back.
    await cutWhileRunning(100_000, () => 1000)
  })

  it('cut by a few bytes while it runs, too few for a hole to show: the run appends at the cut, never leaves zeros in the gap', async () => {
    // Half-way between the run's once-a-second looks at its file (the first is a second after it opened it).
    // Written back at their old positions, the next bytes would leave a 1000-byte hole: far under what the
    // hole check can tell from a file system's block slack, and the length would be right again.
    await cutWhileRunning(150_000, (size) => size - 1000)
  })

  it('grown past its full length while it runs: caught before completion, cut off, and completes byte for byte', async () => {
    server = await startServer()
    const content = bytes(200_000)
    const { body } = await restUpload(server.url, content, { speed: 100_000 })
    const part = transferFile(server.dir, body.upload_id)
    await waitFor(async () => (await sizeOf(part)) > 20_000)
    const file = await open(part, 'a')
    await file.write(Buffer.alloc(content.length, 0xee))
    await file.close()
    await waitForStatus(server.url, body.upload_id, 'completed')
    await expectStored(server.url, body.upload_id, content)
  })
})

describe('working folders removed under a running server', () => {
  it('are made again by the next uploads (REST and tus), which complete byte for byte', async () => {
    server = await startServer()
    const url = server.url
    const dir = server.dir
    await rm(join(dir, '.staging'), { recursive: true, force: true })
    await rm(join(dir, '.transfers'), { recursive: true, force: true })
    const content = bytes(70_000)
    const rest = await restUpload(url, content, { speed: 0 })
    expect(rest.status).toBe(200)
    await waitForStatus(url, rest.body.upload_id, 'completed')
    expect((await readFile(join(dir, `${rest.body.upload_id}_data.bin`))).equals(content)).toBe(true)

    await rm(join(dir, '.staging'), { recursive: true, force: true })
    await rm(join(dir, '.transfers'), { recursive: true, force: true })
    const created = await tusCreate(url, content.length, { filename: 'tus.bin' })
    expect(created.status).toBe(201)
    expect((await tusPatch(created.location, 0, content)).status).toBe(204)
    await waitForStatus(url, created.id, 'completed')
    expect((await readFile(join(dir, `${created.id}_tus.bin`))).equals(content)).toBe(true)
  })
})
