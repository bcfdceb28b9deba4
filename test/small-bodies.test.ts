import { createHash } from 'node:crypto'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  bytes,
  gql,
  gqlUpload,
  receivingUpload,
  restUpload,
  statusOf,
  waitFor,
  waitForStatus,
  wsClient,
} from './support/clients.js'
import { openRequest } from './support/raw.js'
import { tusCreate, tusDelete, tusHead, tusMetadata, tusPatch } from './support/tus.js'
import { listStorage, startServer, type TestServer } from './support/server.js'

/**
 * A file part that ends within 64 KiB is held in memory as it arrives. Nothing pacing it, it is stored from
 * there at once and its request answers COMPLETED; anything else about it (a speed, a cap, a longer body) goes
 * the usual way, staged and transferred, and answers IN_PROGRESS. Either way the bytes stored are the bytes sent.
 */

const SMALL = 64 * 1024
const UPLOAD = `mutation ($file: File!, $speed: SafeInt) {
  uploadFile(file: $file, speed: $speed) { id status totalSize uploadedSize sha256 storedName }
}`

interface Answer {
  id: string
  status: string
  totalSize: number
  uploadedSize: number
  sha256: string
  storedName: string
}

const sha256 = (content: Buffer) => createHash('sha256').update(content).digest('hex')

async function send(server: TestServer, content: Buffer<ArrayBuffer>, speed: number): Promise<Answer> {
  const { status, body } = await gqlUpload<{ uploadFile: Answer }>(server.url, UPLOAD, { speed }, content)
  expect(status).toBe(200)
  expect(body.errors).toBeUndefined()
  return body.data!.uploadFile
}

/** Waits until nothing is staged or being transferred, then says what is stored. */
async function settled(server: TestServer) {
  return waitFor(async () => {
    const listed = await listStorage(server.dir)
    return listed.staging.length === 0 && listed.transfers.length === 0 && listed
  })
}

describe('a small body that nothing paces', () => {
  let server: TestServer
  beforeAll(async () => {
    server = await startServer()
  })
  afterAll(() => server.stop())

  it.each([0, 1, 16, SMALL - 1, SMALL])(
    'of %i bytes is stored whole from memory: the answer says COMPLETED, with its bytes in place',
    async (size) => {
      const content = bytes(size)
      const answer = await send(server, content, 0)
      expect(answer).toMatchObject({
        status: 'COMPLETED',
        totalSize: size,
        uploadedSize: size,
        sha256: sha256(content),
      })
      // In place as the answer came: nothing staged, nothing in transfer, the stored file byte for byte.
      expect(await listStorage(server.dir)).toMatchObject({ staging: [], transfers: [] })
      expect((await readFile(join(server.dir, answer.storedName))).equals(content)).toBe(true)
    },
  )

  it('its watchers hear the one change of state it makes on record: from RECEIVING to COMPLETED', async () => {
    const client = wsClient(server.url)
    const seen: { id: string; status: string }[] = []
    const events = client.iterate<{ uploadProgress: { id: string; status: string } }>({
      query: 'subscription { uploadProgress { id status } }',
    })
    const following = (async () => {
      for await (const event of events) if (event.data) seen.push(event.data.uploadProgress)
    })()
    try {
      // Sent until one is heard: the subscription is live from then on.
      await waitFor(async () => (await send(server, bytes(16), 0)) && seen.length > 0)
      const { id } = await send(server, bytes(16), 0)
      await waitFor(() => seen.some((event) => event.id === id && event.status === 'COMPLETED'))
      expect(seen.filter((event) => event.id === id).map((event) => event.status)).toEqual([
        'RECEIVING',
        'COMPLETED',
      ])
    } finally {
      await events.return?.()
      await following
      await client.dispose()
    }
  })
  it('over REST too: the answer keeps its contract (`started`), and the file is in place as it comes', async () => {
    const content = bytes(16)
    const { status, body } = await restUpload(server.url, content, { filename: 'tiny.txt', speed: 0 })
    expect(status).toBe(200)
    expect(body).toMatchObject({ status: 'started', total_size: 16, speed: 0 })
    expect(await readFile(join(server.dir, `${body.upload_id}_tiny.txt`))).toEqual(content)
    expect(await listStorage(server.dir)).toMatchObject({ staging: [], transfers: [] })
  })

  it.each([SMALL + 1, 5 * SMALL + 7, 2 * 1024 * 1024 + 3])(
    'of %i bytes (longer) is staged as it arrives, beginning with what was read first, and stored byte for byte',
    async (size) => {
      const content = bytes(size)
      const answer = await send(server, content, 0)
      expect(answer).toMatchObject({ status: 'IN_PROGRESS', totalSize: size, sha256: sha256(content) })
      await settled(server)
      expect((await readFile(join(server.dir, answer.storedName))).equals(content)).toBe(true)
    },
  )

  it('with a speed of its own is staged and paced as any upload: the answer says IN_PROGRESS', async () => {
    const content = bytes(4096)
    const answer = await send(server, content, 2048)
    expect(answer).toMatchObject({ status: 'IN_PROGRESS', totalSize: 4096, sha256: sha256(content) })
    expect((await listStorage(server.dir)).staging).toContain(answer.id)
    await settled(server)
    expect((await readFile(join(server.dir, answer.storedName))).equals(content)).toBe(true)
  })
})

