import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { api, bytes, gql, waitFor, waitForStatus, wsClient } from './support/clients.js'
import { multipartHead, openRequest, partHead } from './support/raw.js'
import { listStorage, startServer, type TestServer } from './support/server.js'

/**
 * An upload exists from its first byte, not from its last: a 4 GiB file that takes an hour to arrive is listed,
 * followed and cancelable all that hour, as RECEIVING, with its receivedSize growing.
 */
const DECLARED = 64 * 1024 ** 2
const FIELDS =
  'id status source receivedSize totalSize uploadedSize currentSpeed targetSpeed sha256 error removed createdAt receivedAt completedAt'

interface Seen {
  id: string
  status: string
  source: string
  receivedSize: number
  totalSize: number
  uploadedSize: number
  currentSpeed: number
  targetSpeed: number
  sha256: string
  error: string | null
  removed: boolean
  createdAt: string
  receivedAt: string | null
  completedAt: string | null
}

let server: TestServer
beforeAll(async () => {
  server = await startServer()
})
afterAll(() => server.stop())

const receiving = async () =>
  (await gql<{ uploads: Seen[] }>(server.url, `{ uploads(status: [RECEIVING]) { ${FIELDS} } }`)).data
    ?.uploads ?? []

/** A REST upload whose body is DECLARED bytes long, of which only the part head and `first` bytes are sent. */
function startSending(first: number, path = '/api/upload?speed=0') {
  const request = openRequest(server.url, multipartHead(path, DECLARED))
  request.write(partHead('file', 'arriving.bin'))
  request.write(bytes(first))
  return request
}

const known = new Set<string>()

/** The upload `id` (or else a new one, no earlier test's) once `size` bytes of it have arrived. */
async function arrivedAtLeast(size: number, id?: string): Promise<Seen> {
  const found = await waitFor(async () =>
    (await receiving()).find(
      (upload) =>
        (id === undefined ? !known.has(upload.id) : upload.id === id) && upload.receivedSize >= size,
    ),
  )
  known.add(found.id)
  return found
}

