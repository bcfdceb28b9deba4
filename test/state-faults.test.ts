import { execFileSync } from 'node:child_process'
import {
  appendFile,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  rm,
  stat,
  statfs,
  writeFile,
} from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { stopHashWorker } from '../src/core/transfer/hasher.js'
import { LocalStorage } from '../src/seams/storage/local.js'
import { api, bytes, gql, restUpload, statusOf, waitFor, waitForStatus } from './support/clients.js'
import { spawnServer, type ChildServer } from './support/child.js'
import { multipartHead, openRequest, partHead } from './support/raw.js'
import { incomingBytes, listStorage, startServer, type TestServer } from './support/server.js'
import { readState } from './support/state.js'
import { tusCreate, tusHead, tusPatch } from './support/tus.js'

const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

/**
 * A folder on a small real file system of its own, which can be filled to the last byte under a running
 * server and emptied again. (Remounting it read-only is refused while the server holds its journal open.)
 */
async function mount(): Promise<{ dir: string; full(on: boolean): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'state-disk-'))
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', dir])
  cleanups.push(async () => {
    execFileSync('umount', ['-l', dir])
    await rm(dir, { recursive: true, force: true })
  })
  const filler = join(dir, 'filler')
  return {
    dir,
    async full(on) {
      if (!on) return rm(filler, { force: true })
      const { bavail, bsize } = await statfs(dir)
      await writeFile(filler, Buffer.alloc(bavail * bsize))
      // Whatever rounding left, fill it too: the next write must fail.
      await appendFile(filler, Buffer.alloc(64 * 1024)).catch(() => undefined)
    },
  }
}

async function child(env: Record<string, string>): Promise<ChildServer & { dir: string }> {
  const storage = await mkdtemp(join(tmpdir(), 'uploads-state-faults-'))
  const server = await spawnServer(storage, env)
  cleanups.push(async () => {
    server.child.kill('SIGKILL')
    await server.exited
    await rm(storage, { recursive: true, force: true })
  })
  return { ...server, dir: storage }
}

/**
 * The fault: someone removes the state files under the running server, and its disk is full. The server
 * notices the journal is gone at its next write; it may start a new one only after a snapshot of every
 * record, which cannot be written now, so every change is refused until there is room again.
 * (A full disk alone refuses nothing at first: an append still fits in the last page of the journal.)
 */
async function breakStore(
  disk: { dir: string; full(on: boolean): Promise<void> },
  server: ChildServer,
): Promise<void> {
  // Stopped meanwhile, so its next write (a checkpoint, say) comes after both, never in between.
  server.child.kill('SIGSTOP')
  try {
    for (const name of await readdir(disk.dir)) {
      // Held open, so their pages stay taken when the server lets go of them: no room appears.
      const handle = await open(join(disk.dir, name), 'r')
      cleanups.push(() => handle.close())
      await rm(join(disk.dir, name), { force: true })
    }
    await disk.full(true)
  } finally {
    server.child.kill('SIGCONT')
  }
}

const isRoot = process.getuid?.() === 0

