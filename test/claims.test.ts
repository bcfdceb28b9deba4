import { getIntrospectionQuery, type GraphQLObjectType } from 'graphql'
import { schema } from '../src/graphql/schema.js'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Client } from 'graphql-ws'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawnServer, type ChildServer } from './support/child.js'
import { api, bytes, gql, multipart, restUpload, waitFor, wsClient } from './support/clients.js'
import { listStorage, startServer, type TestServer } from './support/server.js'
import { multipartHead, openRequest, partHead } from './support/raw.js'
import { sseSlowReader, wsSlowReader } from './support/slow-readers.js'
import { readState } from './support/state.js'

const TOKEN = 'claims-token-0123456789abcdef'

describe('/metrics with API_TOKEN set', () => {
  let server: TestServer
  beforeAll(async () => {
    server = await startServer({ API_TOKEN: TOKEN })
  })
  afterAll(() => server.stop())

  it('needs the token: 401 {"detail"} without it or with a wrong one, Prometheus text with it', async () => {
    const attempts: Record<string, string>[] = [{}, { authorization: 'Bearer wrong-token-wrong-token' }]
    for (const headers of attempts) {
      const denied = await fetch(`${server.url}/metrics`, { headers })
      expect(denied.status).toBe(401)
      expect(denied.headers.get('www-authenticate')).toBe('Bearer')
      // Not GraphQL: said as every other route says it.
      expect(await denied.json()).toEqual({ detail: expect.stringMatching(/Bearer/) })
    }
    const scraped = await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })
    expect(scraped.status).toBe(200)
    expect(scraped.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
    const text = await scraped.text()
    for (const [name, type] of [
      ['upload_bytes_received_total', 'counter'],
      ['upload_bytes_stored_total', 'counter'],
      ['upload_active_transfers', 'gauge'],
      ['graphql_subscriptions', 'gauge'],
      ['http_request_duration_seconds', 'histogram'],
    ]) {
      expect(text).toMatch(new RegExp(`^# HELP ${name} \\S`, 'm'))
      expect(text).toMatch(new RegExp(`^# TYPE ${name} ${type}$`, 'm'))
    }
    // Every other line is a sample in the exposition format: name{labels} value.
    const samples = text.split('\n').filter((line) => line !== '' && !line.startsWith('#'))
    expect(samples.length).toBeGreaterThan(20)
    for (const line of samples)
      expect(line).toMatch(/^[a-zA-Z_:][\w:]*(\{.*\})? (-?\d+(\.\d+)?(e[+-]?\d+)?|NaN|[+-]Inf)$/)
  })
})

/**
 * Operations at and one step past each limit on operations, written against this schema. Upload has only
 * scalar fields, so depth is reached with nested inline fragments (each one is a level to Armor), and tokens
 * near the limit with one fragment spread many times (the same field repeated 900 times trips graphql-js's
 * own guard first).
 */
const FIELDS = 'id filename storedName status uploadedSize totalSize currentSpeed targetSpeed sha256 error'
/** Every field of Upload (read from the schema, so a new field joins in) and the `__typename` clients add. */
const ALL_FIELDS = `${Object.keys((schema.getType('Upload') as GraphQLObjectType).getFields()).join(
  ' ',
)} __typename`
const nested = (levels: number) =>
  `{ uploads { ${'... on Upload { '.repeat(levels)}id${' }'.repeat(levels)} } }`
const aliased = (count: number) =>
  `{ ${Array.from({ length: count }, (_, i) => `a${i}: uploads { id }`).join(' ')} }`
const spread = (count: number) =>
  `{ limits { ${'...F '.repeat(count)}} } fragment F on Limits { maxTotalSpeed }`
const directed = (count: number) => `{ limits { ${'maxTotalSpeed @include(if: true) '.repeat(count)}} }`