describe('under a server-wide cap (MAX_TOTAL_SPEED)', () => {
  let server: TestServer
  beforeAll(async () => {
    server = await startServer({ MAX_TOTAL_SPEED: String(1024 * 1024) })
  })
  afterAll(() => server.stop())

  it('a small body is staged and transferred under the cap, not stored at once', async () => {
    const content = bytes(1000)
    const answer = await send(server, content, 0)
    expect(answer.status).toBe('IN_PROGRESS')
    await settled(server)
    expect((await readFile(join(server.dir, answer.storedName))).equals(content)).toBe(true)
  })
})

describe('over tus, a whole small file in its creation (creation-with-upload)', () => {
  let server: TestServer
  beforeAll(async () => {
    server = await startServer()
  })
  afterAll(() => server.stop())

  const creation = (length: number, speed: number, filename: string) =>
    `POST /files/ HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\nUpload-Length: ${length}\r\n` +
    `Upload-Metadata: ${tusMetadata({ filename, speed: String(speed) })}\r\n` +
    `Content-Type: application/offset+octet-stream\r\nContent-Length: ${length}\r\n\r\n`

  it('is stored from memory at once: in place and COMPLETED as the 201 comes, nothing staged', async () => {
    const content = bytes(5000)
    const request = openRequest(server.url, creation(content.length, 0, 'whole.bin'))
    request.write(content.subarray(0, 4999))
    // All but its last byte in, and none of it on disk: held in memory (no staged file is made for it).
    const arriving = await receivingUpload(server.url, 4999, 'whole.bin')
    await expect(stat(join(server.dir, '.staging', arriving))).rejects.toMatchObject({ code: 'ENOENT' })
    request.write(content.subarray(4999))
    const answer = await request.answer
    request.end()
    expect(answer.status).toBe(201)
    expect(answer.headers).toMatch(/\r\nupload-offset: 5000\r\n/i)
    const id = /\r\nlocation: \S+\/files\/(\S+)\r\n/i.exec(answer.headers + '\r\n')?.[1] ?? ''
    expect(id).toBe(arriving)
    expect((await statusOf(server.url, id)).body.status).toBe('completed')
    expect(await readFile(join(server.dir, `${id}_whole.bin`))).toEqual(content)
    expect(await listStorage(server.dir)).toMatchObject({ staging: [], transfers: [] })
  })

  it('given a speed while it arrives, is staged after all and transferred: stored byte for byte', async () => {
    const content = bytes(5000)
    const request = openRequest(server.url, creation(content.length, 0, 'slowed.bin'))
    request.write(content.subarray(0, 4999))
    const id = await receivingUpload(server.url, 4999, 'slowed.bin')
    const { data } = await gql<{ setSpeed: { targetSpeed: number } }>(
      server.url,
      'mutation ($id: ID!) { setSpeed(id: $id, speed: 1048576) { targetSpeed } }',
      { id },
    )
    expect(data?.setSpeed.targetSpeed).toBe(1048576)
    request.write(content.subarray(4999))
    expect((await request.answer).status).toBe(201)
    request.end()
    await waitForStatus(server.url, id, 'completed')
    expect(await readFile(join(server.dir, `${id}_slowed.bin`))).toEqual(content)
  })

  it('a file a crash left in place before its record said it arrived goes when the upload is terminated', async () => {
    const created = await tusCreate(server.url, 16, { filename: 'left.bin', speed: '0' })
    // What a kill between Storage.storeWhole and the record's next write leaves: the file in place.
    const stored = join(server.dir, `${created.id}_left.bin`)
    await writeFile(stored, bytes(16))
    expect((await tusDelete(created.location)).status).toBe(204)
    await expect(stat(stored)).rejects.toMatchObject({ code: 'ENOENT' })
  })

  it('cut short, keeps what came in staging (HEAD says so); the rest sent by PATCH completes it byte for byte', async () => {
    const content = bytes(5000)
    const request = openRequest(server.url, creation(content.length, 0, 'cut.bin'))
    request.write(content.subarray(0, 2000))
    const id = await receivingUpload(server.url, 2000, 'cut.bin')
    request.end()
    const location = `${server.url}/files/${id}`
    await waitFor(async () => (await tusHead(location)).headers.get('upload-offset') === '2000')
    expect((await tusPatch(location, 2000, content.subarray(2000))).status).toBe(204)
    await waitForStatus(server.url, id, 'completed')
    expect(await readFile(join(server.dir, `${id}_cut.bin`))).toEqual(content)
  })
})
