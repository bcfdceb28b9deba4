import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { promisify } from 'node:util'
import { Kind, parse, validate } from 'graphql'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { schema } from '../src/graphql/schema.js'
import { SafeInt } from '../src/graphql/scalars.js'
import { bytes, gql, gqlUpload, multipart, rawRequest, waitFor } from './support/clients.js'
import { listStorage, startServer, type TestServer } from './support/server.js'

let server: TestServer
beforeAll(async () => {
  server = await startServer()
})
afterAll(() => server.stop())

interface Upload {
  id: string
  filename: string
  storedName: string
  status: string
  uploadedSize: number
  totalSize: number
  currentSpeed: number
  targetSpeed: number
  sha256: string
  error: string | null
  createdAt: string
  updatedAt: string
  completedAt: string | null
}

const FIELDS = `id filename storedName status uploadedSize totalSize currentSpeed targetSpeed sha256 error
  createdAt updatedAt completedAt`
const UPLOAD = `mutation ($file: File!, $speed: SafeInt) { uploadFile(file: $file, speed: $speed) { ${FIELDS} } }`

async function upload(size: number, speed: number, filename = 'g.bin') {
  const content = bytes(size)
  const { status, body } = await gqlUpload<{ uploadFile: Upload }>(
    server.url,
    UPLOAD,
    { speed },
    content,
    filename,
  )
  expect(status).toBe(200)
  expect(body.errors).toBeUndefined()
  return { content, upload: body.data!.uploadFile }
}

const fetchUpload = async (id: string) =>
  (await gql<{ upload: Upload }>(server.url, `query ($id: ID!) { upload(id: $id) { ${FIELDS} } }`, { id }))
    .data!.upload

const codeOf = (response: { errors?: { extensions?: { code?: string } }[] }) =>
  response.errors?.[0]?.extensions?.code

describe('GraphQL: uploadFile over the multipart request spec', () => {
  it('answers at once with the whole record and stores the file byte for byte (a body over 64 KiB: answered IN_PROGRESS)', async () => {
    const { content, upload: created } = await upload(100_000, 0, 'photo.jpg')
    expect(created).toMatchObject({
      filename: 'photo.jpg',
      storedName: `${created.id}_photo.jpg`,
      status: 'IN_PROGRESS',
      totalSize: 100_000,
      targetSpeed: 0,
      sha256: createHash('sha256').update(content).digest('hex'),
      error: null,
      completedAt: null,
    })
    expect(Date.parse(created.createdAt)).not.toBeNaN()
    const done = await waitFor(async () => {
      const current = await fetchUpload(created.id)
      return current.status === 'COMPLETED' ? current : undefined
    })
    expect(done).toMatchObject({ uploadedSize: 100_000, currentSpeed: 0 })
    expect(Date.parse(done.completedAt!)).toBeGreaterThanOrEqual(Date.parse(done.createdAt))
    expect((await readFile(join(server.dir, done.storedName))).equals(content)).toBe(true)
  })

  it('carries speeds and sizes past 2^31 (SafeInt, not Int)', async () => {
    const { upload: created } = await upload(10, 5_000_000_000)
    expect(created.targetSpeed).toBe(5_000_000_000)
    // No test can send a 5 GB file; the sizes are of the same type, and it carries such numbers both ways.
    const { data } = await gql<{
      __type: { fields: { name: string; type: { ofType: { name: string } } }[] }
    }>(server.url, '{ __type(name: "Upload") { fields { name type { ofType { name } } } } }')
    const typeOf = (field: string) => data?.__type.fields.find((f) => f.name === field)?.type.ofType.name
    expect([typeOf('uploadedSize'), typeOf('totalSize')]).toEqual(['SafeInt', 'SafeInt'])
    expect(SafeInt.serialize(5_000_000_000)).toBe(5_000_000_000)
    expect(SafeInt.parseValue(2 ** 53 - 1)).toBe(2 ** 53 - 1)
    expect(() => SafeInt.parseValue(2 ** 53)).toThrow(/SafeInt/)
  })

  it('rejects a speed that is negative with BAD_USER_INPUT and keeps nothing', async () => {
    const before = await gql<{ uploads: unknown[] }>(server.url, '{ uploads { id } }')
    const { body } = await gqlUpload(server.url, UPLOAD, { speed: -1 }, bytes(100))
    expect(codeOf(body)).toBe('BAD_USER_INPUT')
    expect(await gql(server.url, '{ uploads { id } }')).toEqual(before)
    // The body was staged while it arrived; no upload took it, so it goes once the answer is out.
    await waitFor(
      async () => !(await listStorage(server.dir)).staging.some((name) => name.endsWith('.incoming')),
    )
  })

  it('rejects a File given as JSON instead of a file part with BAD_USER_INPUT', async () => {
    const response = await gql(server.url, UPLOAD, { file: 'not a file', speed: 0 })
    expect(codeOf(response)).toBe('BAD_USER_INPUT')
  })

  it('rejects a map that names a part the request does not contain', async () => {
    const { body, contentType } = multipart([
      { name: 'operations', content: JSON.stringify({ query: UPLOAD, variables: { file: null } }) },
      { name: 'map', content: JSON.stringify({ 1: ['variables.file'] }) },
      { name: '0', filename: 'a.txt', content: 'hello' },
    ])
    const response = await rawRequest(server.url, '/graphql', {
      headers: { 'content-type': contentType },
      body,
    })
    expect(response.status).toBe(422)
    expect(response.body).toMatchObject({ errors: [{ extensions: { code: 'BAD_USER_INPUT' } }] })
  })

  it('rejects operations that are not JSON', async () => {
    const { body, contentType } = multipart([
      { name: 'operations', content: '{nope' },
      { name: 'map', content: '{}' },
    ])
    const response = await rawRequest(server.url, '/graphql', {
      headers: { 'content-type': contentType },
      body,
    })
    expect(response.status).toBe(422)
    expect(response.body).toMatchObject({ errors: [{ message: expect.stringMatching(/operations/) }] })
  })
})

