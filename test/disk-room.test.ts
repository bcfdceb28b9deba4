import { execFileSync } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { api, bytes, restUpload, waitFor, waitForStatus } from './support/clients.js'
import { multipartHead, openRequest, partHead } from './support/raw.js'
import { listStorage, startServer, type TestServer } from './support/server.js'

/**
 * A file is kept twice until its transfer completes: the staging copy it arrived in, and the transfer file
 * being written in .transfers. Room for one copy is not room enough, and the client hears it first.
 */
const isRoot = process.getuid?.() === 0

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
