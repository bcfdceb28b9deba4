import { execFileSync } from 'node:child_process'
import { mkdtemp, open, rm, statfs, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { api, bytes, gql, restUpload, statusOf, waitFor, waitForStatus } from './support/clients.js'
import { tusCreate, tusHead, tusPatch } from './support/tus.js'
import { multipartHead, openRequest, partHead } from './support/raw.js'
import { captureLogLines } from './support/log-lines.js'
import { listStorage, startServer, transferFile, type TestServer } from './support/server.js'

/**
 * A file is kept twice until its transfer completes: the staging copy it arrived in, and the transfer file
 * being written in .transfers. Room for one copy is not room enough, and the client hears it first.
 */
const isRoot = process.getuid?.() === 0
const log = captureLogLines()

describe.skipIf(!isRoot)('507 counts both copies', () => {
  let disk: string
  let server: TestServer
  beforeAll(async () => {
    disk = await mkdtemp(join(tmpdir(), 'room-disk-'))
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', disk])
    server = await startServer({}, join(disk, 'storage'))
  })
  afterAll(async () => {
    await server?.stop()
    execFileSync('umount', [disk])
    await rm(disk, { recursive: true, force: true })
  })

  const nothingLeft = () => waitFor(async () => (await listStorage(server.dir)).staging.length === 0)

  it('a declared body that fits once but not twice → 507 before a byte is read', async () => {
    const request = openRequest(server.url, multipartHead('/api/upload?speed=0', 1_200_000))
    request.write(partHead('file', 'twice-too-big.bin'))
    request.write(bytes(10_000))
    const answer = await request.answer
    request.end()
    expect(answer.status).toBe(507)
    expect(JSON.parse(answer.body)).toEqual({ detail: expect.stringMatching(/kept twice/) })
    await nothingLeft()
  })

  it('a chunked body (no length declared) that fits once but not twice → 507 as soon as it has arrived', async () => {
    const content = bytes(1_200_000)
    const boundary = 'b0undary'
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(
        `${server.url}/api/upload?speed=0`,
        {
          method: 'POST',
          headers: {
            'content-type': `multipart/form-data; boundary=${boundary}`,
            'transfer-encoding': 'chunked',
          },
        },
        (res) => {
          let body = ''
          res.on('data', (chunk: Buffer) => (body += chunk.toString()))
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
        },
      )
      req.on('error', reject)
      req.write(partHead('file', 'chunked.bin'))
      req.write(content)
      req.end(`\r\n--${boundary}--\r\n`)
    })
    expect(answer.status).toBe(507)
    expect(JSON.parse(answer.body)).toEqual({ detail: expect.stringMatching(/kept twice/) })
    await nothingLeft()
    expect((await api<{ uploads: unknown[] }>(server.url, 'GET', '/api/uploads')).body.uploads).toEqual([])
  })

  it('one that fits twice is taken and completes', async () => {
    const { status, body } = await restUpload(server.url, bytes(600_000), { speed: 0 })
    expect(status).toBe(200)
    await waitForStatus(server.url, body.upload_id, 'completed')
  })
})

/** A real 5 MiB tmpfs of the describe block's own, and a server that stores on it (root only: it mounts). */
function onSmallDisk(prefix: string): { disk: () => string; server: () => TestServer } {
  let disk = ''
  let server: TestServer | undefined
  beforeAll(async () => {
    disk = await mkdtemp(join(tmpdir(), prefix))
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=5m', 'tmpfs', disk])
    server = await startServer({}, join(disk, 'storage'))
  })
  afterAll(async () => {
    await server?.stop()
    execFileSync('umount', ['-l', disk])
    await rm(disk, { recursive: true, force: true })
  })
  return { disk: () => disk, server: () => server! }
}