describe('GraphQL: a request refused over HTTP says why, as a GraphQL error', () => {
  const post = (headers: Record<string, string>, body: string) =>
    fetch(`${server.url}/graphql`, { method: 'POST', headers, body })

  it('a body that is not JSON (text/plain) → 415 UNSUPPORTED_MEDIA_TYPE, naming what to send', async () => {
    const response = await post({ 'content-type': 'text/plain' }, '{ uploads { id } }')
    expect(response.status).toBe(415)
    expect(response.headers.get('content-type')).toMatch(/^application\/json/)
    expect(await response.json()).toEqual({
      errors: [
        {
          message: expect.stringMatching(/"text\/plain".*application\/json/),
          extensions: { code: 'UNSUPPORTED_MEDIA_TYPE' },
        },
      ],
    })
  })

  it('an Accept the server cannot meet (application/xml) → 406 NOT_ACCEPTABLE, in JSON all the same', async () => {
    const response = await post(
      { 'content-type': 'application/json', accept: 'application/xml' },
      JSON.stringify({ query: '{ uploads { id } }' }),
    )
    expect(response.status).toBe(406)
    expect(response.headers.get('content-type')).toMatch(/^application\/json/)
    expect(await response.json()).toEqual({
      errors: [
        {
          message: expect.stringMatching(/"application\/xml".*application\/json/),
          extensions: { code: 'NOT_ACCEPTABLE' },
        },
      ],
    })
  })
})