describe.skipIf(!isRoot)('a state store that cannot be written', () => {
  it('refuses a pause with 503 and leaves the transfer running as recorded; once writable, nothing is lost', async () => {
    const disk = await mount()
    const server = await child({ STATE_FILE: join(disk.dir, 'state.json') })
    const done = await restUpload(server.url, bytes(1000), { speed: 0, filename: 'earlier.bin' })
    await waitForStatus(server.url, done.body.upload_id, 'completed')
    const { body } = await restUpload(server.url, bytes(200_000), { speed: 20_000 })
    const id = body.upload_id
    await breakStore(disk, server)

    const pause = await fetch(`${server.url}/api/upload/${id}/pause`, { method: 'POST' })
    expect(pause.status).toBe(503)
    expect(await pause.json()).toEqual({
      detail: expect.stringMatching(/could not be saved .*nothing was changed/),
    })
    // A 5xx is logged with the id its answer carries, so a user's report finds the line.
    const requestId = pause.headers.get('x-request-id')
    expect(server.output()).toMatch(
      new RegExp(`"event":"rest.error","requestId":"${requestId}".*"status":503`),
    )
    const graphql = await gql(server.url, `mutation { pauseUpload(id: "${id}") { id } }`)
    expect(graphql.errors?.[0]?.extensions?.code).toBe('UNAVAILABLE')
    const speed = await api(server.url, 'POST', `/api/upload/${id}/speed?speed=1000`)
    expect(speed.status).toBe(503)
    // The record says running at 20 kB/s, so it is: the bytes still move, at the recorded speed.
    const running = (await statusOf(server.url, id)).body
    expect(running).toMatchObject({ status: 'in_progress', target_speed: 20_000 })
    await waitFor(
      async () => (await statusOf(server.url, id)).body.uploaded_size > running.uploaded_size + 4000,
    )
    expect(server.output()).toMatch(/"event":"store.write_failed"/)

    await disk.full(false)
    expect((await api(server.url, 'POST', `/api/upload/${id}/pause`)).status).toBe(200)
    // The new snapshot holds every record, the ones from before the fault included.
    const state = await readState(disk.dir, 'state.json')
    expect(state.uploads[id]?.status).toBe('PAUSED')
    expect(state.uploads[done.body.upload_id]?.status).toBe('COMPLETED')
  })

  it('a completion it cannot save is retried and logged; until then API and disk both still say in progress', async () => {
    const disk = await mount()
    const server = await child({ STATE_FILE: join(disk.dir, 'state.json') })
    const content = bytes(60_000)
    const { body } = await restUpload(server.url, content, { speed: 30_000 })
    const id = body.upload_id
    await breakStore(disk, server)
    // The transfer finishes (its bytes are on another disk) but COMPLETED cannot be recorded yet.
    await waitFor(() =>
      /"event":"store.write_failed","id":"[^"]+","status":"COMPLETED"/.test(server.output()),
    )
    expect(await stat(join(server.dir, `${id}_data.bin`))).toMatchObject({ size: content.length })
    expect((await statusOf(server.url, id)).body).toMatchObject({
      status: 'in_progress',
      uploaded_size: content.length,
    })

    await disk.full(false)
    await waitForStatus(server.url, id, 'completed')
    expect((await readState(disk.dir, 'state.json')).uploads[id]?.status).toBe('COMPLETED')
    expect(await readdir(join(server.dir, '.staging'))).not.toContain(id)
  })
})

describe('a hashing worker that dies mid-upload', () => {
  let server: TestServer
  cleanups.push(() => server?.stop())

  it('fails the uploads it was hashing at once (never a wait forever), leaves no .incoming, and the next works', async () => {
    server = await startServer()
    cleanups.push(() => server.stop())
    // Bigger than one block, so that the worker hashes it (a body of a few KiB is hashed inline, see hasher.ts).
    const content = bytes(3_000_000)
    const tail = Buffer.from('\r\n--b0undary--\r\n')
    const head = Buffer.from(partHead('file', 'doomed.bin'))
    const request = openRequest(
      server.url,
      multipartHead('/api/upload?speed=0', head.length + content.length + tail.length),
    )
    request.write(head)
    request.write(content.subarray(0, 1_500_000))
    // A whole block has passed the hash on its way to disk, so the worker holds this body's hash.
    await waitFor(async () => (await incomingBytes(server.dir)) >= 1024 * 1024)
    await stopHashWorker()
    request.write(Buffer.concat([content.subarray(1_500_000), tail]))
    const answer = await request.answer
    request.end()
    expect(answer.status).toBe(500)
    await waitFor(async () => (await listStorage(server.dir)).staging.length === 0)
    const next = await restUpload(server.url, bytes(5000), { speed: 0 })
    expect(next.status).toBe(200)
    await waitForStatus(server.url, next.body.upload_id, 'completed')
  })
})

