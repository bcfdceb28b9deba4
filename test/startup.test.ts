import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createServer, type Server } from 'node:net'
import type { AddressInfo } from 'node:net'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { bytes, restUpload, statusOf, waitFor, waitForStatus } from './support/clients.js'
import { runUntilExit, spawnServer, type ChildServer } from './support/child.js'
import { multipartHead, openRequest, partHead } from './support/raw.js'
import { readState } from './support/state.js'

let dir: string
let running: ChildServer[] = []
const servers: Server[] = []
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'uploads-startup-'))
})
afterEach(async () => {
  for (const server of running) server.child.kill('SIGKILL')
  await Promise.all(running.map((server) => server.exited))
  running = []
  for (const server of servers.splice(0)) server.close()
  await rm(dir, { recursive: true, force: true })
})

async function start(env: Record<string, string> = {}, folder = dir): Promise<ChildServer> {
  const server = await spawnServer(folder, env)
  running.push(server)
  return server
}

const ID = '0b0e0b8c-5b8a-4a57-9c62-5a2f3e0e7b11'
const PART = join('.transfers', ID)
/** A paused upload's bytes, as a server leaves them: these must survive any start-up that refuses. */
async function unfinishedBytes(): Promise<void> {
  await mkdir(join(dir, '.staging'), { recursive: true })
  await mkdir(join(dir, '.transfers'), { recursive: true })
  await writeFile(join(dir, '.staging', ID), 'staged bytes')
  await writeFile(join(dir, PART), 'staged')
}
const stillThere = async () => {
  expect(await readFile(join(dir, '.staging', ID), 'utf8')).toBe('staged bytes')
  expect(await readFile(join(dir, PART), 'utf8')).toBe('staged')
}

/** A body that is still arriving at the first server, with its staging file on disk. */
async function arriving(url: string, content: Buffer) {
  const tail = Buffer.from('\r\n--b0undary--\r\n')
  const head = Buffer.from(partHead('file', 'arriving.bin'))
  const request = openRequest(
    url,
    multipartHead('/api/upload?speed=0', head.length + content.length + tail.length),
  )
  request.write(head)
  // More than a body held in memory (64 KiB): staged as it arrives.
  request.write(content.subarray(0, 100_000))
  await waitFor(async () => (await readdir(join(dir, '.staging'))).some((name) => name.endsWith('.incoming')))
  return {
    async finish() {
      request.write(Buffer.concat([content.subarray(100_000), tail]))
      const answer = await request.answer
      request.end()
      return answer
    },
  }
}

describe('a second server on the same folder', () => {
  it('exits at once, naming the folder, and the first one’s arriving upload is untouched', async () => {
    const first = await start()
    const content = bytes(200_000)
    const upload = await arriving(first.url, content)

    const second = await runUntilExit(dir)
    expect(second.code).toBe(1)
    expect(second.stderr).toMatch(
      new RegExp(`UPLOAD_DIR ${dir} is in use by another server \\(pid ${first.child.pid}`),
    )
    expect(second.stderr).toMatch(/set REDIS_URL/)
    expect(second.stderr).not.toMatch(/\n\s+at /) // one line, no stack trace

    const answer = await upload.finish()
    expect(answer.status).toBe(200)
    const id = (JSON.parse(answer.body) as { upload_id: string }).upload_id
    await waitForStatus(first.url, id, 'completed')
    expect(await readFile(join(dir, `${id}_arriving.bin`))).toEqual(content)
  })

  it('with the first one’s port as well: still refused by the folder, before the port is even tried', async () => {
    const first = await start()
    const upload = await arriving(first.url, bytes(200_000))
    const second = await runUntilExit(dir, { PORT: new URL(first.url).port })
    expect(second.code).toBe(1)
    expect(second.stderr).toMatch(/is in use by another server/)
    expect((await upload.finish()).status).toBe(200)
  })

  it('after the first one is SIGKILLed, the folder is free at once (the lock dies with its process)', async () => {
    const first = await start()
    first.child.kill('SIGKILL')
    await first.exited
    const second = await start()
    expect((await fetch(`${second.url}/readyz`)).status).toBe(200)
  })
})