describe('GraphQL: a plain query over HTTP', () => {
  const ask = (accept: string | undefined, body: unknown) =>
    fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(accept === undefined ? {} : { accept }) },
      body: JSON.stringify(body),
    })

  // Plain queries are answered without yoga (src/graphql/direct.ts): in the type yoga would choose for the
  // same Accept, and the same body, with or without variables and operation names.
  // Each Accept twice, in turns: the second time its type is the one kept for that Accept, not another's.
  it('answers in the media type its Accept prefers, as yoga would, with the same body', async () => {
    const query = { query: 'query Limits($x: Boolean!) { limits @include(if: $x) { maxTotalSpeed } }' }
    const body = { ...query, variables: { x: true }, operationName: 'Limits' }
    for (let round = 0; round < 2; round++) {
      for (const [accept, type] of [
        [undefined, 'application/json'],
        ['*/*', 'application/json'],
        ['application/graphql-response+json', 'application/graphql-response+json'],
        ['application/graphql-response+json, application/json;q=0.9', 'application/graphql-response+json'],
        ['application/json, application/graphql-response+json', 'application/json'],
      ] as const) {
        const response = await ask(accept, body)
        expect(response.status).toBe(200)
        expect(response.headers.get('content-type')).toBe(`${type}; charset=utf-8`)
        expect(await response.json()).toEqual({ data: { limits: { maxTotalSpeed: 0 } } })
      }
      const stream = await ask('text/event-stream', body)
      expect(stream.headers.get('content-type')).toMatch(/^text\/event-stream/)
      await stream.body?.cancel()
    }
  })

  it('keeps its errors as yoga gives them: a bad variable is BAD_USER_INPUT, an unknown upload NOT_FOUND', async () => {
    const bad = await ask(undefined, {
      query: 'query ($n: Int) { uploads(first: $n) { id } }',
      variables: { n: 'x' },
    })
    expect(
      ((await bad.json()) as { errors: { extensions: { code: string } }[] }).errors[0]?.extensions.code,
    ).toBe('BAD_USER_INPUT')
    const missing = await ask(undefined, { query: '{ upload(id: "nope") { id } }' })
    expect(
      ((await missing.json()) as { errors: { extensions: { code: string } }[] }).errors[0]?.extensions.code,
    ).toBe('NOT_FOUND')
  })
})

describe('GraphQL: mutations and their error codes', () => {
  const PAUSE = `mutation ($id: ID!) { pauseUpload(id: $id) { status currentSpeed uploadedSize } }`
  const RESUME = `mutation ($id: ID!, $speed: SafeInt) { resumeUpload(id: $id, speed: $speed) { status targetSpeed } }`
  const CANCEL = `mutation ($id: ID!) { cancelUpload(id: $id) { status uploadedSize } }`
  const DELETE = `mutation ($id: ID!) { deleteFile(id: $id) { id filename status } }`

  it('pause → resume at a new speed → cancel, each answering with the new state', async () => {
    const { upload: created } = await upload(10_000, 1000)
    const paused = await gql<{ pauseUpload: Upload }>(server.url, PAUSE, { id: created.id })
    expect(paused.data?.pauseUpload).toMatchObject({ status: 'PAUSED', currentSpeed: 0 })
    const resumed = await gql<{ resumeUpload: Upload }>(server.url, RESUME, { id: created.id, speed: 2000 })
    expect(resumed.data?.resumeUpload).toEqual({ status: 'IN_PROGRESS', targetSpeed: 2000 })
    const canceled = await gql<{ cancelUpload: Upload }>(server.url, CANCEL, { id: created.id })
    expect(canceled.data?.cancelUpload).toMatchObject({ status: 'CANCELED' })
    expect(canceled.data?.cancelUpload.uploadedSize).toBeGreaterThanOrEqual(
      paused.data!.pauseUpload.uploadedSize,
    )
  })

  it('deleteFile removes a completed upload and answers with it', async () => {
    const { upload: created } = await upload(100, 0, 'bye.txt')
    await waitFor(async () => (await fetchUpload(created.id)).status === 'COMPLETED')
    expect((await listStorage(server.dir)).stored).toContain(created.storedName)
    const deleted = await gql<{ deleteFile: Upload }>(server.url, DELETE, { id: created.id })
    expect(deleted.data?.deleteFile).toEqual({ id: created.id, filename: 'bye.txt', status: 'COMPLETED' })
    const files = await gql<{ files: { id: string }[] }>(server.url, '{ files { id } }')
    expect(files.data?.files.map((f) => f.id)).not.toContain(created.id)
    expect(codeOf(await gql(server.url, `{ upload(id: "${created.id}") { id } }`))).toBe('NOT_FOUND')
    expect((await listStorage(server.dir)).stored).not.toContain(created.storedName)
  })

  it.each([
    ['pauseUpload', PAUSE],
    ['resumeUpload', RESUME],
    ['cancelUpload', CANCEL],
    ['deleteFile', DELETE],
  ])('%s of an unknown id → NOT_FOUND', async (_, mutation) => {
    expect(codeOf(await gql(server.url, mutation, { id: 'missing' }))).toBe('NOT_FOUND')
  })

  it('upload(id) of an unknown id → NOT_FOUND', async () => {
    expect(codeOf(await gql(server.url, `{ upload(id: "missing") { id } }`))).toBe('NOT_FOUND')
  })

  it('state conflicts → INVALID_STATE, never INTERNAL_SERVER_ERROR', async () => {
    const { upload: created } = await upload(10_000, 1000)
    expect(codeOf(await gql(server.url, RESUME, { id: created.id }))).toBe('INVALID_STATE')
    expect(codeOf(await gql(server.url, DELETE, { id: created.id }))).toBe('INVALID_STATE')
    await gql(server.url, CANCEL, { id: created.id })
    expect(codeOf(await gql(server.url, CANCEL, { id: created.id }))).toBe('INVALID_STATE')
    expect(codeOf(await gql(server.url, PAUSE, { id: created.id }))).toBe('INVALID_STATE')
  })

  it('a fractional or string speed → a client error code', async () => {
    const { upload: created } = await upload(10_000, 1000)
    await gql(server.url, PAUSE, { id: created.id })
    expect(codeOf(await gql(server.url, RESUME, { id: created.id, speed: 1.5 }))).toBe('BAD_USER_INPUT')
    expect(codeOf(await gql(server.url, RESUME, { id: created.id, speed: '100' }))).toBe('BAD_USER_INPUT')
    expect(codeOf(await gql(server.url, RESUME, { id: created.id, speed: -100 }))).toBe('BAD_USER_INPUT')
    expect((await fetchUpload(created.id)).status).toBe('PAUSED')
    await gql(server.url, CANCEL, { id: created.id })
  })

  it('uploads lists every upload oldest first, whatever its status', async () => {
    const first = (await upload(10_000, 1000)).upload
    const second = (await upload(10_000, 1000)).upload
    await gql(server.url, CANCEL, { id: first.id })
    const { data } = await gql<{ uploads: { id: string; status: string }[] }>(
      server.url,
      '{ uploads { id status } }',
    )
    const ids = data!.uploads.map((u) => u.id)
    expect(ids.indexOf(first.id)).toBeLessThan(ids.indexOf(second.id))
    expect(data!.uploads.find((u) => u.id === first.id)?.status).toBe('CANCELED')
    await gql(server.url, CANCEL, { id: second.id })
  })
})

