import { createHash } from 'node:crypto'
import { request } from 'node:http'
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { api, bytes, gql, restUpload, statusOf, waitFor, waitForStatus, wsClient } from './support/clients.js'
import { spawnServer } from './support/child.js'
import { openRequest } from './support/raw.js'
import { listStorage, startServer, type TestServer } from './support/server.js'
import {
  tusClientUpload,
  tusCreate,
  tusDelete,
  tusHead,
  tusMetadata,
  tusPatch,
  type Sent,
} from './support/tus.js'

/**
 * Resumable uploads over tus 1.0 at /files/, beside multipart: a dropped connection never means sending
 * the file again, and a tus upload is an upload like any other (one id, the same throttled, verified
 * transfer, the same controls).
 */
const MAX = 40 * 1024 ** 2

/** Request head of a raw PATCH at `offset` whose body is `length` bytes (it may never all be sent). */
const patchHead = (location: string, offset: number, length: number) =>
  `PATCH ${new URL(location).pathname} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n` +
  `Upload-Offset: ${offset}\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: ${length}\r\n\r\n`

/** A PATCH whose body goes out chunked (no Content-Length), `chunks` one after another; resolves with its status. */
function chunkedPatch(location: string, offset: number, chunks: Uint8Array[]): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const patch = request(
      location,
      {
        method: 'PATCH',
        headers: {
          'tus-resumable': '1.0.0',
          'upload-offset': String(offset),
          'content-type': 'application/offset+octet-stream',
        },
      },
      (answer) => {
        answer.resume()
        resolve(answer.statusCode ?? 0)
      },
    )
    patch.on('error', reject)
    for (const chunk of chunks) patch.write(chunk)
    patch.end()
  })
}
const sha = (content: Uint8Array) => createHash('sha256').update(content).digest('hex')

/** An Upload-Metadata header read back: each key and its decoded value. */
const metadataIn = (header: string | null) =>
  Object.fromEntries(
    (header ?? '')
      .split(',')
      .filter(Boolean)
      .map((pair) => {
        const [key = '', value = ''] = pair.trim().split(' ')
        return [key, Buffer.from(value, 'base64').toString()]
      }),
  )

interface Seen {
  id: string
  status: string
  source: string
  receivedSize: number
  totalSize: number
  uploadedSize: number
  targetSpeed: number
  sha256: string
  error: string | null
  expiresAt: string | null
}
const FIELDS = 'id status source receivedSize totalSize uploadedSize targetSpeed sha256 error expiresAt'

let server: TestServer
beforeAll(async () => {
  server = await startServer({ MAX_UPLOAD_SIZE: String(MAX) })
})
afterAll(() => server.stop())

const uploadOf = async (id: string) =>
  (await gql<{ upload: Seen }>(server.url, `{ upload(id: "${id}") { ${FIELDS} } }`)).data?.upload

/**
 * A raw PATCH from 0 of a `length`-byte body whose `first` bytes go out now; resolves with the request, still
 * open, once the server has counted them.
 */
async function partlySent(location: string, id: string, length: number, first: Buffer) {
  const request = openRequest(server.url, patchHead(location, 0, length))
  request.write(first)
  try {
    await waitFor(async () => ((await uploadOf(id))?.receivedSize ?? 0) >= first.length)
  } catch (error) {
    request.end()
    throw error
  }
  return request
}