describe('a file that is still arriving', () => {
  it('is listed as RECEIVING from its first bytes, its receivedSize growing, then runs once it is in', async () => {
    const request = startSending(256 * 1024)
    const early = await arrivedAtLeast(256 * 1024)
    expect(early).toMatchObject({
      status: 'RECEIVING',
      source: 'MULTIPART',
      totalSize: 0,
      uploadedSize: 0,
      sha256: '',
      error: null,
      receivedAt: null,
    })
    request.write(bytes(512 * 1024))
    const later = await arrivedAtLeast(768 * 1024, early.id)
    expect(later.receivedSize).toBeGreaterThan(early.receivedSize)
    const counts = await gql<{ uploadCounts: { receiving: number } }>(
      server.url,
      '{ uploadCounts { receiving } }',
    )
    expect(counts.data?.uploadCounts.receiving).toBe(1)
    // The REST contract has no such state: there it is in_progress, as the old service said of it.
    const listed = await api<{ uploads: { upload_id: string; status: string }[] }>(
      server.url,
      'GET',
      '/api/uploads',
    )
    expect(listed.body.uploads.find((upload) => upload.upload_id === early.id)?.status).toBe('in_progress')

    // The rest of the declared body, and the closing boundary.
    const tail =
      DECLARED - 768 * 1024 - partHead('file', 'arriving.bin').length - '\r\n--b0undary--\r\n'.length
    request.write(bytes(tail))
    request.write('\r\n--b0undary--\r\n')
    const answer = await request.answer
    request.end()
    expect(answer.status).toBe(200)
    const body = JSON.parse(answer.body) as { upload_id: string }
    expect(body.upload_id).toBe(early.id)
    await waitForStatus(server.url, early.id, 'completed')
    const done = await gql<{ upload: Seen }>(server.url, `{ upload(id: "${early.id}") { ${FIELDS} } }`)
    expect(done.data?.upload).toMatchObject({
      status: 'COMPLETED',
      receivedSize: tail + 768 * 1024,
      totalSize: tail + 768 * 1024,
      uploadedSize: tail + 768 * 1024,
      sha256: expect.stringMatching(/^[0-9a-f]{64}$/),
    })
    // Created as its first bytes came, received with its last, completed once stored: in that order.
    const { createdAt, receivedAt, completedAt } = done.data!.upload
    expect(Date.parse(receivedAt!)).toBeGreaterThan(Date.parse(createdAt))
    expect(Date.parse(completedAt!)).toBeGreaterThanOrEqual(Date.parse(receivedAt!))
  })

  it('cannot be paused or resumed (its sender does that), but takes a new speed for when it runs', async () => {
    const request = startSending(64 * 1024)
    const { id } = await arrivedAtLeast(64 * 1024)
    for (const mutation of [`pauseUpload(id: "${id}")`, `resumeUpload(id: "${id}")`]) {
      const answer = await gql(server.url, `mutation { ${mutation} { id } }`)
      expect(answer.errors?.[0]).toMatchObject({
        message: expect.stringMatching(/still being received.*sender/),
        extensions: { code: 'INVALID_STATE' },
      })
    }
    // The REST contract answers a state it cannot act on with 400.
    const rest = await api(server.url, 'POST', `/api/upload/${id}/pause`)
    expect(rest.status).toBe(400)
    expect(rest.body).toEqual({ detail: expect.stringMatching(/still being received/) })

    const sped = await gql<{ setSpeed: Seen }>(
      server.url,
      `mutation { setSpeed(id: "${id}", speed: 4096) { ${FIELDS} } }`,
    )
    expect(sped.data?.setSpeed).toMatchObject({ status: 'RECEIVING', targetSpeed: 4096 })
    request.end()
    await waitFor(async () => !(await receiving()).some((upload) => upload.id === id))
  })

  it('canceled: its request is refused at once, no more of it is read, and nothing is left behind', async () => {
    const request = startSending(128 * 1024)
    const { id } = await arrivedAtLeast(128 * 1024)
    const canceled = await gql<{ cancelUpload: Seen }>(
      server.url,
      `mutation { cancelUpload(id: "${id}") { ${FIELDS} } }`,
    )
    expect(canceled.data?.cancelUpload).toMatchObject({ id, status: 'CANCELED' })
    expect(canceled.data?.cancelUpload.receivedSize).toBeGreaterThanOrEqual(128 * 1024)
    // The sender hears it while it still has most of the file to send.
    const answer = await request.answer
    request.end()
    expect(answer.status).toBe(400)
    expect(JSON.parse(answer.body)).toEqual({ detail: expect.stringMatching(/canceled while it arrived/) })
    await waitFor(async () => (await listStorage(server.dir)).staging.length === 0)
    expect((await listStorage(server.dir)).stored.filter((name) => name.startsWith(id))).toEqual([])
    const status = await api<{ status: string }>(server.url, 'GET', `/api/upload/${id}/status`)
    expect(status.body.status).toBe('canceled')
    // Its record (canceled before its sha256 was known) reads back at the next start.
    server = await server.restart()
    expect((await api<{ status: string }>(server.url, 'GET', `/api/upload/${id}/status`)).body.status).toBe(
      'canceled',
    )
  })

  it('canceled while it arrives over GraphQL multipart: the mutation answers INVALID_STATE', async () => {
    const operations = JSON.stringify({
      query: 'mutation ($file: File!) { uploadFile(file: $file, speed: 0) { id } }',
      variables: { file: null },
    })
    const request = openRequest(server.url, multipartHead('/graphql', DECLARED))
    request.write(`${partHead('operations')}${operations}\r\n${partHead('map')}{"0":["variables.file"]}\r\n`)
    request.write(partHead('0', 'arriving.bin'))
    request.write(bytes(64 * 1024))
    const { id } = await arrivedAtLeast(64 * 1024)
    await gql(server.url, `mutation { cancelUpload(id: "${id}") { id } }`)
    const answer = await request.answer
    request.end()
    const body = JSON.parse(answer.body) as { errors: { message: string; extensions: { code: string } }[] }
    expect(body.errors[0]).toMatchObject({
      message: expect.stringMatching(/canceled while it arrived/),
      extensions: { code: 'INVALID_STATE' },
    })
    await waitFor(async () => (await listStorage(server.dir)).staging.length === 0)
  })

  it('abandoned by its sender: watchers hear it FAILED with the reason, then it is gone from the lists', async () => {
    const client = wsClient(server.url)
    const events: Seen[] = []
    const watching = (async () => {
      for await (const result of client.iterate<{ uploadProgress: Seen }>({
        query: `subscription { uploadProgress { ${FIELDS} } }`,
      })) {
        const event = result.data?.uploadProgress
        if (!event) continue
        events.push(event)
        if (event.status === 'FAILED') return event
      }
      return undefined
    })()
    try {
      const request = startSending(96 * 1024)
      const { id } = await arrivedAtLeast(96 * 1024)
      await waitFor(() => events.some((event) => event.id === id && event.status === 'RECEIVING'))
      request.end()
      const failed = await watching
      // Its last word: failed, why, and that it has left the record.
      expect(failed).toMatchObject({
        id,
        status: 'FAILED',
        error: expect.stringMatching(/.+/),
        removed: true,
      })
      expect(failed?.receivedSize).toBeGreaterThanOrEqual(96 * 1024)
      const status = await api(server.url, 'GET', `/api/upload/${id}/status`)
      expect(status.status).toBe(404)
      const all = await gql<{ uploads: Seen[] }>(server.url, '{ uploads { id } }')
      expect(all.data?.uploads.map((upload) => upload.id)).not.toContain(id)
      await waitFor(async () => (await listStorage(server.dir)).staging.length === 0)
    } finally {
      await client.dispose()
    }
  })
})