describe('a hashing worker that dies mid-transfer', () => {
  it('the transfer hashes what it wrote again from disk and completes, verified, byte for byte', async () => {
    const server = await startServer()
    cleanups.push(() => server.stop())
    // At 2 MiB/s the transfer's hash is on the worker (see transferHash), a block every half second.
    const content = bytes(6_000_000)
    const { body } = await restUpload(server.url, content, { speed: 2 * 1024 * 1024 })
    const id = body.upload_id
    // Past the first 1 MiB written, the worker holds the transfer's hash.
    await waitFor(async () => (await statusOf(server.url, id)).body.uploaded_size > 1.2 * 1024 * 1024)
    await stopHashWorker()
    const done = await waitForStatus(server.url, id, 'completed', 15_000)
    expect(done.uploaded_size).toBe(content.length)
    const stored = await readFile(join(server.dir, `${id}_data.bin`))
    expect(stored.equals(content)).toBe(true)
  })
})

/** The server's log lines that mention `text`, parsed. */
const linesWith = (output: string, text: string) =>
  output
    .split('\n')
    .filter((line) => line.startsWith('{') && line.includes(text))
    .map((line) => JSON.parse(line) as Record<string, unknown>)

describe('what a client is told of a failure inside the server', () => {
  it('a state write that fails is a 503 with a stable detail naming no server path; the log has the path and the request id', async () => {
    const stateDir = await mkdtemp(join(tmpdir(), 'state-file-'))
    cleanups.push(() => rm(stateDir, { recursive: true, force: true }))
    const server = await child({ STATE_FILE: join(stateDir, 'state.json') })
    const { body } = await restUpload(server.url, bytes(200_000), { speed: 20_000 })
    const id = body.upload_id
    // The journal goes, so the next change needs a new snapshot first; and the snapshot's temp file (the
    // state file's name, dotted, with .tmp) is a folder now, so that write fails with EISDIR.
    const temp = join(stateDir, '.state.json.tmp')
    for (const name of await readdir(stateDir)) await rm(join(stateDir, name), { force: true })
    await mkdir(temp)

    const pause = await fetch(`${server.url}/api/upload/${id}/pause`, { method: 'POST' })
    expect(pause.status).toBe(503)
    const { detail } = (await pause.json()) as { detail: string }
    expect(detail).toMatch(/could not be saved .*nothing was changed, try again/)
    const graphql = await gql(server.url, `mutation { pauseUpload(id: "${id}") { id } }`)
    expect(graphql.errors?.[0]?.extensions?.code).toBe('UNAVAILABLE')
    for (const told of [detail, graphql.errors?.[0]?.message ?? ''])
      for (const secret of [stateDir, server.dir, 'EISDIR', '.tmp']) expect(told).not.toContain(secret)

    const requestId = pause.headers.get('x-request-id')!
    expect(linesWith(server.output(), temp).filter((line) => line.requestId === requestId)).toEqual([
      expect.objectContaining({ level: 'error', event: 'rest.error', status: 503 }),
    ])
  })

  it('an upload that fails on a disk error keeps a reason naming no server path; the log has the path and its id', async () => {
    const server = await child({})
    const content = bytes(20_000)
    const created = await tusCreate(server.url, content.length, { filename: 'blocked.bin', speed: '0' })
    const { data } = await gql<{ upload: { storedName: string } }>(
      server.url,
      `{ upload(id: "${created.id}") { storedName } }`,
    )
    // Where the file is to be stored, a folder that is not empty: putting the file in place fails.
    const stored = new LocalStorage(server.dir).storedPath({
      id: created.id,
      storedName: data!.upload.storedName,
    })
    await mkdir(join(stored, 'in-the-way'), { recursive: true })
    expect((await tusPatch(created.location, 0, content)).status).toBe(204)

    await waitForStatus(server.url, created.id, 'failed')
    const { data: after } = await gql<{ upload: { error: string } }>(
      server.url,
      `{ upload(id: "${created.id}") { error } }`,
    )
    const reason = after!.upload.error
    expect(reason).toMatch(/storage/)
    for (const secret of [server.dir, stored, 'ENOTEMPTY', 'EISDIR', 'rename'])
      expect(reason).not.toContain(secret)
    expect(linesWith(server.output(), stored).filter((line) => line.id === created.id)).toContainEqual(
      expect.objectContaining({ level: 'error', event: 'upload.finalize_failed' }),
    )
  })
})