describe('the tus endpoint', () => {
  it('OPTIONS announces tus 1.0.0, its extensions and Tus-Max-Size = MAX_UPLOAD_SIZE', async () => {
    const response = await fetch(`${server.url}/files/`, { method: 'OPTIONS' })
    expect(response.status).toBe(204)
    expect(response.headers.get('tus-version')).toBe('1.0.0')
    expect(response.headers.get('tus-max-size')).toBe(String(MAX))
    expect(response.headers.get('tus-extension')?.split(',').sort()).toEqual([
      'creation',
      'creation-with-upload',
      'expiration',
      'termination',
    ])
  })

  it('answers each protocol error with its status, and a refused creation stores nothing', async () => {
    const before = await listStorage(server.dir)
    // No Tus-Resumable: 412.
    const bare = await fetch(`${server.url}/files/`, { method: 'POST', headers: { 'upload-length': '10' } })
    expect(bare.status).toBe(412)
    // Over Tus-Max-Size: 413.
    expect((await tusCreate(server.url, MAX + 1)).status).toBe(413)
    // A speed that is not a whole number of bytes a second: 400, with the reason, before any byte.
    const badSpeed = await tusCreate(server.url, 10, { filename: 'a.bin', speed: '1M' })
    expect(badSpeed.status).toBe(400)
    expect(badSpeed.body).toMatch(/speed in Upload-Metadata must be a whole number.*"1M"/)
    expect(await listStorage(server.dir)).toEqual(before)
    // An unknown upload: 404.
    expect((await tusHead(`${server.url}/files/0b3a1c4e-1111-4222-8333-444455556666`)).status).toBe(404)
    // A wrong offset: 409, and nothing is written.
    const { location } = await tusCreate(server.url, 100)
    expect((await tusPatch(location, 5, bytes(10))).status).toBe(409)
    expect((await tusHead(location)).headers.get('upload-offset')).toBe('0')
    // More than the declared length: 413, nothing written.
    expect((await tusPatch(location, 0, bytes(101))).status).toBe(413)
    expect((await tusHead(location)).headers.get('upload-offset')).toBe('0')
  })

  it('a creation-with-upload refused after its upload was recorded leaves no upload behind: its sender has no Location', async () => {
    const named = async (filename: string) =>
      (
        await gql<{ uploads: { filename: string }[] }>(server.url, '{ uploads { filename } }')
      ).data?.uploads.filter((upload) => upload.filename === filename) ?? []
    const before = await listStorage(server.dir)
    // A body longer than its Upload-Length: 413, no Location.
    const longer = await fetch(`${server.url}/files/`, {
      method: 'POST',
      headers: {
        'tus-resumable': '1.0.0',
        'upload-length': '10',
        'upload-metadata': tusMetadata({ filename: 'longer.bin', speed: '0' }),
        'content-type': 'application/offset+octet-stream',
      },
      body: bytes(20),
    })
    expect(longer.status).toBe(413)
    expect(longer.headers.get('location')).toBeNull()
    expect(await named('longer.bin')).toEqual([])
    await waitFor(async () => JSON.stringify(await listStorage(server.dir)) === JSON.stringify(before))
  })

  it('a body longer than its upload sent without Content-Length: 413 once it passes the length, nothing past it kept', async () => {
    const { location, id } = await tusCreate(server.url, 100, { filename: 'long.bin', speed: '0' })
    // Chunked: no length is declared, so only the bytes themselves can tell it is too long.
    const status = await chunkedPatch(location, 0, [bytes(60), bytes(60)])
    expect(status).toBe(413)
    expect(Number((await tusHead(location)).headers.get('upload-offset'))).toBeLessThan(100)
    expect((await uploadOf(id))?.status).toBe('RECEIVING')
  })

  it('one id: the last segment of Location is the upload in GraphQL and REST, RECEIVING until its last byte', async () => {
    const content = bytes(60_000)
    const created = await tusCreate(server.url, content.length, { filename: 'résumé.pdf', speed: '30000' })
    expect(created.status).toBe(201)
    expect(created.location).toMatch(new RegExp(`^${server.url}/files/[0-9a-f-]{36}$`))
    expect(await uploadOf(created.id)).toMatchObject({
      id: created.id,
      status: 'RECEIVING',
      source: 'TUS',
      receivedSize: 0,
      totalSize: content.length,
      uploadedSize: 0,
      targetSpeed: 30_000,
      sha256: '',
    })
    const patched = await tusPatch(created.location, 0, content.subarray(0, 20_000))
    expect(patched.status).toBe(204)
    expect(patched.headers.get('upload-offset')).toBe('20000')
    expect(await uploadOf(created.id)).toMatchObject({ status: 'RECEIVING', receivedSize: 20_000 })
    // The REST contract knows five statuses: a file still arriving is in_progress, with nothing stored.
    expect((await statusOf(server.url, created.id)).body).toMatchObject({
      status: 'in_progress',
      filename: 'résumé.pdf',
      uploaded_size: 0,
      total_size: content.length,
      target_speed: 30_000,
    })
    await tusPatch(created.location, 20_000, content.subarray(20_000))
    // All in: the throttled transfer runs at the speed the metadata asked, and is paused and resumed by id.
    const running = await uploadOf(created.id)
    expect(running).toMatchObject({
      status: 'IN_PROGRESS',
      receivedSize: content.length,
      sha256: sha(content),
    })
    expect((await api(server.url, 'POST', `/api/upload/${created.id}/pause`)).status).toBe(200)
    expect((await api(server.url, 'POST', `/api/upload/${created.id}/resume?speed=0`)).status).toBe(200)
    await waitForStatus(server.url, created.id, 'completed')
    expect(sha(await readFile(join(server.dir, `${created.id}_résumé.pdf`)))).toBe(sha(content))
    // A tus client that asks again hears every byte arrived.
    expect((await tusHead(created.location)).headers.get('upload-offset')).toBe(String(content.length))
    expect((await fetch(`${server.url}/api/files/${created.id}/download`)).status).toBe(200)
  })

  it('GET of an upload’s URL is its download: the stored file with the REST download’s headers, ranges and 304; before it is stored, 404 saying so', async () => {
    const content = bytes(50_000)
    const created = await tusCreate(server.url, content.length, { filename: 'report.pdf', speed: '0' })
    const early = await fetch(created.location)
    expect(early.status).toBe(404)
    expect(await early.json()).toEqual({
      detail: expect.stringMatching(/has no complete file \(it is in_progress\)/),
    })
    await tusPatch(created.location, 0, content)
    await waitForStatus(server.url, created.id, 'completed')

    const got = await fetch(created.location)
    expect(got.status).toBe(200)
    expect(Buffer.from(await got.arrayBuffer()).equals(content)).toBe(true)
    const etag = `"${sha(content)}"`
    expect(got.headers.get('etag')).toBe(etag)
    const rest = await fetch(`${server.url}/api/files/${created.id}/download`, { method: 'HEAD' })
    for (const header of ['etag', 'content-length', 'content-type', 'content-disposition', 'accept-ranges'])
      expect(got.headers.get(header), header).toBe(rest.headers.get(header))
    const range = await fetch(created.location, { headers: { range: 'bytes=100-199' } })
    expect(range.status).toBe(206)
    expect(range.headers.get('content-range')).toBe(`bytes 100-199/${content.length}`)
    expect(Buffer.from(await range.arrayBuffer()).equals(content.subarray(100, 200))).toBe(true)
    expect((await fetch(created.location, { headers: { 'if-none-match': etag } })).status).toBe(304)
    // The tus protocol itself is unchanged: HEAD still gives the offset.
    expect((await tusHead(created.location)).headers.get('upload-offset')).toBe(String(content.length))
  })

  it('an empty file is whole at its creation, and stored', async () => {
    const created = await tusCreate(server.url, 0, { filename: 'empty.txt' })
    expect(created.status).toBe(201)
    await waitForStatus(server.url, created.id, 'completed')
    expect(await readFile(join(server.dir, `${created.id}_empty.txt`))).toEqual(Buffer.alloc(0))
  })

  it('an empty file sent with bytes-in-creation (none) is created, and stored', async () => {
    const response = await fetch(`${server.url}/files/`, {
      method: 'POST',
      headers: {
        'tus-resumable': '1.0.0',
        'upload-length': '0',
        'upload-metadata': tusMetadata({ filename: 'nothing.txt' }),
        'content-type': 'application/offset+octet-stream',
      },
      body: new Uint8Array(0),
    })
    expect(response.status).toBe(201)
    const id = response.headers.get('location')?.split('/').pop() ?? ''
    await waitForStatus(server.url, id, 'completed')
  })

  it('whole on disk but never recorded as arrived (a crash right after its last byte): asked, it goes on to be stored', async () => {
    const content = bytes(70_000)
    const { location, id } = await tusCreate(server.url, content.length, {
      filename: 'landed.bin',
      speed: '0',
    })
    // Every byte lands, and the record never hears of it.
    await writeFile(join(server.dir, '.staging', id), content)
    expect((await uploadOf(id))?.status).toBe('RECEIVING')
    // Its sender asks where to go on from: the end, so it would send nothing more.
    expect((await tusHead(location)).headers.get('upload-offset')).toBe(String(content.length))
    await waitForStatus(server.url, id, 'completed')
    expect(sha(await readFile(join(server.dir, `${id}_landed.bin`)))).toBe(sha(content))
    expect((await uploadOf(id))?.sha256).toBe(sha(content))
  })

  it('HEAD answers the Upload-Metadata the upload keeps: its filename and speed, not its owner or internal keys', async () => {
    const created = await tusCreate(server.url, 100, {
      filename: 'echoed.txt',
      filetype: 'text/plain',
      speed: '12345',
      owner: 'someone',
    })
    expect(created.status).toBe(201)
    const head = await tusHead(created.location)
    expect(head.status).toBe(200)
    const metadata = metadataIn(head.headers.get('upload-metadata'))
    expect(metadata).toMatchObject({ filename: 'echoed.txt', speed: '12345' })
    expect(Object.keys(metadata).filter((key) => !['filename', 'filetype', 'speed'].includes(key))).toEqual(
      [],
    )
  })

  it('accepts Uppy’s `name` for the file name, and bytes sent with the creation itself', async () => {
    const content = bytes(5000)
    const response = await fetch(`${server.url}/files/`, {
      method: 'POST',
      headers: {
        'tus-resumable': '1.0.0',
        'upload-length': String(content.length),
        'upload-metadata': tusMetadata({ name: 'from-uppy.txt', speed: '0' }),
        'content-type': 'application/offset+octet-stream',
      },
      body: content,
    })
    expect(response.status).toBe(201)
    expect(response.headers.get('upload-offset')).toBe(String(content.length))
    const id = response.headers.get('location')?.split('/').pop() ?? ''
    await waitForStatus(server.url, id, 'completed')
    expect(await readFile(join(server.dir, `${id}_from-uppy.txt`))).toEqual(content)
  })
})

