import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  api,
  bytes,
  gql,
  multipart,
  rawRequest,
  restUpload,
  statusOf,
  waitFor,
  waitForStatus,
} from './support/clients.js'
import { multipartHead, openRequest, partHead } from './support/raw.js'
import { listStorage, startServer, type TestServer } from './support/server.js'

/** Errors on /api are for curl users: they name the REST parameter and what it takes, never GraphQL's terms. */
const GRAPHQL_WORDS = /\$|Variable|SafeInt|File!|ID!|non-null|GraphQL/

let server: TestServer
beforeAll(async () => {
  server = await startServer()
})
afterAll(() => server.stop())

const send = (parts: Parameters<typeof multipart>[0], query = '') => {
  const { body, contentType } = multipart(parts)
  return rawRequest(server.url, `/api/upload${query}`, { headers: { 'content-type': contentType }, body })
}

describe('bad speeds, in the words of the REST contract', () => {
  it.each(['1M', '1.5', 'abc', '1e6', '', '-3', '99999999999999999999'])('?speed=%j', async (speed) => {
    const { status, body } = await restUpload(server.url, bytes(10), { speed })
    expect(status).toBe(422)
    expect(body).toEqual({ detail: expect.stringMatching(/^speed must be (a whole number|at most)/) })
    expect(JSON.stringify(body)).not.toMatch(GRAPHQL_WORDS)
  })

  it('resume with a bad speed says the same, and the upload stays paused', async () => {
    const { body } = await restUpload(server.url, bytes(50_000), { speed: 1000 })
    await api(server.url, 'POST', `/api/upload/${body.upload_id}/pause`)
    const answer = await api(server.url, 'POST', `/api/upload/${body.upload_id}/resume?speed=2M`)
    expect(answer).toEqual({
      status: 422,
      body: { detail: expect.stringMatching(/^speed must be a whole number/) },
    })
    expect((await statusOf(server.url, body.upload_id)).body.status).toBe('paused')
  })
})

describe('a speed form field', () => {
  it('is honoured when the query has none, before the file part or after it', async () => {
    for (const parts of [
      [
        { name: 'speed', content: '2048' },
        { name: 'file', filename: 'a.bin', content: bytes(100) },
      ],
      [
        { name: 'file', filename: 'b.bin', content: bytes(100) },
        { name: 'speed', content: '2048' },
      ],
    ]) {
      const { status, body } = await send(parts)
      expect(status).toBe(200)
      expect(body.speed).toBe(2048)
      expect((await statusOf(server.url, String(body.upload_id))).body.target_speed).toBe(2048)
    }
  })

  it('that agrees with the query is fine; one that disagrees → 422 naming both', async () => {
    const same = await send(
      [
        { name: 'speed', content: '4096' },
        { name: 'file', filename: 'a.bin', content: 'x' },
      ],
      '?speed=4096',
    )
    expect(same.status).toBe(200)
    const differ = await send(
      [
        { name: 'speed', content: '1024' },
        { name: 'file', filename: 'a.bin', content: 'x' },
      ],
      '?speed=4096',
    )
    expect(differ).toEqual({
      status: 422,
      body: { detail: expect.stringMatching(/\?speed=4096.*speed=1024/) },
    })
  })

  it.each([
    ['disagrees with the query', 'speed=1024', '?speed=4096', /\?speed=4096.*speed=1024/],
    ['is not a number', 'speed=fast', '', /^the speed field must be a whole number/],
  ])(
    'after the file part, that %s → 422, and the upload its file began is undone',
    async (_, field, query, detail) => {
      const [name, value] = field.split('=') as [string, string]
      const stagedBefore = (await listStorage(server.dir)).staging
      const file = bytes(50_000)
      const between = `\r\n${partHead(name)}`
      const tail = `${value}\r\n--b0undary--\r\n`
      const length = partHead('file', 'late.bin').length + file.length + between.length + tail.length
      const request = openRequest(server.url, multipartHead(`/api/upload${query}`, length))
      request.write(partHead('file', 'late.bin'))
      request.write(file)
      request.write(between)
      // Every byte of the file has arrived (the next part began), its upload on record, before the field
      // that spoils the request arrives.
      const listed = () =>
        api<{ uploads: { upload_id: string; filename: string }[] }>(server.url, 'GET', '/api/uploads').then(
          ({ body }) => body.uploads.filter((upload) => upload.filename === 'late.bin'),
        )
      await waitFor(async () => {
        const { data } = await gql<{ uploads: { filename: string; receivedSize: number }[] }>(
          server.url,
          '{ uploads { filename receivedSize } }',
        )
        return data?.uploads.some(
          (upload) => upload.filename === 'late.bin' && upload.receivedSize === file.length,
        )
      })
      request.write(tail)
      const answer = await request.answer
      request.end()
      expect(answer.status).toBe(422)
      expect(JSON.parse(answer.body)).toEqual({ detail: expect.stringMatching(detail) })
      // Nothing of it stays: not on record, not on disk.
      expect(await listed()).toEqual([])
      const { stored, staging } = await listStorage(server.dir)
      expect(stored.filter((stored) => stored.includes('late.bin'))).toEqual([])
      // (Earlier tests' uploads may finish meanwhile and take their staging copies with them.)
      expect(staging.filter((staged) => !stagedBefore.includes(staged))).toEqual([])
    },
  )

  it('that is not a number → 422 in REST words', async () => {
    const { status, body } = await send([
      { name: 'speed', content: 'fast' },
      { name: 'file', filename: 'a.bin', content: 'x' },
    ])
    expect(status).toBe(422)
    expect(body.detail).toMatch(/^the speed field must be a whole number/)
  })
})