describe('a port that is taken', () => {
  it('stops start-up with one line, and the folder is not swept', async () => {
    const blocker = createServer()
    servers.push(blocker)
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
    const port = (blocker.address() as AddressInfo).port
    await writeFile(join(dir, '.uploads.json'), JSON.stringify({ version: 2, seq: 0, uploads: {} }))
    await unfinishedBytes() // orphans (no record owns them), which a start that listened would remove
    const result = await runUntilExit(dir, { PORT: String(port) })
    expect(result.code).toBe(1)
    expect(result.stderr.trim()).toBe(`Port ${port} is in use: stop the other server or set PORT`)
    await stillThere()
  })

  it('a HOST that is not an address of this machine: one line naming HOST', async () => {
    const result = await runUntilExit(dir, { HOST: '192.0.2.1' })
    expect(result.code).toBe(1)
    expect(result.stderr.trim()).toMatch(/^HOST 192\.0\.2\.1 is not an address of this machine/)
  })
})

describe('a storage folder that cannot be written', () => {
  it.skipIf(process.getuid?.() !== 0)(
    'stops start-up with one configuration error naming UPLOAD_DIR',
    async () => {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', dir])
      try {
        const result = await runUntilExit(dir)
        expect(result.code).toBe(1)
        expect(result.stderr.trim()).toMatch(
          new RegExp(`^Configuration error: UPLOAD_DIR ${dir} is not a usable folder: .*read-only`, 'i'),
        )
      } finally {
        execFileSync('umount', [dir])
      }
    },
  )
})