describe('GraphiQL', () => {
  it('is served at /graphql to a browser, with its assets inline (no CDN) and subscriptions over graphql-ws', async () => {
    const response = await fetch(`${server.url}/graphql`, { headers: { accept: 'text/html' } })
    expect(response.status).toBe(200)
    const html = await response.text()
    expect(html).toMatch(/<title>Upload service · GraphiQL<\/title>/)
    expect(html).not.toMatch(/<script[^>]+src="https?:/)
    expect(html).not.toMatch(/<link[^>]+href="https?:/)
    expect(html).toMatch(/"subscriptionsProtocol":"WS"/)
  })

  it('opens with a short example document that holds against the schema: its query runs, its curl line uploads, no pasted welcome', async () => {
    const html = await (await fetch(`${server.url}/graphql`, { headers: { accept: 'text/html' } })).text()
    // Without a document of its own GraphiQL writes a welcome with the title pasted into its sentence
    // ("Upload service is an in-browser tool…").
    const literal = /"defaultQuery":("(?:[^"\\]|\\.)*")/.exec(html)?.[1]
    expect(literal).toBeDefined()
    const document = JSON.parse(literal!) as string
    const parsed = parse(document)
    expect(validate(schema, parsed)).toEqual([])
    const operations = parsed.definitions.flatMap((d) =>
      d.kind === Kind.OPERATION_DEFINITION ? [`${d.operation} ${d.name?.value}`] : [],
    )
    expect(operations).toEqual(['query Uploads', 'mutation Upload', 'subscription Progress'])

    // The query runs as it stands.
    const ran = await rawRequest(server.url, '/graphql', {
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: Buffer.from(JSON.stringify({ query: document, operationName: 'Uploads' })),
    })
    expect(ran.body).toMatchObject({ data: { uploads: expect.any(Array) } })

    // The curl line in its comments sends a file, as printed (but for this server's address and the file).
    const dir = await mkdtemp(join(tmpdir(), 'graphiql-'))
    try {
      const file = join(dir, 'file.zip')
      await writeFile(file, 'a file sent with the curl line GraphiQL shows')
      const command = document
        .split('\n')
        .filter((line) => /^#\s+(curl |-F )/.test(line))
        .map((line) => line.replace(/^#\s+/, '').replace(/\\$/, ''))
        .join(' ')
        .replace('http://localhost:8000', server.url)
        .replace('/path/to/file.zip', file)
      expect(command).toMatch(/^curl \S+\/graphql +-F operations=/)
      const { stdout } = await promisify(execFile)('sh', ['-c', `${command} --silent --show-error`])
      const answer = JSON.parse(stdout) as { data?: { uploadFile: { id: string; status: string } } }
      expect(answer.data?.uploadFile.status).toMatch(/^(IN_PROGRESS|COMPLETED)$/)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('downloadUrl', () => {
  /** Uploads a small file and answers its downloadUrl as asked for with `headers` (a proxy's, or a client's). */
  async function downloadUrlOn(target: TestServer, headers: Record<string, string>[]): Promise<string[]> {
    const made = await gqlUpload<{ uploadFile: { id: string } }>(
      target.url,
      'mutation ($file: File!) { uploadFile(file: $file, speed: 0) { id } }',
      {},
      bytes(64),
    )
    const id = made.body.data!.uploadFile.id
    const ask = async (extra: Record<string, string>) =>
      (
        await rawRequest(target.url, '/graphql', {
          headers: { 'content-type': 'application/json', accept: 'application/json', ...extra },
          body: Buffer.from(
            JSON.stringify({
              query: 'query ($id: ID!) { upload(id: $id) { status downloadUrl } }',
              variables: { id },
            }),
          ),
        })
      ).body as { data: { upload: { status: string; downloadUrl: string | null } } }
    await waitFor(async () => (await ask({})).data.upload.status === 'COMPLETED')
    const path = `/api/files/${encodeURIComponent(id)}/download`
    return Promise.all(
      headers.map(async (h) => (await ask(h)).data.upload.downloadUrl!.replace(path, '<path>')),
    )
  }

  const FORWARDED: Record<string, string>[] = [
    {},
    { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'uploads.example' },
    { forwarded: 'for=192.0.2.1;proto=https;host=fwd.example' },
    // A client's own header first, the proxy's element appended after it: the proxy's counts.
    { forwarded: 'host=evil.example;proto=http, for=192.0.2.1;host="good.example:8443";proto=https' },
    // Not a host: ignored.
    { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil.example/phish?' },
  ]

  it('is a path from the root by default, whatever forwarded headers a client sends', async () => {
    expect(await downloadUrlOn(server, FORWARDED)).toEqual(['<path>', '<path>', '<path>', '<path>', '<path>'])
  })

  it('is absolute under PUBLIC_URL, whatever forwarded headers say', async () => {
    const target = await startServer({ PUBLIC_URL: 'https://files.example.com/uploads/' })
    try {
      expect(await downloadUrlOn(target, FORWARDED)).toEqual(
        Array(5).fill('https://files.example.com/uploads<path>'),
      )
    } finally {
      await target.stop()
    }
  })

  it('follows Forwarded / X-Forwarded-* only from a proxy TRUST_PROXY names', async () => {
    const trusted = await startServer({ TRUST_PROXY: '127.0.0.1' })
    const other = await startServer({ TRUST_PROXY: '192.0.2.10' })
    try {
      expect(await downloadUrlOn(trusted, FORWARDED)).toEqual([
        '<path>',
        'https://uploads.example<path>',
        'https://fwd.example<path>',
        'https://good.example:8443<path>',
        '<path>',
      ])
      expect(await downloadUrlOn(other, FORWARDED)).toEqual(Array(5).fill('<path>'))
    } finally {
      await Promise.all([trusted.stop(), other.stop()])
    }
  })
})