describe('a missing file part', () => {
  it.each([
    [
      'the file under another name (-F upload=@…)',
      [{ name: 'upload', filename: 'a.bin', content: 'x' }],
      /"upload" \(a file\)/,
    ],
    [
      'text instead of a file (-F "file=<x")',
      [{ name: 'file', content: 'x' }],
      /"file" \(a text field, not a file\)/,
    ],
    ['nothing at all', [] as Parameters<typeof multipart>[0], /Parts received: none/],
  ])('%s → 422 saying so and naming the parts that came', async (_, parts, named) => {
    const { status, body } = await send(parts)
    expect(status).toBe(422)
    expect(body.detail).toMatch(
      /has no "file" part holding a file; send it as curl -F "file=@path\/to\/file"/,
    )
    expect(body.detail).toMatch(named)
    expect(JSON.stringify(body)).not.toMatch(GRAPHQL_WORDS)
  })

  it('a raw body (--data-binary @file) → 422 saying how to send it', async () => {
    const answer = await rawRequest(server.url, '/api/upload', {
      headers: { 'content-type': 'application/octet-stream' },
      body: Buffer.from('raw bytes'),
    })
    expect(answer).toEqual({
      status: 422,
      body: {
        detail: expect.stringMatching(/multipart\/form-data body: send the file with curl -F "file=@/),
      },
    })
  })
})

describe('other REST errors never speak GraphQL either', () => {
  it.each([
    ['POST', '/api/upload/nope/pause'],
    ['POST', '/api/upload/nope/resume?speed=5'],
    ['GET', '/api/upload/nope/status'],
    ['DELETE', '/api/files/nope'],
    ['GET', '/api/files/nope/download'],
  ])('%s %s', async (method, path) => {
    const { status, body } = await api(server.url, method, path)
    expect(status).toBe(404)
    expect(JSON.stringify(body)).not.toMatch(GRAPHQL_WORDS)
  })
})

describe('a status in an error is named in the words of the API that answers', () => {
  const refusal = async (mutation: string, id: string) =>
    (await gql(server.url, `mutation ($id: ID!) { ${mutation}(id: $id) { id } }`, { id })).errors?.[0]

  it('GraphQL says IN_PROGRESS and PAUSED (its enum), REST says in_progress and paused', async () => {
    const { body } = await restUpload(server.url, bytes(50_000), { speed: 1000 })
    const id = body.upload_id
    await waitForStatus(server.url, id, 'in_progress')

    expect(await refusal('resumeUpload', id)).toMatchObject({
      message: `Upload ${id} cannot be resumed: it is IN_PROGRESS`,
      extensions: { code: 'INVALID_STATE' },
    })
    expect(await api(server.url, 'POST', `/api/upload/${id}/resume`)).toEqual({
      status: 400,
      body: { detail: `Upload ${id} cannot be resumed: it is in_progress` },
    })

    await api(server.url, 'POST', `/api/upload/${id}/pause`)
    expect(await refusal('pauseUpload', id)).toMatchObject({
      message: `Upload ${id} cannot be paused: it is PAUSED`,
    })
    expect(await api(server.url, 'POST', `/api/upload/${id}/pause`)).toEqual({
      status: 400,
      body: { detail: `Upload ${id} cannot be paused: it is paused` },
    })
    await api(server.url, 'POST', `/api/upload/${id}/cancel`)
  })
})