/** [limit, an operation within it, one just past it, what the refusal must say] */
const LIMITS: [string, string, string, RegExp][] = [
  ['depth 6', nested(4), nested(5), /^Query depth limit of 6 exceeded, found 7\. Nest fewer selections\.$/],
  ['15 aliases', aliased(15), aliased(16), /^Aliases limit of 15 exceeded, found 16\. Use fewer aliases/],
  // Each field of each item costs 1: a full page with every field fits (21,001); without `first`, or with
  // `first` in a variable, a list counts as a full page too, so three lists of 10 fields are 3 × 10,001.
  [
    'cost 25000',
    `{ uploads(first: 1000) { ${ALL_FIELDS} } uploadCounts { total } }`,
    `query ($n: Int) { a: uploads { ${FIELDS} } b: uploads(first: $n) { ${FIELDS} } c: files { ${FIELDS} } }`,
    /^Query is too complex: it costs 30003, over the limit of 25000 .*Ask for fewer items \(a smaller `first`\) or fewer fields\.$/,
  ],
  // 3 + 2 × 494 + 2 + 6 = 999 tokens; then 1205.
  [
    '1000 tokens',
    spread(494),
    `{ uploads { ${'id '.repeat(1200)}} }`,
    /^Token limit of 1000 exceeded\. Send a shorter/,
  ],
  [
    '50 directives',
    directed(50),
    directed(51),
    /^Directives limit of 50 exceeded, found 51\. Use fewer directives\.$/,
  ],
]

describe('limits on operations', () => {
  let server: TestServer
  beforeAll(async () => {
    server = await startServer()
  })
  afterAll(() => server.stop())

  describe('over HTTP', () => {
    it.each(LIMITS)(
      '%s: one step past it is refused with QUERY_TOO_COMPLEX, naming the limit and what to do',
      async (_, within, past, message) => {
        const allowed = await gql(server.url, within)
        expect(allowed.errors).toBeUndefined()
        const refused = await gql(server.url, past)
        expect(refused.data).toBeUndefined()
        expect(refused.errors).toEqual([
          expect.objectContaining({
            message: expect.stringMatching(message),
            extensions: { code: 'QUERY_TOO_COMPLEX' },
          }),
        ])
      },
    )

    it('a first over 1000 is told the page limit (BAD_USER_INPUT), not that the query costs too much', async () => {
      const answer = await gql(server.url, `{ uploads(first: 100000) { ${ALL_FIELDS} } }`)
      expect(answer.errors).toEqual([
        expect.objectContaining({
          message: 'first must be from 1 to 1000; got 100000',
          extensions: { code: 'BAD_USER_INPUT' },
        }),
      ])
    })

    it('introspection (GraphiQL’s schema query, deeper than 6) still works', async () => {
      const introspection = await gql<{ __schema: { types: unknown[] } }>(server.url, getIntrospectionQuery())
      expect(introspection.errors).toBeUndefined()
      expect(introspection.data?.__schema.types.length).toBeGreaterThan(10)
    })
  })

  describe('over WebSocket (graphql-ws)', () => {
    /**
     * A refusal is an error for that one operation, as over HTTP: the socket, and every other subscription
     * on it, stays open (a client's mistake is never an internal error that drops the connection).
     */
    async function onOneSocket(run: (client: Client) => Promise<void>) {
      const client = wsClient(server.url)
      let connections = 0
      client.on('connected', () => connections++)
      // Holds the socket open (a lazy client closes it when its last operation ends), and would end with the
      // socket's close event if the socket dropped.
      const held = client.iterate({ query: 'subscription { uploadProgress { id } }' })
      let dropped: unknown
      held.next().catch((error: unknown) => (dropped = error))
      try {
        await run(client)
        const after = await client.iterate({ query: '{ uploads { id } }' }).next()
        expect(after.value).toEqual({ data: { uploads: [] } })
        expect(dropped).toBeUndefined()
        expect(connections).toBe(1)
      } finally {
        await held.return?.()
        await client.dispose()
      }
    }

    it.each(LIMITS)(
      '%s: one step past it is refused with QUERY_TOO_COMPLEX, naming the limit and what to do',
      (_, within, past, message) =>
        onOneSocket(async (client) => {
          const allowed = await client.iterate({ query: within }).next()
          expect(allowed.value.errors).toBeUndefined()
          await expect(client.iterate({ query: past }).next()).rejects.toEqual([
            expect.objectContaining({
              message: expect.stringMatching(message),
              // (graphql-ws also passes on the `http` that yoga's validation gives its errors.)
              extensions: expect.objectContaining({ code: 'QUERY_TOO_COMPLEX' }),
            }),
          ])
        }),
    )

    it('a subscription past a limit is refused the same way', () =>
      onOneSocket(async (client) => {
        const query = `subscription { ${Array.from({ length: 16 }, (_, i) => `a${i}: uploadProgress { id }`).join(' ')} }`
        await expect(client.iterate({ query }).next()).rejects.toEqual(
          // (with graphql-js's own: a subscription selects one field)
          expect.arrayContaining([
            expect.objectContaining({
              message: expect.stringMatching(/^Aliases limit of 15 exceeded/),
              extensions: expect.objectContaining({ code: 'QUERY_TOO_COMPLEX' }),
            }),
          ]),
        )
      }))

    it('introspection still works', () =>
      onOneSocket(async (client) => {
        const { value } = await client
          .iterate<{ __schema: { types: unknown[] } }>({ query: getIntrospectionQuery() })
          .next()
        expect(value.errors).toBeUndefined()
        expect(value.data?.__schema.types.length).toBeGreaterThan(10)
      }))
  })
})