describe('an arrival the state store cannot record', () => {
  it('a multipart upload answered 503 "nothing was changed" keeps nothing: no record, no bytes, now or after the store heals', async () => {
    const stateDir = await mkdtemp(join(tmpdir(), 'uploads-arrival-state-'))
    cleanups.push(() => rm(stateDir, { recursive: true, force: true }))
    const server = await child({ STATE_FILE: join(stateDir, 'state.json') })
    const content = bytes(80_000)
    const tail = Buffer.from('\r\n--b0undary--\r\n')
    const head = Buffer.from(partHead('file', 'unrecorded.bin'))
    const request = openRequest(
      server.url,
      multipartHead('/api/upload?speed=0', head.length + content.length + tail.length),
    )
    cleanups.push(() => request.end())
    request.write(head)
    request.write(content.subarray(0, 30_000))
    const arriving = await waitFor(async () => {
      const { data } = await gql<{ uploads: { id: string; filename: string; receivedSize: number }[] }>(
        server.url,
        '{ uploads { id filename receivedSize } }',
      )
      return data?.uploads.find((upload) => upload.filename === 'unrecorded.bin' && upload.receivedSize > 0)
    }, 20_000)
    // The journal goes, and the snapshot that must precede a new one cannot be written: its temp path is a
    // folder. Every change is refused from here on.
    for (const name of await readdir(stateDir))
      if (name.includes('.journal.')) await rm(join(stateDir, name), { force: true })
    const temp = join(stateDir, '.state.json.tmp')
    await mkdir(temp)
    request.write(Buffer.concat([content.subarray(30_000), tail]))
    const answer = await request.answer
    expect(answer.status).toBe(503)
    expect(JSON.parse(answer.body)).toEqual({ detail: expect.stringMatching(/nothing was changed/) })

    // As it said: the upload is nowhere, and its bytes are gone.
    const { data, errors } = await gql(server.url, `{ upload(id: "${arriving.id}") { id status } }`)
    expect(data?.upload ?? null).toBeNull()
    expect(errors?.[0]?.extensions?.code).toBe('NOT_FOUND')
    expect((await api<{ uploads: unknown[] }>(server.url, 'GET', '/api/uploads')).body.uploads).toEqual([])
    expect((await listStorage(server.dir)).staging).toEqual([])
    // Pause and delete say it does not exist, rather than that it is still being received.
    expect((await api(server.url, 'POST', `/api/upload/${arriving.id}/pause`)).status).toBe(404)

    // Once the store takes writes again, it hears the upload is gone too.
    await rm(temp, { recursive: true })
    await waitFor(async () => {
      const state = await readState(stateDir, 'state.json').catch(() => undefined)
      return state !== undefined && state.uploads[arriving.id] === undefined
    }, 20_000)
    expect((await api<{ uploads: unknown[] }>(server.url, 'GET', '/api/uploads')).body.uploads).toEqual([])
  }, 60_000)
})

describe('a tus request the state store cannot record', () => {
  it('keeps its bytes and says so (204, the offset they reached), rather than 503 "nothing was changed"; it then goes on', async () => {
    const stateDir = await mkdtemp(join(tmpdir(), 'uploads-tus-state-'))
    cleanups.push(() => rm(stateDir, { recursive: true, force: true }))
    const server = await child({ STATE_FILE: join(stateDir, 'state.json') })
    const content = bytes(100_000)
    const created = await tusCreate(server.url, content.length, { filename: 'receipt.bin', speed: '0' })
    expect(created.status).toBe(201)
    for (const name of await readdir(stateDir))
      if (name.includes('.journal.')) await rm(join(stateDir, name), { force: true })
    const temp = join(stateDir, '.state.json.tmp')
    await mkdir(temp)

    const first = await tusPatch(created.location, 0, content.subarray(0, 40_000))
    expect(first.status).toBe(204)
    expect(first.headers.get('upload-offset')).toBe('40000')
    expect((await tusHead(created.location)).headers.get('upload-offset')).toBe('40000')

    await rm(temp, { recursive: true })
    const rest = await tusPatch(created.location, 40_000, content.subarray(40_000))
    expect(rest.status).toBe(204)
    await waitForStatus(server.url, created.id, 'completed')
    const stored = Buffer.from(
      await (await fetch(`${server.url}/api/files/${created.id}/download`)).arrayBuffer(),
    )
    expect(stored.equals(content)).toBe(true)
  })
})