describe('tus-js-client', () => {
  it('an upload cut off half-way resumes where it stopped, sending only the rest; the stored file is byte-identical', async () => {
    const content = bytes(8 * 1024 ** 2)
    const first: Sent[] = []
    const cut = await tusClientUpload(server.url, content, {
      chunkSize: 1024 ** 2,
      metadata: { filename: 'resumed.bin', speed: '0' },
      sent: first,
      stopWhen: (accepted) => accepted >= content.length / 2,
    })
    expect(cut.aborted).toBe(true)
    const id = cut.url.split('/').pop() ?? ''
    const reached = (await uploadOf(id))?.receivedSize ?? 0
    expect(reached).toBeGreaterThanOrEqual(content.length / 2)
    expect(reached).toBeLessThan(content.length)

    const second: Sent[] = []
    const done = await tusClientUpload(server.url, content, {
      uploadUrl: cut.url,
      chunkSize: 1024 ** 2,
      sent: second,
    })
    expect(done).toEqual({ url: cut.url, aborted: false })
    // It asked where to go on from, and sent from there: no byte before `reached` went twice.
    expect(second[0]).toEqual({ method: 'HEAD', offset: undefined })
    const patches = second.filter((request) => request.method === 'PATCH')
    expect(patches[0]?.offset).toBe(reached)
    expect(patches.every((request) => (request.offset ?? 0) >= reached)).toBe(true)
    expect(second.some((request) => request.method === 'POST')).toBe(false)

    await waitForStatus(server.url, id, 'completed')
    expect(sha(await readFile(join(server.dir, `${id}_resumed.bin`)))).toBe(sha(content))
    expect((await uploadOf(id))?.sha256).toBe(sha(content))
  })
})

