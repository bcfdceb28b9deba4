import { once } from 'node:events'
import { readdir, readFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  api,
  bytes,
  gql,
  multipart,
  rawRequest,
  receivingUpload,
  waitFor,
  waitForStatus,
} from './support/clients.js'
import { multipartHead, openRequest, partHead } from './support/raw.js'
import { listStorage, startServer, type TestServer } from './support/server.js'

/**
 * Bad input is refused as soon as it is known, never after the file: a client that sends 4 GiB with a typo
 * in its speed hears about it after the first bytes, and the server reads no more of it.
 */
const HUGE = 4 * 1024 ** 3

let server: TestServer
beforeAll(async () => {
  server = await startServer({ MAX_UPLOAD_SIZE: String(HUGE + 1024 ** 2) })
})
afterAll(() => server.stop())

const incoming = async () =>
  (await listStorage(server.dir)).staging.filter((name) => name.endsWith('.incoming'))
const uploads = async () =>
  (await api<{ uploads: unknown[] }>(server.url, 'GET', '/api/uploads')).body.uploads

describe('REST: a bad query string is refused before the body is read', () => {
  it.each(['abc', '1M', '1.5', '-1', '1e6', ''])(
    '?speed=%j on a 4 GiB upload → 422 after the first bytes',
    async (speed) => {
      const before = (await uploads()).length
      const request = openRequest(
        server.url,
        multipartHead(`/api/upload?speed=${encodeURIComponent(speed)}`, HUGE),
      )
      request.write(partHead('file', 'huge.bin'))
      request.write(bytes(64 * 1024))
      const answer = await request.answer
      request.end()
      expect(answer.status).toBe(422)
      expect(JSON.parse(answer.body)).toEqual({
        detail: expect.stringMatching(/^speed must be a whole number/),
      })
      // In the words of the REST contract: no GraphQL variables, `$`, or type names.
      expect(answer.body).not.toMatch(/\$|Variable|SafeInt|Int!/)
      expect(answer.headers).toMatch(/connection: close/i)
      await waitFor(async () => (await incoming()).length === 0)
      expect((await uploads()).length).toBe(before)
    },
  )
})