describe('a state file that cannot be trusted stops start-up and touches nothing', () => {
  const record = {
    id: ID,
    filename: 'kept.bin',
    storedName: `${ID}_kept.bin`,
    status: 'PAUSED',
    uploadedSize: 6,
    totalSize: 12,
    targetSpeed: 1000,
    sha256: createHash('sha256').update('staged bytes').digest('hex'),
    error: null,
    createdAt: '2026-12-01T10:00:00.000Z',
    updatedAt: '2026-12-01T10:00:00.000Z',
    completedAt: null,
  }
  it.each([
    ['null', 'null', /not a state document/],
    ['{}', '{}', /has version undefined/],
    [
      'a wrong version',
      JSON.stringify({ version: 9, uploads: {} }),
      /has version 9; this server reads versions 1 and 2/,
    ],
    ['not JSON', '{"version":1,"uploads":{', /is not valid JSON/],
    [
      'a record missing a field',
      JSON.stringify({ version: 1, uploads: { [ID]: { ...record, totalSize: undefined } } }),
      /has no whole, non-negative totalSize/,
    ],
    [
      'a stored name outside the folder',
      JSON.stringify({ version: 1, uploads: { [ID]: { ...record, storedName: '../../etc/passwd' } } }),
      /storedName that is not \{id\}_\{name\}/,
    ],
  ])('%s', async (_, text, problem) => {
    await writeFile(join(dir, '.uploads.json'), text)
    await unfinishedBytes()
    const result = await runUntilExit(dir)
    expect(result.code).toBe(1)
    expect(result.stderr).toMatch(
      new RegExp(`state file ${join(dir, '.uploads.json').replace(/[.]/g, '\\.')}`),
    )
    expect(result.stderr).toMatch(problem)
    await stillThere()
    expect(await readFile(join(dir, '.uploads.json'), 'utf8')).toBe(text)
  })

  it('a journal line corrupt in the middle (not a torn last line)', async () => {
    await writeFile(join(dir, '.uploads.json'), JSON.stringify({ version: 2, seq: 0, uploads: {} }))
    const good = JSON.stringify({ s: 1, put: record })
    await writeFile(
      join(dir, '.uploads.journal.1'),
      `${good}\n{"s":2,"put":garbage\n${JSON.stringify({ s: 3, del: ID })}\n`,
    )
    await unfinishedBytes()
    const result = await runUntilExit(dir)
    expect(result.code).toBe(1)
    expect(result.stderr).toMatch(/journal .*\.uploads\.journal\.1 line 2 is not valid JSON/)
    await stillThere()
  })

  it('a torn last journal line (a write a crash cut off) is dropped, and the rest is kept', async () => {
    await writeFile(join(dir, '.uploads.json'), JSON.stringify({ version: 2, seq: 0, uploads: {} }))
    await writeFile(
      join(dir, '.uploads.journal.1'),
      `${JSON.stringify({ s: 1, put: record })}\n{"s":2,"put":{"id":"`,
    )
    await unfinishedBytes()
    const server = await start()
    await waitFor(async () => (await fetch(`${server.url}/readyz`)).status === 200)
    expect((await statusOf(server.url, ID)).body).toMatchObject({ status: 'paused', filename: 'kept.bin' })
  })

  it.each([
    [
      'a missing state file beside a journal that begins after a compaction',
      undefined,
      /state file .*\.uploads\.json is missing, but the oldest journal .*\.uploads\.journal\.41 begins at change 41/,
    ],
    [
      'a state file whose journal begins after a gap',
      JSON.stringify({ version: 2, seq: 7, uploads: {} }),
      /state file .*\.uploads\.json ends at change 7, but the oldest journal .*\.uploads\.journal\.41 begins at change 41/,
    ],
  ])('%s: the changes in between are lost, so it is refused', async (_, snapshot, problem) => {
    // The paused upload was recorded before change 41: replaying only the later journal would forget it,
    // and the sweep would then delete its bytes.
    if (snapshot !== undefined) await writeFile(join(dir, '.uploads.json'), snapshot)
    await writeFile(
      join(dir, '.uploads.journal.41'),
      `${JSON.stringify({ s: 41, p: [[ID, 8, '2026-12-01T10:00:01.000Z']] })}\n`,
    )
    await unfinishedBytes()
    const result = await runUntilExit(dir)
    expect(result.code).toBe(1)
    expect(result.stderr).toMatch(problem)
    await stillThere()
  })

  it('a missing state file beside unfinished uploads’ bytes is refused too (they would all be swept)', async () => {
    await unfinishedBytes()
    const result = await runUntilExit(dir)
    expect(result.code).toBe(1)
    expect(result.stderr).toMatch(/state file .* is missing, but .* holds unfinished uploads' bytes/)
    await stillThere()
  })
})

describe('a crash between the rename into place and COMPLETED reaching the state', () => {
  // Completion renames the flushed transfer file into place, saves COMPLETED, and only then removes staging; a
  // crash in between leaves the first shape. (Before that order, staging went first: the second shape,
  // which recovery must also bring to the truth rather than FAIL a whole, verified file.)
  it.each([
    ['its staging copy still there', true],
    ['its staging copy already gone', false],
  ])('recovers to the truth with %s: the verified file is COMPLETED, not FAILED', async (_, staged) => {
    const content = bytes(40_000)
    const sha256 = createHash('sha256').update(content).digest('hex')
    await mkdir(join(dir, '.staging'), { recursive: true })
    if (staged) await writeFile(join(dir, '.staging', ID), content)
    await writeFile(join(dir, `${ID}_done.bin`), content) // renamed into place; no transfer file any more
    const upload = {
      id: ID,
      filename: 'done.bin',
      storedName: `${ID}_done.bin`,
      status: 'IN_PROGRESS',
      uploadedSize: 32_768,
      totalSize: content.length,
      targetSpeed: 0,
      sha256,
      error: null,
      createdAt: '2026-12-01T10:00:00.000Z',
      updatedAt: '2026-12-01T10:00:00.000Z',
      completedAt: null,
    }
    await writeFile(
      join(dir, '.uploads.json'),
      JSON.stringify({ version: 2, seq: 0, uploads: { [ID]: upload } }),
    )
    const server = await start()
    await waitFor(async () => (await fetch(`${server.url}/readyz`)).status === 200)
    expect((await statusOf(server.url, ID)).body).toMatchObject({
      status: 'completed',
      uploaded_size: content.length,
    })
    expect(await readFile(join(dir, `${ID}_done.bin`))).toEqual(content)
    expect(await readdir(join(dir, '.staging'))).not.toContain(ID)
    expect((await readState(dir)).uploads[ID]?.status).toBe('COMPLETED')
  })
})

describe('recovery that fails', () => {
  it('fails that upload with the reason and keeps serving: no unhandled rejection ends the process', async () => {
    await writeFile(join(dir, '.uploads.json'), JSON.stringify({ version: 2, seq: 0, uploads: {} }))
    const first = await start()
    const { body } = await restUpload(first.url, bytes(30_000), { speed: 1000 })
    const id = body.upload_id
    first.child.kill('SIGKILL')
    await first.exited
    // Its staging file becomes something recovery cannot read as one.
    await rm(join(dir, '.staging', id))
    await mkdir(join(dir, '.staging', id, 'nested'), { recursive: true })
    const second = await start()
    const failed = await waitForStatus(second.url, id, 'failed')
    expect(failed.status).toBe('failed')
    // The reason says what failed, not where: the path and errno are in the log, with the upload's id.
    const reason = (await readState(dir)).uploads[id]?.error
    expect(reason).toMatch(/storage failed/)
    expect(reason).not.toContain(dir)
    // Recovery finds no transfer file and starts the copy from zero, so which step meets the bad staging file
    // first (recovery's check, or the transfer's first read) depends on timing: either logs it, with the id.
    await waitFor(async () =>
      new RegExp(`"event":"upload.(recovery|transfer)_error","id":"${id}".*EISDIR`).test(second.output()),
    )
    await waitFor(async () => (await fetch(`${second.url}/readyz`)).status === 200)
    expect(second.child.exitCode).toBeNull()
  })
})