describe('bytes that arrive, and requests that end', () => {
  it('a PATCH whose connection drops keeps the bytes that arrived; HEAD gives the offset to go on from', async () => {
    const content = bytes(400_000)
    const { location, id } = await tusCreate(server.url, content.length, {
      filename: 'dropped.bin',
      speed: '0',
    })
    const request = await partlySent(location, id, content.length, content.subarray(0, 150_000))
    request.end() // the connection drops mid-body
    const offset = await waitFor(async () => {
      const answer = await tusHead(location)
      const value = Number(answer.headers.get('upload-offset'))
      return value >= 150_000 ? value : undefined
    })
    expect(offset).toBe(150_000)
    expect((await uploadOf(id))?.status).toBe('RECEIVING')
    // The rest, from there: the whole file, byte for byte, with its sha256 taken across both requests.
    expect((await tusPatch(location, offset, content.subarray(offset))).status).toBe(204)
    await waitForStatus(server.url, id, 'completed')
    expect(sha(await readFile(join(server.dir, `${id}_dropped.bin`)))).toBe(sha(content))
    expect((await uploadOf(id))?.sha256).toBe(sha(content))
  })

  it('a body that passes its length while the store still prepares to write it: 413, and the server goes on', async () => {
    let own = await startServer({ MAX_UPLOAD_SIZE: String(MAX) })
    try {
      const { id } = await tusCreate(own.url, 100, { filename: 'over.bin', speed: '0' })
      expect((await tusPatch(`${own.url}/files/${id}`, 0, bytes(90))).status).toBe(204)
      // Started again, the server has no running hash of those bytes: the next request reads them back first.
      own = await own.restart()
      const location = `${own.url}/files/${id}`
      // 100 bytes where 10 are left, chunked: too long from its first chunk on.
      const status = await chunkedPatch(location, 90, [bytes(100)])
      expect(status).toBe(413)
      const after = await tusHead(location)
      expect(after.status).toBe(200)
      expect(Number(after.headers.get('upload-offset'))).toBeLessThanOrEqual(100)
    } finally {
      await own.stop()
    }
  })

  it('a PATCH whose sender stalls gives way to a newer request for its upload: what arrived is kept, and goes on from there', async () => {
    const content = bytes(300_000)
    const { location, id } = await tusCreate(server.url, content.length, {
      filename: 'stalled.bin',
      speed: '0',
    })
    const stalled = await partlySent(location, id, content.length, content.subarray(0, 100_000))
    try {
      // The connection stays open and sends nothing more. A HEAD needs the upload's lock: @tus/server asks the
      // stalled PATCH to let go, and stops it after its lock drain (3 s), well before the lock's 30 s timeout.
      const asked = await tusHead(location)
      expect(asked.status).toBe(200)
      expect(asked.headers.get('upload-offset')).toBe('100000')
      expect((await tusPatch(location, 100_000, content.subarray(100_000))).status).toBe(204)
      await waitForStatus(server.url, id, 'completed')
      expect(sha(await readFile(join(server.dir, `${id}_stalled.bin`)))).toBe(sha(content))
    } finally {
      stalled.end()
    }
  })

  it('a creation stages nothing, and a first PATCH that brings no byte leaves nothing staged: HEAD says 0 throughout', async () => {
    const content = bytes(100_000)
    const { location, id } = await tusCreate(server.url, content.length, {
      filename: 'nothing-yet.bin',
      speed: '0',
    })
    expect((await listStorage(server.dir)).staging).not.toContain(id)
    expect((await tusHead(location)).headers.get('upload-offset')).toBe('0')
    const request = openRequest(server.url, patchHead(location, 0, content.length))
    // Its first bytes would go into the file its PATCH made; the connection drops before any comes.
    await waitFor(async () => (await listStorage(server.dir)).staging.includes(id))
    request.end()
    await waitFor(async () => !(await listStorage(server.dir)).staging.includes(id))
    expect((await uploadOf(id))?.status).toBe('RECEIVING')
    expect((await tusHead(location)).headers.get('upload-offset')).toBe('0')
    expect((await tusPatch(location, 0, content)).status).toBe(204)
    await waitForStatus(server.url, id, 'completed')
    expect(sha(await readFile(join(server.dir, `${id}_nothing-yet.bin`)))).toBe(sha(content))
  })

  it('bytes it received that are gone from staging are said so (410), not taken for none having come', async () => {
    const content = bytes(100_000)
    const { location, id } = await tusCreate(server.url, content.length, { filename: 'lost.bin', speed: '0' })
    expect((await tusPatch(location, 0, content.subarray(0, 30_000))).status).toBe(204)
    expect((await uploadOf(id))?.receivedSize).toBe(30_000)
    await rm(join(server.dir, '.staging', id))
    expect((await tusHead(location)).status).toBe(410)
  })

  it('receivedSize grows live over the subscription, about ten events a second, while bytes arrive', async () => {
    const content = bytes(1_000_000)
    const { location, id } = await tusCreate(server.url, content.length, { filename: 'live.bin' })
    const request = openRequest(server.url, patchHead(location, 0, content.length))
    const client = wsClient(server.url)
    const events: { receivedSize: number; at: number }[] = []
    const watching = (async () => {
      for await (const result of client.iterate<{ uploadProgress: Seen }>({
        query: `subscription { uploadProgress(id: "${id}") { ${FIELDS} } }`,
      })) {
        const event = result.data?.uploadProgress
        if (event?.status === 'RECEIVING')
          events.push({ receivedSize: event.receivedSize, at: performance.now() })
        if (event && event.status !== 'RECEIVING') return
      }
    })()
    try {
      // 2 s of arrival: a slice every 20 ms.
      for (let at = 0; at < 500_000; at += 5000) {
        request.write(content.subarray(at, at + 5000))
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
      const moving = events.filter((event, i) => i > 0 && event.receivedSize > events[i - 1]!.receivedSize)
      const seconds = (moving.at(-1)!.at - moving[0]!.at) / 1000
      const rate = (moving.length - 1) / seconds
      expect(rate).toBeGreaterThan(7)
      expect(rate).toBeLessThan(12)
      request.write(content.subarray(500_000))
      await watching
    } finally {
      request.end()
      await client.dispose()
    }
  })

  it('termination (DELETE) cancels it: its bytes go, and the next HEAD or PATCH gets 410', async () => {
    const { location, id } = await tusCreate(server.url, 100_000, { filename: 'ended.bin' })
    await tusPatch(location, 0, bytes(30_000))
    expect((await tusDelete(location)).status).toBe(204)
    expect(await uploadOf(id)).toMatchObject({ status: 'CANCELED' })
    expect((await tusHead(location)).status).toBe(410)
    expect((await tusPatch(location, 30_000, bytes(10))).status).toBe(410)
    expect((await listStorage(server.dir)).staging).not.toContain(id)
  })

  it('termination of an upload already gone is 410, and of a multipart upload’s id 404 as HEAD says, leaving it running', async () => {
    const { location } = await tusCreate(server.url, 100_000, { filename: 'twice.bin' })
    expect((await tusDelete(location)).status).toBe(204)
    expect((await tusDelete(location)).status).toBe(410)
    const multipart = await restUpload(server.url, bytes(200_000), { filename: 'not-tus.bin', speed: 20_000 })
    expect(multipart.status).toBe(200)
    const id = multipart.body.upload_id
    expect((await tusHead(`${server.url}/files/${id}`)).status).toBe(404)
    expect((await tusDelete(`${server.url}/files/${id}`)).status).toBe(404)
    expect((await statusOf(server.url, id)).body.status).toBe('in_progress')
    expect((await api(server.url, 'POST', `/api/upload/${id}/cancel`)).status).toBe(200)
  })

  it('canceled while it arrives: the PATCH in flight is refused, the sender’s next request gets 410, nothing is left', async () => {
    const { location, id } = await tusCreate(server.url, 4_000_000, { filename: 'stopped.bin' })
    const request = await partlySent(location, id, 4_000_000, bytes(100_000))
    // The sender pauses and resumes it, not anyone else.
    for (const mutation of [`pauseUpload(id: "${id}")`, `resumeUpload(id: "${id}")`]) {
      const refused = await gql(server.url, `mutation { ${mutation} { id } }`)
      expect(refused.errors?.[0]).toMatchObject({
        message: expect.stringMatching(/still being received.*sender/),
        extensions: { code: 'INVALID_STATE' },
      })
    }
    const canceled = await gql<{ cancelUpload: Seen }>(
      server.url,
      `mutation { cancelUpload(id: "${id}") { ${FIELDS} } }`,
    )
    expect(canceled.data?.cancelUpload.status).toBe('CANCELED')
    const answer = await request.answer
    request.end()
    expect(answer.status).toBe(410)
    expect((await tusHead(location)).status).toBe(410)
    await waitFor(async () => !(await listStorage(server.dir)).staging.includes(id))
  })
})

describe('expiry', () => {
  let short: TestServer
  beforeAll(async () => {
    short = await startServer({ RESUMABLE_EXPIRY: '1s' })
  })
  afterAll(() => short.stop())

  it('an upload that receives nothing for RESUMABLE_EXPIRY is removed by the server itself: FAILED, with the reason', async () => {
    const created = await tusCreate(short.url, 100_000, { filename: 'late.bin' })
    const announced = Date.parse(created.headers.get('upload-expires') ?? '')
    expect(announced).toBeGreaterThan(Date.now())
    expect(announced).toBeLessThan(Date.now() + 2000)
    // A byte arriving puts it off: Upload-Expires moves on.
    await new Promise((resolve) => setTimeout(resolve, 600))
    const patched = await tusPatch(created.location, 0, bytes(10_000))
    expect(Date.parse(patched.headers.get('upload-expires') ?? '')).toBeGreaterThanOrEqual(announced)
    // HEAD says what the record says: RESUMABLE_EXPIRY after the last byte, which the PATCH's answer (worked
    // out as the PATCH began) may put a second earlier when the PATCH crossed a second.
    const head = await tusHead(created.location)
    const said = Date.parse(patched.headers.get('upload-expires') ?? '')
    expect(Date.parse(head.headers.get('upload-expires') ?? '') - said).toBeOneOf([0, 1000])
    const failed = await waitFor(async () => {
      const upload = (await gql<{ upload: Seen }>(short.url, `{ upload(id: "${created.id}") { ${FIELDS} } }`))
        .data?.upload
      return upload?.status === 'FAILED' ? upload : undefined
    }, 5000)
    expect(failed.error).toMatch(/Expired: no byte arrived for 1 s \(RESUMABLE_EXPIRY\)/)
    expect((await tusHead(created.location)).status).toBe(410)
    expect((await listStorage(short.dir)).staging).not.toContain(created.id)
  })
})

describe('with API_TOKEN', () => {
  const TOKEN = 'tus-token-0123456789'
  let guarded: TestServer
  beforeAll(async () => {
    guarded = await startServer({ API_TOKEN: TOKEN })
  })
  afterAll(() => guarded.stop())

  it('every tus method needs the token', async () => {
    const auth = { authorization: `Bearer ${TOKEN}` }
    const created = await tusCreate(guarded.url, 10, { filename: 'a.bin' }, auth)
    expect(created.status).toBe(201)
    const location = created.location
    expect((await fetch(`${guarded.url}/files/`, { method: 'OPTIONS' })).status).toBe(401)
    expect((await tusCreate(guarded.url, 10)).status).toBe(401)
    expect((await tusHead(location)).status).toBe(401)
    expect((await tusPatch(location, 0, bytes(10))).status).toBe(401)
    expect((await tusDelete(location)).status).toBe(401)
    expect((await tusHead(location, auth)).headers.get('upload-offset')).toBe('0')
    expect((await tusPatch(location, 0, bytes(10), auth)).status).toBe(204)
  })
})

describe('from a browser page on an allowed origin', () => {
  let open: TestServer
  beforeAll(async () => {
    open = await startServer({ CORS_ORIGINS: 'http://app.example' })
  })
  afterAll(() => open.stop())

  it('may read Location, Upload-Offset, Upload-Length, Upload-Expires and Tus-* headers; other origins get 403', async () => {
    const created = await tusCreate(open.url, 10, { filename: 'a.bin' }, { origin: 'http://app.example' })
    expect(created.headers.get('access-control-allow-origin')).toBe('http://app.example')
    const exposed = (created.headers.get('access-control-expose-headers') ?? '').toLowerCase().split(/,\s*/)
    for (const header of [
      'location',
      'upload-offset',
      'upload-length',
      'upload-expires',
      'tus-resumable',
      'tus-version',
    ])
      expect(exposed).toContain(header)
    expect((await tusCreate(open.url, 10, {}, { origin: 'http://evil.example' })).status).toBe(403)
  })

  it('passes the browser’s preflight for tus’s own request headers', async () => {
    const preflight = await fetch(`${open.url}/files/`, {
      method: 'OPTIONS',
      headers: {
        origin: 'http://app.example',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'tus-resumable,upload-length,upload-metadata,upload-offset',
      },
    })
    expect(preflight.status).toBe(204)
    expect(preflight.headers.get('access-control-allow-origin')).toBe('http://app.example')
    const allowed = (preflight.headers.get('access-control-allow-headers') ?? '').toLowerCase().split(/,\s*/)
    for (const header of ['tus-resumable', 'upload-length', 'upload-metadata', 'upload-offset'])
      expect(allowed).toContain(header)
    expect(preflight.headers.get('access-control-allow-methods')).toMatch(/PATCH/)
  })
})

describe('a server restart mid-upload', () => {
  it('the next PATCH re-reads the prefix on disk before its body, and the idle timeout does not cut it off meanwhile', async () => {
    const size = 2 * 1024 ** 3 + 1024
    const env = { MAX_UPLOAD_SIZE: String(4 * 1024 ** 3) }
    const first = await startServer(env)
    const { location, id } = await tusCreate(first.url, size, { filename: 'prefix.bin', speed: '0' })
    expect((await tusPatch(location, 0, bytes(1024))).status).toBe(204)
    await first.app.close()
    // As if 2 GiB had arrived before the restart (a sparse file: its re-read is the sha256 of 2 GiB, about a
    // second here), against an idle timeout of 300 ms.
    await truncate(join(first.dir, '.staging', id), 2 * 1024 ** 3)
    const next = await startServer({ ...env, BODY_IDLE_TIMEOUT_MS: '300' }, first.dir)
    try {
      const moved = `${next.url}/files/${id}`
      expect((await tusHead(moved)).headers.get('upload-offset')).toBe(String(2 * 1024 ** 3))
      const rest = await tusPatch(moved, 2 * 1024 ** 3, bytes(1024))
      expect(rest.status).toBe(204)
      expect(rest.headers.get('upload-offset')).toBe(String(size))
    } finally {
      await next.stop()
    }
  }, 60_000)

  it('bytes it received that are gone from staging by the next start: FAILED with the reason, and 410 for its sender', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'uploads-tus-lost-'))
    let child = await spawnServer(dir)
    try {
      const content = bytes(100_000)
      const { location, id } = await tusCreate(child.url, content.length, {
        filename: 'lost.bin',
        speed: '0',
      })
      expect((await tusPatch(location, 0, content.subarray(0, 30_000))).status).toBe(204)
      child.child.kill('SIGKILL')
      await child.exited
      await rm(join(dir, '.staging', id))
      child = await spawnServer(dir)
      expect((await tusHead(`${child.url}/files/${id}`)).status).toBe(410)
      const { data } = await gql<{ upload: Seen }>(child.url, `{ upload(id: "${id}") { ${FIELDS} } }`)
      expect(data?.upload).toMatchObject({ status: 'FAILED', error: expect.stringMatching(/gone/) })
    } finally {
      child.child.kill('SIGKILL')
      await child.exited
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('loses none of what arrived: tus-js-client goes on from the offset on disk, and the file is byte-identical', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'uploads-tus-restart-'))
    let child = await spawnServer(dir)
    try {
      const content = bytes(6 * 1024 ** 2)
      const cut = await tusClientUpload(child.url, content, {
        chunkSize: 1024 ** 2,
        metadata: { filename: 'across.bin', speed: '0' },
        stopWhen: (accepted) => accepted >= 3 * 1024 ** 2,
      })
      const id = cut.url.split('/').pop() ?? ''
      child.child.kill('SIGKILL')
      await child.exited
      child = await spawnServer(dir)
      const moved = `${child.url}/files/${id}`
      const offset = Number((await tusHead(moved)).headers.get('upload-offset'))
      expect(offset).toBeGreaterThanOrEqual(3 * 1024 ** 2)
      const sent: Sent[] = []
      await tusClientUpload(child.url, content, { uploadUrl: moved, chunkSize: 1024 ** 2, sent })
      expect(sent.filter((request) => request.method === 'PATCH')[0]?.offset).toBe(offset)
      await waitForStatus(child.url, id, 'completed')
      expect(sha(await readFile(join(dir, `${id}_across.bin`)))).toBe(sha(content))
    } finally {
      child.child.kill('SIGKILL')
      await child.exited
      await rm(dir, { recursive: true, force: true })
    }
  })
})