describe('more than 20 files in one multipart request → 422, and nothing is left in staging', () => {
  let server: TestServer
  beforeAll(async () => {
    server = await startServer()
  })
  afterAll(() => server.stop())

  /** A file part of 10 KB for each name. */
  const files = (names: string[]) =>
    names.map((name, i) => ({ name, filename: `f${i}.bin`, content: bytes(10_000) }))
  /** POSTs a multipart body and resolves with the JSON answer; fails if none comes within 5 s. */
  const send = (path: string, parts: Parameters<typeof multipart>[0]) => {
    const { body, contentType } = multipart(parts)
    return new Promise<{ status: number; body: unknown }>((resolve, reject) => {
      const req = request(`${server.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': contentType },
      })
      const timer = setTimeout(() => {
        req.destroy()
        reject(new Error(`no answer within 5 s to a ${body.length}-byte body that was sent whole`))
      }, 5000)
      req.on('response', (res) => {
        let text = ''
        res.on('data', (chunk: Buffer) => (text += chunk.toString()))
        res.on('end', () => {
          clearTimeout(timer)
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as unknown })
        })
      })
      req.on('error', reject)
      req.end(body)
    })
  }
  const extras = Array.from({ length: 20 }, (_, i) => `extra${i}`)
  const uploadsNow = async () =>
    (await gql<{ uploads: unknown[] }>(server.url, '{ uploads { id } }')).data?.uploads

  it.each([
    ['the `file` part first', ['file', ...extras]],
    ['the `file` part last', [...extras, 'file']],
  ])('REST /api/upload, %s', async (_, names) => {
    const response = await send('/api/upload', files(names))
    expect(response).toEqual({ status: 422, body: { detail: expect.stringMatching(/too many files.*20/i) } })
    await waitFor(async () => (await listStorage(server.dir)).staging.length === 0)
    expect(await listStorage(server.dir)).toEqual({ stored: [], staging: [], transfers: [] })
    expect(await uploadsNow()).toEqual([])
  })

  it('REST /api/upload, the `file` part whole and staged before the other 20 arrive', async () => {
    const first = Buffer.concat([
      Buffer.from(partHead('file', 'first.bin')),
      bytes(100_000),
      Buffer.from('\r\n'),
    ])
    const rest = Buffer.from(
      `${extras.map((name) => `${partHead(name, `${name}.bin`)}x\r\n`).join('')}--b0undary--\r\n`,
    )
    const upload = openRequest(
      server.url,
      multipartHead('/api/upload?speed=1000', first.length + rest.length),
    )
    try {
      upload.write(first)
      await waitFor(async () => (await listStorage(server.dir)).staging.length > 0)
      upload.write(rest)
      const answer = await upload.answer
      expect(answer.status).toBe(422)
      expect(JSON.parse(answer.body)).toEqual({ detail: expect.stringMatching(/too many files.*20/i) })
      await waitFor(async () => (await listStorage(server.dir)).staging.length === 0)
      expect(await uploadsNow()).toEqual([])
    } finally {
      upload.end()
    }
  })

  it.each([
    ['the mapped part first', ['0', ...extras]],
    ['the mapped part last', [...extras, '0']],
  ])('GraphQL multipart, %s', async (_, names) => {
    const operations = {
      query: 'mutation ($file: File!) { uploadFile(file: $file, speed: 0) { id } }',
      variables: { file: null },
    }
    const response = await send('/graphql', [
      { name: 'operations', content: JSON.stringify(operations) },
      { name: 'map', content: JSON.stringify({ 0: ['variables.file'] }) },
      ...files(names),
    ])
    expect(response.status).toBe(422)
    expect(response.body).toMatchObject({
      errors: [
        { message: expect.stringMatching(/too many files.*20/i), extensions: { code: 'BAD_USER_INPUT' } },
      ],
    })
    await waitFor(async () => (await listStorage(server.dir)).staging.length === 0)
    expect(await listStorage(server.dir)).toEqual({ stored: [], staging: [], transfers: [] })
    expect(await uploadsNow()).toEqual([])
  })
})

describe('a subscriber that stops reading gets the latest state when it reads again, never a backlog', () => {
  /**
   * How to tell "no backlog" from the outside. Between the server and a reader that stops reading there are
   * the kernel's socket buffers: on loopback about 4 MB (the sender's buffer grows to tcp_wmem's maximum),
   * which is 20,000 events of 200 bytes, half an hour of one upload's progress. So with small events a
   * stall of seconds proves nothing: everything sent fits in the kernel, whatever the server does. Hence:
   * - each event is made big (the 16 KB file name, 15 times: ~240 KB), so the buffers hold about twenty;
   * - four uploads are followed at once (~40 events a second), so the stall outgrows the buffers quickly;
   * - a second subscriber that keeps reading counts what was published during the stall.
   * A server that queues would deliver every one of those states once the reader reads again. One that
   * keeps only the latest state of each upload delivers what sat in the kernel, then one state per upload,
   * already current: far fewer. Every state it skipped is one the server never held for it.
   */
  const UPLOADS = 4
  const SPEED = 100_000
  const STALL_EVENTS = 120
  const NAME = `${'n'.repeat(16_000)}.bin`
  const BIG = `subscription { uploadProgress { id status uploadedSize ${Array.from({ length: 15 }, (_, i) => `n${i}: filename`).join(' ')} } }`
  const SMALL = 'subscription { uploadProgress { id status uploadedSize } }'
  interface Progress {
    uploadProgress: { id: string; status: string; uploadedSize: number }
  }

  let server: TestServer
  let ids: string[]
  beforeAll(async () => {
    server = await startServer()
    // 4 MB at 100 KB/s: they run for 40 s, longer than both tests together.
    const started = await Promise.all(
      Array.from({ length: UPLOADS }, () =>
        restUpload(server.url, bytes(4_000_000), { filename: NAME, speed: SPEED }),
      ),
    )
    ids = started.map(({ body }) => body.upload_id)
  })
  afterAll(async () => {
    for (const id of ids) await api(server.url, 'POST', `/api/upload/${id}/cancel`)
    await server.stop()
  })

  it.each([
    ['WebSocket (graphql-ws)', wsSlowReader],
    ['SSE', sseSlowReader],
  ])('over %s', async (_, open) => {
    const reference = wsSlowReader<Progress>(server.url, SMALL)
    const slow = open<Progress>(server.url, BIG)
    const failed = Promise.race([reference.failed, slow.failed])
    const until = (check: () => boolean, timeoutMs?: number) =>
      Promise.race([waitFor(check, timeoutMs), failed])
    try {
      await until(() => slow.events.length > 0 && reference.events.length > 0)
      slow.pause()
      const readBefore = slow.events.length
      const publishedBefore = reference.events.length
      await until(() => reference.events.length - publishedBefore >= STALL_EVENTS, 15_000)
      const published = reference.events.length - publishedBefore
      const latest = new Map(reference.events.map(({ uploadProgress: p }) => [p.id, p.uploadedSize]))
      slow.resume()

      // It reads again: for every upload it soon has a state at least as new as any published before.
      const caughtUp = () =>
        ids.every((id) =>
          slow.events
            .slice(readBefore)
            .some(({ uploadProgress: p }) => p.id === id && p.uploadedSize >= (latest.get(id) ?? Infinity)),
        )
      await until(caughtUp, 10_000)
      // States it read after the stall that were already out of date when the stall ended: a queue would
      // hand it every one published meanwhile; latest-state-only, only what sat in the kernel's buffers.
      // (States published while it catches up are new, not backlog, and are not counted.)
      const stale = slow.events
        .slice(readBefore)
        .filter(({ uploadProgress: p }) => p.uploadedSize < (latest.get(p.id) ?? 0)).length
      expect(
        stale,
        `${stale} stale events read after a stall during which ${published} were published`,
      ).toBeLessThan(published / 2)
      // And it jumped: for some upload, two states in a row are more than a second of transfer apart.
      const sizes = (id: string) =>
        slow.events
          .map(({ uploadProgress: p }) => p)
          .filter((p) => p.id === id)
          .map((p) => p.uploadedSize)
      const jumps = ids.map((id) => Math.max(...sizes(id).map((size, i, all) => size - (all[i - 1] ?? size))))
      expect(Math.max(...jumps)).toBeGreaterThan(SPEED)
    } finally {
      slow.close()
      reference.close()
    }
  })
})

describe('the 1 MiB limit on a GraphQL JSON body sent chunked (no Content-Length)', () => {
  let server: TestServer
  beforeAll(async () => {
    server = await startServer()
  })
  afterAll(() => server.stop())

  const CHUNK = 64 * 1024
  /** A JSON GraphQL request whose query ends in a comment, so its size is ours to choose. */
  const start = '{"query":"{ uploads { id } } #'
  const finish = '"}'

  /**
   * Streams `total` bytes of body with node:http (no Content-Length, so Transfer-Encoding: chunked), one
   * chunk at a time as the socket drains. With `holdAfter`, it stops once that much is sent, without ending
   * the request, and waits for the answer; then tries to send the rest.
   */
  function streamBody(total: number, holdAfter = Infinity) {
    const req = request(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
    })
    req.on('error', () => undefined) // a server that closes mid-body resets us
    const closed = new Promise<void>((resolve) => req.once('close', () => resolve()))
    // The global agent keeps connections alive: only a server that closes this one closes its socket.
    const socketClosed = new Promise<void>((resolve) =>
      req.once('socket', (socket) => socket.once('close', () => resolve())),
    )
    let sent = 0
    let sentWhenAnswered = -1
    const answer = new Promise<{ status: number; headers: Record<string, unknown>; body: string }>(
      (resolve) =>
        req.once('response', (res) => {
          sentWhenAnswered = sent
          let text = ''
          res.on('data', (chunk: Buffer) => (text += chunk.toString()))
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }))
        }),
    )
    const write = async (until: number) => {
      while (sent < until && !req.destroyed && !req.writableEnded) {
        const remaining = total - sent
        const last = sent > 0 && remaining <= CHUNK
        const piece =
          sent === 0
            ? start
            : last
              ? `${'x'.repeat(remaining - finish.length)}${finish}`
              : 'x'.repeat(Math.min(CHUNK, until - sent))
        sent += piece.length
        if (last) req.end(piece)
        // A connection the server closes ends the sending (the reset is no failure: it is the refusal).
        else if (!req.write(piece)) await Promise.race([once(req, 'drain'), closed]).catch(() => undefined)
      }
    }
    return {
      answer,
      socketClosed,
      chunked: () => req.chunkedEncoding,
      sent: () => sent,
      sentWhenAnswered: () => sentWhenAnswered,
      send: () => write(Math.min(total, holdAfter)),
      sendRest: () => write(total),
      destroy: () => req.destroy(),
    }
  }

  it('3 MiB → 413 PAYLOAD_TOO_LARGE as soon as 1 MiB is crossed, before the body is done, and the connection is closed', async () => {
    const HOLD = 1024 * 1024 + 2 * CHUNK
    const body = streamBody(3 * 1024 * 1024, HOLD)
    try {
      await body.send()
      expect(body.chunked()).toBe(true)
      // Nothing more is sent until the server answers: an answer now is one given at the limit, not at the end.
      const answer = await Promise.race([
        body.answer,
        new Promise<never>((_, reject) =>
          setTimeout(
            () => reject(new Error(`no answer with ${body.sent()} bytes sent and the body unfinished`)),
            5000,
          ),
        ),
      ])
      expect(answer.status).toBe(413)
      expect(JSON.parse(answer.body)).toMatchObject({
        errors: [{ extensions: { code: 'PAYLOAD_TOO_LARGE' } }],
      })
      expect(answer.headers.connection).toBe('close')
      expect(body.sentWhenAnswered()).toBe(HOLD)
      // The server reads no more of it: it closes the connection, while the rest is still being sent.
      void body.sendRest()
      await Promise.race([
        body.socketClosed,
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error('the server kept the connection open')), 5000),
        ),
      ])
    } finally {
      body.destroy()
    }
  })

  it('a 900 KiB chunked body is read whole and answered', async () => {
    const body = streamBody(900 * 1024)
    await body.send()
    expect(body.chunked()).toBe(true)
    const answer = await body.answer
    expect(answer.status).toBe(200)
    expect(JSON.parse(answer.body)).toEqual({ data: { uploads: [] } })
  })
})

describe('graceful shutdown gives requests under way up to 3 s', () => {
  const FILE = 200_000
  const body = () => {
    const head = Buffer.from(partHead('file', 'late.bin'))
    const tail = Buffer.from('\r\n--b0undary--\r\n')
    const whole = Buffer.concat([head, bytes(FILE), tail])
    return {
      whole,
      firstHalf: whole.subarray(0, head.length + FILE / 2),
      rest: whole.subarray(head.length + FILE / 2),
    }
  }

  /** The built server in its own process, with an upload body half sent: the file is arriving. */
  async function serverReceiving() {
    const dir = await mkdtemp(join(tmpdir(), 'claims-shutdown-'))
    const child = await spawnServer(dir)
    const { whole, firstHalf, rest } = body()
    const upload = openRequest(child.url, multipartHead('/api/upload?speed=50000', whole.length))
    upload.write(firstHalf)
    await waitFor(async () => (await listStorage(dir)).staging.length > 0)
    const stop = async () => {
      upload.end()
      if (child.child.exitCode === null && child.child.signalCode === null) child.child.kill('SIGKILL')
      await child.exited
      await rm(dir, { recursive: true, force: true })
    }
    return { dir, child, upload, rest, stop }
  }

  /** SIGTERM, then waits until the server says it is stopping; resolves with when the signal was sent. */
  async function terminate(child: ChildServer) {
    const sentAt = performance.now()
    child.child.kill('SIGTERM')
    await waitFor(() => child.output().includes('"server.stopping"'))
    return sentAt
  }

  it('an upload whose body finishes arriving 1 s after SIGTERM is answered, and the process exits 0', async () => {
    const { dir, child, upload, rest, stop } = await serverReceiving()
    try {
      const sentAt = await terminate(child)
      // The rest of the body trickles in over about a second, as from a slow link.
      for (let i = 0; i < 10; i++) {
        upload.write(rest.subarray((i * rest.length) / 10, ((i + 1) * rest.length) / 10))
        await sleep(100)
      }
      const answer = await upload.answer
      expect(answer.status).toBe(200)
      const started = JSON.parse(answer.body) as { upload_id: string; status: string; total_size: number }
      expect(started).toMatchObject({ upload_id: expect.any(String), status: 'started', total_size: FILE })
      expect(await child.exited).toEqual({ code: 0, signal: null })
      expect(performance.now() - sentAt).toBeLessThan(5000)
      // Stopped after its chunk in flight and saved: it carries on at the next start.
      const { uploads } = await readState(dir)
      expect(uploads[started.upload_id]).toMatchObject({ status: 'IN_PROGRESS', totalSize: FILE })
    } finally {
      await stop()
    }
  })

  it('a request still unfinished after 3 s is cut off, and the process still exits 0 within 5 s', async () => {
    const { child, upload, stop } = await serverReceiving()
    try {
      const sentAt = await terminate(child)
      const answer = await upload.answer
      const cutAfter = performance.now() - sentAt
      expect(answer).toMatchObject({ status: 0, closed: true })
      // It was given the grace period, and no more than that.
      expect(cutAfter).toBeGreaterThan(2800)
      expect(cutAfter).toBeLessThan(4500)
      expect(await child.exited).toEqual({ code: 0, signal: null })
      expect(performance.now() - sentAt).toBeLessThan(5000)
    } finally {
      await stop()
    }
  })
})