describe('a refused client still sending its body (or a proxy forwarding it) gets the answer, not a reset', () => {
  /** A client that sends its body whatever it hears: the server's answer, its FIN, and any error are kept. */
  function stubbornClient(path: string) {
    // Half-open allowed: it goes on sending after the server's FIN, as a proxy forwarding a body does.
    const socket = connect({ port: Number(new URL(server.url).port), host: '127.0.0.1', allowHalfOpen: true })
    const seen = { text: '', errors: [] as string[], ended: false, sent: 0 }
    socket.on('data', (chunk: Buffer) => (seen.text += chunk.toString('latin1')))
    socket.on('end', () => (seen.ended = true))
    socket.on('error', (error: NodeJS.ErrnoException) => seen.errors.push(error.code ?? error.message))
    socket.write(multipartHead(path, HUGE))
    socket.write(partHead('file', 'huge.bin'))
    /** Writes `size` bytes, a MiB at a time, each once the kernel has taken it; false once the socket is gone. */
    const send = async (size: number) => {
      for (let left = size; left > 0 && !socket.destroyed; left -= 1024 ** 2) {
        const chunk = bytes(Math.min(left, 1024 ** 2))
        const ok = await new Promise<boolean>((resolve) => socket.write(chunk, (error) => resolve(!error)))
        if (!ok) return false
        seen.sent += chunk.length
      }
      return !socket.destroyed
    }
    return { socket, seen, send }
  }

  it('the server reads on after its early answer, and ends the connection cleanly once the client stops', async () => {
    const client = stubbornClient('/api/upload?speed=abc')
    // 8 MiB after the headers, as nginx forwards a body it has not yet seen refused.
    expect(await client.send(8 * 1024 ** 2)).toBe(true)
    await waitFor(() => client.seen.ended)
    expect(client.seen.text).toMatch(/^HTTP\/1\.1 422 /)
    expect(client.seen.text).toMatch(/\r\nconnection: close\r\n/i)
    expect(client.seen.text).toMatch(/"detail":"speed must be a whole number/)
    // The server has shut its side, and still reads: more bytes are taken without a reset.
    expect(await client.send(4 * 1024 ** 2)).toBe(true)
    client.socket.end()
    await once(client.socket, 'close')
    expect(client.seen.errors).toEqual([])
  })

  it('a body that goes on past 16 MiB after the answer is cut off', async () => {
    const client = stubbornClient('/api/upload?speed=abc')
    const closed = new Promise((resolve) => client.socket.once('close', resolve))
    // Sent as fast as the server reads (in well under the 5 s bound): it lets go long before 128 MiB,
    // whatever the kernel buffers and the server's checks every 20 ms let through.
    expect(await client.send(128 * 1024 ** 2)).toBe(false)
    await closed
    expect(client.seen.text).toMatch(/^HTTP\/1\.1 422 /)
    expect(client.seen.sent).toBeGreaterThanOrEqual(16 * 1024 ** 2)
    expect(client.seen.sent).toBeLessThan(96 * 1024 ** 2)
  })

  it(
    'a body that trickles on after the answer is cut off after a few seconds',
    { timeout: 30_000 },
    async () => {
      const client = stubbornClient('/api/upload?speed=abc')
      const started = performance.now()
      // Until the server cuts it off: the next write then fails (a reset, or a broken pipe).
      while ((await client.send(1024)) && performance.now() - started < 20_000)
        await new Promise((resolve) => setTimeout(resolve, 100))
      expect(client.socket.destroyed).toBe(true)
      expect(client.seen.text).toMatch(/^HTTP\/1\.1 422 /)
      // The bound is 5 s; the slack is for a busy machine.
      expect(performance.now() - started).toBeLessThan(15_000)
    },
  )
})

describe('GraphQL multipart: the operation is checked when `map` arrives, before any file byte', () => {
  const UPLOAD = 'mutation ($file: File!, $speed: SafeInt) { uploadFile(file: $file, speed: $speed) { id } }'

  async function refusedEarly(operations: unknown, map = '{"0":["variables.file"]}') {
    const request = openRequest(server.url, multipartHead('/graphql', HUGE))
    request.write(`${partHead('operations')}${JSON.stringify(operations)}\r\n${partHead('map')}${map}\r\n`)
    request.write(partHead('0', 'huge.bin'))
    request.write(bytes(64 * 1024))
    const answer = await request.answer
    request.end()
    await waitFor(async () => (await incoming()).length === 0)
    return {
      status: answer.status,
      body: JSON.parse(answer.body) as { errors: { message: string; extensions: { code: string } }[] },
    }
  }

  it('an invalid speed variable → BAD_USER_INPUT', async () => {
    const { status, body } = await refusedEarly({ query: UPLOAD, variables: { file: null, speed: 'abc' } })
    expect(status).toBeGreaterThanOrEqual(400)
    expect(body.errors[0]?.extensions.code).toBe('BAD_USER_INPUT')
  })

  it('a negative speed, which only the resolver can judge → BAD_USER_INPUT', async () => {
    const { body } = await refusedEarly({ query: UPLOAD, variables: { file: null, speed: -5 } })
    expect(body.errors[0]).toMatchObject({
      message: expect.stringMatching(/speed/),
      extensions: { code: 'BAD_USER_INPUT' },
    })
  })

  it('a broken operation → an error with a code', async () => {
    const { body } = await refusedEarly({
      query: 'mutation ($file: File!) { uploadFile(file: $file) { id ',
      variables: { file: null },
    })
    expect(body.errors[0]).toMatchObject({
      message: expect.stringMatching(/Syntax Error/),
      extensions: { code: expect.any(String) },
    })
  })

  it('one file part mapped to two variables → BAD_USER_INPUT, up front', async () => {
    const query =
      'mutation ($a: File!, $b: File!) { a: uploadFile(file: $a) { id } b: uploadFile(file: $b) { id } }'
    const { status, body } = await refusedEarly(
      { query, variables: { a: null, b: null } },
      '{"0":["variables.a","variables.b"]}',
    )
    expect(status).toBe(422)
    expect(body.errors[0]).toMatchObject({
      message: expect.stringMatching(/one file part per variable/),
      extensions: { code: 'BAD_USER_INPUT' },
    })
  })

  it('file parts sent before `map` → BAD_USER_INPUT', async () => {
    const { body, contentType } = multipart([
      { name: 'operations', content: JSON.stringify({ query: UPLOAD, variables: { file: null } }) },
      { name: '0', filename: 'a.bin', content: 'early' },
      { name: 'map', content: '{"0":["variables.file"]}' },
    ])
    const response = await rawRequest(server.url, '/graphql', {
      headers: { 'content-type': contentType },
      body,
    })
    expect(response.status).toBe(422)
    expect(JSON.stringify(response.body)).toMatch(/after the \\"operations\\" and \\"map\\"/)
  })
})

describe('limits on the whole request', () => {
  let small: TestServer
  beforeAll(async () => {
    small = await startServer({ MAX_UPLOAD_SIZE: String(64 * 1024) })
  })
  afterAll(() => small.stop())

  it('files that each fit but together exceed MAX_UPLOAD_SIZE → 413, nothing staged', async () => {
    const query =
      'mutation ($a: File!, $b: File!, $c: File!) { a: uploadFile(file: $a) { id } b: uploadFile(file: $b) { id } c: uploadFile(file: $c) { id } }'
    const { body, contentType } = multipart([
      { name: 'operations', content: JSON.stringify({ query, variables: { a: null, b: null, c: null } }) },
      { name: 'map', content: '{"0":["variables.a"],"1":["variables.b"],"2":["variables.c"]}' },
      { name: '0', filename: 'a.bin', content: bytes(30 * 1024) },
      { name: '1', filename: 'b.bin', content: bytes(30 * 1024) },
      { name: '2', filename: 'c.bin', content: bytes(30 * 1024) },
    ])
    const response = await rawRequest(small.url, '/graphql', {
      headers: { 'content-type': contentType },
      body,
    }).catch((error: Error) => ({ status: 0, body: { error: error.message } }))
    expect(response.status).toBe(413)
    expect(JSON.stringify(response.body)).toMatch(/add up to more than the limit of 65536 bytes/)
    await waitFor(async () => (await listStorage(small.dir)).staging.length === 0)
  })

  describe('GraphQL: a request refused after a file of it arrived whole keeps nothing of it', () => {
    const query =
      'mutation ($a: File!, $b: File!) { a: uploadFile(file: $a, speed: 0) { id } b: uploadFile(file: $b, speed: 0) { id } }'
    const head = [
      partHead('operations'),
      JSON.stringify({ query, variables: { a: null, b: null } }),
      '\r\n',
      partHead('map'),
      '{"0":["variables.a"],"1":["variables.b"]}',
      '\r\n',
      partHead('0', 'first.bin'),
    ].join('')
    const first = bytes(40 * 1024)
    const between = `\r\n${partHead('1', 'second.bin')}`
    const listed = async () =>
      (
        await gql<{ uploads: { filename: string; status: string; receivedSize: number }[] }>(
          small.url,
          '{ uploads { filename status receivedSize } }',
        )
      ).data?.uploads.filter(
        (upload) => upload.filename === 'first.bin' || upload.filename === 'second.bin',
      ) ?? []

    // The first upload of a server starts its hashing worker, which may take a while on a busy machine.
    beforeAll(async () => {
      const { body, contentType } = multipart([{ name: 'file', filename: 'warm.bin', content: 'w' }])
      const warm = await rawRequest(small.url, '/api/upload?speed=0', {
        headers: { 'content-type': contentType },
        body,
      })
      expect(warm.status).toBe(200)
    })

    it.each([
      [
        'the second file crosses MAX_UPLOAD_SIZE → 413',
        Buffer.concat([bytes(40 * 1024), Buffer.from('\r\n--b0undary--\r\n')]),
        413,
        /add up to more than the limit of 65536 bytes/,
      ],
      [
        'more file parts than allowed follow → 422',
        Buffer.from(
          `x\r\n${Array.from({ length: 21 }, (_, i) => `${partHead(`extra${i}`, `extra${i}.bin`)}x\r\n`).join('')}--b0undary--\r\n`,
        ),
        422,
        /Too many files/,
      ],
      ['the connection is cut inside the second file', undefined, 0, undefined],
    ])('%s', async (_, rest, status, detail) => {
      const length = head.length + first.length + between.length + (rest?.length ?? 1024 ** 2)
      const request = openRequest(small.url, multipartHead('/graphql', length))
      request.write(head)
      request.write(first)
      request.write(between)
      // The first file has arrived whole, its upload on record, before the request goes wrong; and the
      // server is given every chance to take it (it must not: a request is taken whole or not at all).
      await waitFor(async () =>
        (await listed()).some(
          (upload) => upload.filename === 'first.bin' && upload.receivedSize === first.length,
        ),
      )
      await waitFor(async () => (await listed()).some((upload) => upload.status !== 'RECEIVING'), 2500).catch(
        () => undefined,
      )
      if (rest) request.write(rest)
      else request.end()
      const answer = await request.answer
      request.end()
      expect(answer.status).toBe(status)
      if (detail) expect(answer.body).toMatch(detail)
      // Nothing of it is kept: no upload on record (the client never learns an id), no bytes on disk.
      await waitFor(async () => (await listed()).length === 0)
      await waitFor(async () => (await listStorage(small.dir)).staging.length === 0)
      expect((await listStorage(small.dir)).stored.filter((name) => /first|second/.test(name))).toEqual([])
    })
  })

  it('text fields that each fit but together exceed 1 MiB → 422, never held', async () => {
    const fields = Array.from({ length: 5 }, (_, i) => ({ name: `f${i}`, content: 'x'.repeat(300 * 1024) }))
    const { body, contentType } = multipart([...fields, { name: 'file', filename: 'a.bin', content: 'a' }])
    const response = await rawRequest(small.url, '/api/upload', {
      headers: { 'content-type': contentType },
      body,
    })
    expect(response).toEqual({
      status: 422,
      body: { detail: expect.stringMatching(/Text fields too large/) },
    })
  })

  it('a REST part other than `file` is read and dropped, never stored', async () => {
    const junk = bytes(40 * 1024)
    const content = bytes(20 * 1024)
    const rest = Buffer.concat([content, Buffer.from('\r\n--b0undary--\r\n')])
    const head = Buffer.concat([
      Buffer.from(partHead('junk', 'junk.bin')),
      junk,
      Buffer.from(`\r\n${partHead('file', 'kept.bin')}`),
    ])
    const request = openRequest(small.url, multipartHead('/api/upload?speed=0', head.length + rest.length))
    request.write(head)
    request.write(content.subarray(0, 1000))
    // The `file` part has begun (its upload is on record with its first bytes in), so the junk part before it
    // has been parsed whole: had it been stored, its staging file would be here. (The file part itself is
    // under 64 KiB, held in memory until it ends.)
    await receivingUpload(small.url, 1000)
    expect((await listStorage(small.dir)).staging).toEqual([])
    request.write(rest.subarray(1000))
    const answer = await request.answer
    request.end()
    expect(answer.status).toBe(200)
    const id = (JSON.parse(answer.body) as { upload_id: string }).upload_id
    await waitForStatus(small.url, id, 'completed')
    expect(await readFile(join(small.dir, `${id}_kept.bin`))).toEqual(content)
    expect((await readdir(small.dir)).filter((name) => name.includes('junk'))).toEqual([])
  })
})