describe.skipIf(!isRoot)('room is promised when it is granted', () => {
  const small = onSmallDisk('room-promised-')

  it('two tus PATCHes at once that fit only one at a time: one is taken, the other refused 507 before its bytes, and stays resumable', async () => {
    // 3.6 MB free: room for one 1.5 MB file twice (3 MB), not for two.
    const { bavail, bsize } = await statfs(small.disk())
    await writeFile(join(small.disk(), 'filler'), Buffer.alloc(bavail * bsize - 3_600_000))
    const contents = [bytes(1_500_000), bytes(1_500_000)]
    const created = await Promise.all(
      contents.map((content, i) =>
        tusCreate(small.server().url, content.length, { filename: `room${i}.bin`, speed: '0' }),
      ),
    )
    expect(created.map((upload) => upload.status)).toEqual([201, 201])

    const answers = await Promise.all(created.map((upload, i) => tusPatch(upload.location, 0, contents[i]!)))
    expect(answers.map((answer) => answer.status).sort()).toEqual([204, 507])
    const refused = answers.findIndex((answer) => answer.status === 507)
    const taken = 1 - refused
    expect(answers[refused]?.body).toMatch(/no room left.*kept twice/)

    // The refused one lost nothing and is not over: its offset is the truth, and its sender may go on.
    const head = await tusHead(created[refused]!.location)
    expect(head.status).toBe(200)
    expect(head.headers.get('upload-offset')).toBe('0')
    expect((await statusOf(small.server().url, created[refused]!.id)).body.status).toBe('in_progress')
    const { data } = await gql<{ upload: { status: string } }>(
      small.server().url,
      `{ upload(id: "${created[refused]!.id}") { status } }`,
    )
    expect(data?.upload.status).toBe('RECEIVING')

    // Once there is room (the other is stored, then deleted), the same upload goes on and is stored whole.
    await waitForStatus(small.server().url, created[taken]!.id, 'completed')
    expect((await api(small.server().url, 'DELETE', `/api/files/${created[taken]!.id}`)).status).toBe(200)
    const retry = await tusPatch(created[refused]!.location, 0, contents[refused]!)
    expect(retry.status).toBe(204)
    await waitForStatus(small.server().url, created[refused]!.id, 'completed')
    const stored = Buffer.from(
      await (await fetch(`${small.server().url}/api/files/${created[refused]!.id}/download`)).arrayBuffer(),
    )
    expect(stored.equals(contents[refused]!)).toBe(true)
  })
})

describe.skipIf(!isRoot)('room promised to a request comes back when its client hangs up', () => {
  const small = onSmallDisk('room-hangup-')

  it('requests reset right after their headers (while their room is being granted) leave no room promised', async () => {
    // Each declares a body that needs all but ~1 MB of the disk twice over: one leaked promise is enough to refuse the next.
    const declared = 2_000_000
    const hangups = Array.from({ length: 40 }, () => {
      const request = openRequest(small.server().url, multipartHead('/api/upload?speed=0', declared))
      request.socket.once('connect', () => setImmediate(() => request.socket.resetAndDestroy()))
      return request.answer
    })
    await Promise.all(hangups)

    // Room for a 1.5 MB file twice is there again once the server has seen every hang-up.
    const content = bytes(1_500_000)
    const taken = await waitFor(async () => {
      const answer = await restUpload(small.server().url, content, { speed: 0 })
      return answer.status === 200 ? answer.body : undefined
    }, 10_000)
    await waitForStatus(small.server().url, taken.upload_id, 'completed')
  })
})

describe.skipIf(!isRoot)('a transfer that starts again after its file was changed keeps its room', () => {
  const small = onSmallDisk('room-recheck-')

  it('after a recheck its new run still holds the rest of its room: a request that would need it is refused 507', async () => {
    // 3.6 MB free: a 1 MB upload twice (2 MB) leaves 1.6 MB, not room for a 0.9 MB one twice (1.8 MB), as long
    // as what the first's transfer has still to write is promised to it.
    const { bavail, bsize } = await statfs(small.disk())
    await writeFile(join(small.disk(), 'filler'), Buffer.alloc(bavail * bsize - 3_600_000))
    const first = await restUpload(small.server().url, bytes(1_000_000), { speed: 200_000 })
    expect(first.status).toBe(200)
    const id = first.body.upload_id
    const reached = await waitFor(async () => {
      const size = (await statusOf(small.server().url, id)).body.uploaded_size
      return size >= 300_000 && size
    })

    // Something else writes over its transfer file's head: the run stops, and a new one starts from 0.
    const file = await open(transferFile(small.server().dir, id), 'r+')
    await file.write(Buffer.alloc(1000, 1), 0, 1000, 0)
    await file.truncate(1_000_000 + 4096)
    await file.close()
    await waitFor(() =>
      log.lines().some((line) => line.event === 'upload.transfer_file_changed' && line.id === id),
    )
    await waitFor(async () => (await statusOf(small.server().url, id)).body.uploaded_size < reached)

    const second = await restUpload(small.server().url, bytes(900_000), { speed: 0 })
    expect(second.status).toBe(507)
    await waitForStatus(small.server().url, id, 'completed')
  })
})
