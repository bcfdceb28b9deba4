import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createClient, type Client } from 'graphql-ws'
import WebSocket from 'ws'
import { bytes, waitFor, type GraphQLResponse } from './support/clients.js'
import { listStorage, startServer, type TestServer } from './support/server.js'
import {
  makeKey,
  mintToken,
  serveJwks,
  unsignedToken,
  AUDIENCE,
  ISSUER,
  type JwksEndpoint,
  type TestKey,
} from './support/tokens.js'
import { tusCreate, tusDelete, tusHead, tusPatch } from './support/tus.js'
import { ndjson, upctl } from './support/cli.js'

/*
 * Per-user access (issue 24) on every transport of one real server whose users' tokens are checked against a
 * JWKS endpoint the tests serve: alice and bob are users, root an admin. Another user's upload must answer
 * exactly as an id that does not exist.
 */

let jwks: JwksEndpoint
let key: TestKey
let server: TestServer
let alice: string
let bob: string
let root: string
const MISSING = '00000000-0000-4000-8000-000000000000'

beforeAll(async () => {
  key = await makeKey('ES256')
  jwks = await serveJwks([key])
  server = await startServer({
    AUTH_JWKS_URL: jwks.url,
    AUTH_ISSUER: ISSUER,
    AUTH_AUDIENCE: AUDIENCE,
    AUTH_LINK_SECRET: 'l'.repeat(32),
  })
  alice = await mintToken(key, 'alice')
  bob = await mintToken(key, 'bob')
  root = await mintToken(key, 'root', { claims: { scope: 'uploads:admin' } })
})

afterAll(async () => {
  await server?.stop()
  await jwks?.close()
})

const bearer = (token: string | undefined): Record<string, string> =>
  token === undefined ? {} : { authorization: `Bearer ${token}` }

async function rest(token: string | undefined, method: string, path: string) {
  const response = await fetch(`${server.url}${path}`, { method, headers: bearer(token) })
  const text = await response.text()
  return { status: response.status, body: (text ? JSON.parse(text) : {}) as Record<string, unknown> }
}

async function upload(token: string | undefined, size = 1000, speed?: number) {
  const form = new FormData()
  form.append('file', new Blob([bytes(size)]), 'data.bin')
  const query = speed === undefined ? '' : `?speed=${speed}`
  const response = await fetch(`${server.url}/api/upload${query}`, {
    method: 'POST',
    headers: bearer(token),
    body: form,
  })
  return { status: response.status, body: (await response.json()) as Record<string, unknown> }
}

async function gql<T = Record<string, unknown>>(
  token: string | undefined,
  query: string,
  variables: Record<string, unknown> = {},
) {
  const response = await fetch(`${server.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json', ...bearer(token) },
    body: JSON.stringify({ query, variables }),
  })
  return { status: response.status, body: (await response.json()) as GraphQLResponse<T> }
}

/** An answer about `id` with the id itself taken out: what must not differ between another's and a missing one. */
const without = (answer: unknown, id: string) => JSON.stringify(answer).replaceAll(id, '<id>')

/** Headers that differ between any two answers (when, and which request), whatever they are about. */
const PER_REQUEST = new Set(['date', 'x-request-id', 'upload-expires'])

/** A whole answer, status, headers and body, with `id` taken out and what differs per request left out. */
async function whole(response: Response, id: string): Promise<string> {
  const headers = [...response.headers].filter(([name]) => !PER_REQUEST.has(name))
  return without({ status: response.status, headers, body: await response.text() }, id)
}

async function completedUpload(token: string): Promise<string> {
  const { status, body } = await upload(token)
  expect(status).toBe(200)
  const id = body.upload_id as string
  await waitFor(
    async () => (await rest(token, 'GET', `/api/upload/${id}/status`)).body.status === 'completed',
  )
  return id
}

describe('REST', () => {
  it("answers another user's upload exactly as a missing id, on every route, and changes nothing", async () => {
    const id = await completedUpload(alice)
    for (const [method, path] of [
      ['GET', '/api/upload/:id/status'],
      ['POST', '/api/upload/:id/pause'],
      ['POST', '/api/upload/:id/resume'],
      ['POST', '/api/upload/:id/speed?speed=10'],
      ['POST', '/api/upload/:id/cancel'],
      ['GET', '/api/files/:id/download'],
      ['DELETE', '/api/files/:id'],
    ] as const) {
      const ask = (of: string) =>
        fetch(`${server.url}${path.replace(':id', of)}`, { method, headers: bearer(bob) })
      const theirs = await ask(id)
      expect(theirs.status, `${method} ${path}`).toBe(404)
      // Status, every header (content-length included) and body alike.
      expect(await whole(theirs, id), `${method} ${path}`).toBe(await whole(await ask(MISSING), MISSING))
    }
    // Still there, untouched, for its owner.
    expect((await rest(alice, 'GET', `/api/upload/${id}/status`)).body.status).toBe('completed')
  })

  it('lists only your own; an admin lists all, or one owner’s; a user naming another owner is refused', async () => {
    const mine = await completedUpload(alice)
    const theirs = await completedUpload(bob)
    const ids = async (token: string, query = '') =>
      ((await rest(token, 'GET', `/api/uploads${query}`)).body.uploads as { upload_id: string }[]).map(
        (u) => u.upload_id,
      )
    const files = async (token: string) =>
      ((await rest(token, 'GET', '/api/files')).body.files as { upload_id: string }[]).map((u) => u.upload_id)
    expect(await ids(alice)).toContain(mine)
    expect(await ids(alice)).not.toContain(theirs)
    expect(await files(bob)).toContain(theirs)
    expect(await files(bob)).not.toContain(mine)
    expect(await ids(root)).toEqual(expect.arrayContaining([mine, theirs]))
    const alicesByAdmin = await ids(root, '?owner=alice')
    expect(alicesByAdmin).toContain(mine)
    expect(alicesByAdmin).not.toContain(theirs)
    expect((await rest(alice, 'GET', '/api/uploads?owner=bob')).status).toBe(403)
  })

  it('an admin controls anyone’s upload', async () => {
    const { body } = await upload(alice, 50_000, 5_000)
    const id = body.upload_id as string
    const canceled = await rest(root, 'POST', `/api/upload/${id}/cancel`)
    expect(canceled.status).toBe(200)
    expect((await rest(alice, 'GET', `/api/upload/${id}/status`)).body.status).toBe('canceled')
  })

  it('anonymous callers get 401 with a Bearer challenge, and nothing is stored', async () => {
    const before = await listStorage(server.dir)
    const response = await fetch(`${server.url}/api/uploads`)
    expect(response.status).toBe(401)
    expect(response.headers.get('www-authenticate')).toBe('Bearer')
    expect(((await response.json()) as { detail: string }).detail).toMatch(/bearer token is required/)
    expect((await upload(undefined)).status).toBe(401)
    expect(await listStorage(server.dir)).toEqual(before)
  })
})

describe('bad tokens', () => {
  it('are each refused with 401 naming what is wrong, and nothing is stored', async () => {
    const other = await makeKey('ES256')
    const strangerKid = await makeKey('ES256', 'not-published')
    const cases: [string, Promise<string> | string, RegExp][] = [
      ['expired', mintToken(key, 'eve', { expiresIn: -3600 }), /expired/],
      ['not yet valid', mintToken(key, 'eve', { notBeforeIn: 3600 }), /not valid yet/],
      ['wrong audience', mintToken(key, 'eve', { claims: { aud: 'someone-else' } }), /audience/],
      ['wrong issuer', mintToken(key, 'eve', { claims: { iss: 'https://evil.test' } }), /issuer/],
      ['unknown kid', mintToken(strangerKid, 'eve'), /kid/],
      ['alg none', unsignedToken('eve', key.kid), /algorithm|well-formed/],
      ['another key', mintToken(other, 'eve', { kid: key.kid }), /signature/],
      ['no sub', mintToken(key, undefined), /sub/],
    ]
    const before = await listStorage(server.dir)
    const listed = ((await rest(root, 'GET', '/api/uploads')).body.uploads as unknown[]).length
    for (const [what, token, reason] of cases) {
      const refused = await upload(await token)
      expect(refused.status, what).toBe(401)
      expect(refused.body.detail, what).toMatch(reason)
      expect(JSON.stringify(refused.body), what).not.toContain(await token)
      const viaGraphQL = await gql(await token, '{ uploadCounts { total } }')
      expect(viaGraphQL.status, what).toBe(401)
      expect(viaGraphQL.body.errors?.[0]?.extensions?.code, what).toBe('UNAUTHENTICATED')
    }
    expect(await listStorage(server.dir)).toEqual(before)
    expect(((await rest(root, 'GET', '/api/uploads')).body.uploads as unknown[]).length).toBe(listed)
  })
})

const UPLOAD = `query One($id: ID!) { upload(id: $id) { id owner status downloadUrl } }`

describe('GraphQL over HTTP', () => {
  it("answers another user's upload and its mutations exactly as a missing id", async () => {
    const id = await completedUpload(alice)
    for (const query of [
      UPLOAD,
      'mutation P($id: ID!) { pauseUpload(id: $id) { id } }',
      'mutation R($id: ID!) { resumeUpload(id: $id) { id } }',
      'mutation S($id: ID!) { setSpeed(id: $id, speed: 10) { id } }',
      'mutation C($id: ID!) { cancelUpload(id: $id) { id } }',
      'mutation D($id: ID!) { deleteFile(id: $id) { id } }',
    ]) {
      const theirs = await gql(bob, query, { id })
      const missing = await gql(bob, query, { id: MISSING })
      expect(theirs.body.errors?.[0]?.extensions?.code, query).toBe('NOT_FOUND')
      expect(without(theirs.body, id), query).toBe(without(missing.body, MISSING))
      // The whole answer too: status and every header.
      const ask = (of: string) =>
        fetch(`${server.url}/graphql`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'application/json', ...bearer(bob) },
          body: JSON.stringify({ query, variables: { id: of } }),
        })
      expect(await whole(await ask(id), id), query).toBe(await whole(await ask(MISSING), MISSING))
    }
    const own = await gql<{ upload: { owner: string } }>(alice, UPLOAD, { id })
    expect(own.body.data?.upload.owner).toBe('alice')
  })

  it('me says who you are, your scopes and quotas; lists and counts hold only your own', async () => {
    await completedUpload(alice)
    await completedUpload(bob)
    const me = await gql<{ me: { sub: string; admin: boolean; scopes: string[] } }>(
      bob,
      '{ me { sub admin scopes quotas { bytes running speed } usage { bytesStored running } } }',
    )
    expect(me.body.data?.me).toMatchObject({
      sub: 'bob',
      admin: false,
      scopes: ['uploads:read', 'uploads:write'],
    })
    const list = await gql<{ uploads: { owner: string }[] }>(bob, '{ uploads { owner } }')
    expect(new Set(list.body.data?.uploads.map((u) => u.owner))).toEqual(new Set(['bob']))
    const counts = await gql<{ uploadCounts: { total: number } }>(bob, '{ uploadCounts { total } }')
    expect(counts.body.data?.uploadCounts.total).toBe(list.body.data?.uploads.length)
    const all = await gql<{ uploadCounts: { total: number } }>(root, '{ uploadCounts { total } }')
    expect(all.body.data?.uploadCounts.total).toBeGreaterThan(counts.body.data?.uploadCounts.total ?? 0)
  })

  // A plain JSON query with no error is answered without yoga (src/graphql/direct.ts), by operations compiled
  // once per query text and shared by every caller: each run must still be the asker's own.
  it('a plain JSON query answered without yoga sees only the caller’s own, whoever asked the same text first', async () => {
    const alices = await completedUpload(alice)
    const bobs = await completedUpload(bob)
    const query = '{ me { sub } uploads(first: 100) { id owner } uploadCounts { total } }'
    type Answer = {
      me: { sub: string }
      uploads: { id: string; owner: string }[]
      uploadCounts: { total: number }
    }
    for (const [token, sub, own, other] of [
      [alice, 'alice', alices, bobs],
      [bob, 'bob', bobs, alices],
      [alice, 'alice', alices, bobs],
    ] as const) {
      const answer = await gql<Answer>(token, query)
      expect(answer.body.errors, sub).toBeUndefined()
      const data = answer.body.data!
      expect(data.me.sub).toBe(sub)
      expect(new Set(data.uploads.map((u) => u.owner)), sub).toEqual(new Set([sub]))
      expect(
        data.uploads.map((u) => u.id),
        sub,
      ).toContain(own)
      expect(
        data.uploads.map((u) => u.id),
        sub,
      ).not.toContain(other)
      expect(data.uploadCounts.total, sub).toBe(data.uploads.length)
    }
    const theirs = await gql(bob, UPLOAD, { id: alices })
    expect(theirs.body.errors?.[0]?.extensions?.code).toBe('NOT_FOUND')
    expect(theirs.body.data?.upload ?? null).toBeNull()
  })

  it('the server-wide speed cap is an admin’s to set', async () => {
    const query = 'mutation { setMaxTotalSpeed(speed: 0) { maxTotalSpeed } }'
    expect((await gql(alice, query)).body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN')
    expect((await gql(root, query)).body.data).toEqual({ setMaxTotalSpeed: { maxTotalSpeed: 0 } })
  })
})

const FEED = `subscription { uploadProgress { id owner status } }`
const FOLLOW = `subscription F($id: ID) { uploadProgress(id: $id) { id status } }`

function wsAs(token: string | undefined): Client {
  return createClient({
    url: `${server.url.replace(/^http/, 'ws')}/graphql`,
    webSocketImpl: WebSocket,
    retryAttempts: 0,
    lazy: true,
    connectionParams: token === undefined ? {} : { authorization: `Bearer ${token}` },
  })
}

describe('graphql-ws', () => {
  it('the all-uploads feed shows each user only their own, even for the same query; an admin sees both', async () => {
    const clients = { alice: wsAs(alice), bob: wsAs(bob), root: wsAs(root) }
    const seen: Record<string, Set<string>> = { alice: new Set(), bob: new Set(), root: new Set() }
    const subscriptions = Object.entries(clients).map(([name, client]) =>
      (async () => {
        for await (const result of client.iterate<{ uploadProgress: { owner: string | null } }>({
          query: FEED,
        }))
          seen[name]!.add(String(result.data?.uploadProgress.owner))
      })(),
    )
    try {
      // Each subscriber is listening once it has seen an upload of its own (a socket connects when first
      // asked, and the server loads graphql-ws with the first one): until then each uploads again.
      for (const [name, token] of [
        ['root', root],
        ['alice', alice],
        ['bob', bob],
      ] as const) {
        for (let tries = 0; !seen[name]!.has(name); tries++) {
          expect(tries, name).toBeLessThan(10)
          expect((await upload(token)).status).toBe(200)
          await waitFor(() => seen[name]!.has(name), 3000).catch(() => undefined)
        }
      }
      // Both users' uploads, with every subscriber listening.
      await completedUpload(alice)
      await completedUpload(bob)
      await waitFor(() => seen.root!.has('alice') && seen.root!.has('bob'))
      await waitFor(() => seen.alice!.has('alice') && seen.bob!.has('bob'))
      expect([...seen.alice!]).toEqual(['alice'])
      expect([...seen.bob!]).toEqual(['bob'])
    } finally {
      for (const client of Object.values(clients)) await client.dispose()
      await Promise.allSettled(subscriptions)
    }
  })

  it("following another user's upload fails exactly as following a missing id", async () => {
    const id = await completedUpload(alice)
    const client = wsAs(bob)
    const errorOf = async (target: string) => {
      try {
        for await (const result of client.iterate({ query: FOLLOW, variables: { id: target } }))
          return JSON.stringify(result.errors ?? result.data)
      } catch (error) {
        return JSON.stringify(error)
      }
      return 'completed'
    }
    try {
      const theirs = await errorOf(id)
      expect(theirs).toMatch(/NOT_FOUND/)
      expect(theirs.replaceAll(id, '<id>')).toBe((await errorOf(MISSING)).replaceAll(MISSING, '<id>'))
    } finally {
      await client.dispose()
    }
  })

  it('a socket without a valid token is closed with 4403 and the reason', async () => {
    for (const token of [undefined, await mintToken(key, 'eve', { expiresIn: -3600 })]) {
      const client = wsAs(token)
      const closed = await (async () => {
        try {
          for await (const _ of client.iterate({ query: '{ uploadCounts { total } }' })) return 'answered'
        } catch (error) {
          return error as { code: number; reason: string }
        }
        return 'completed'
      })()
      expect(closed).toMatchObject({ code: 4403, reason: token ? /expired/ : /bearer token is required/ })
      await client.dispose()
    }
  })
})

describe('SSE', () => {
  it("streams only the caller's own uploads; another's id is NOT_FOUND like a missing one", async () => {
    const id = await completedUpload(alice)
    const sse = async (token: string, variables: Record<string, unknown>) => {
      const response = await fetch(`${server.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...bearer(token) },
        body: JSON.stringify({ query: FOLLOW, variables }),
      })
      return response.text()
    }
    const theirs = await sse(bob, { id })
    expect(theirs).toMatch(/NOT_FOUND/)
    expect(theirs.replaceAll(id, '<id>')).toBe((await sse(bob, { id: MISSING })).replaceAll(MISSING, '<id>'))
    expect(await sse(alice, { id })).toMatch(/"status":"COMPLETED"/)
  })
})

describe('tus', () => {
  it("HEAD, PATCH and DELETE of another user's upload get 404 exactly as a missing id", async () => {
    const created = await tusCreate(server.url, 10, { filename: 'a.bin' }, bearer(alice))
    expect(created.status).toBe(201)
    const missing = created.location.replace(created.id, MISSING)
    const pairs = [
      [await tusHead(created.location, bearer(bob)), await tusHead(missing, bearer(bob))],
      [
        await tusPatch(created.location, 0, bytes(10), bearer(bob)),
        await tusPatch(missing, 0, bytes(10), bearer(bob)),
      ],
      [await tusDelete(created.location, bearer(bob)), await tusDelete(missing, bearer(bob))],
    ] as const
    for (const [theirs, absent] of pairs) {
      expect(theirs.status).toBe(404)
      expect(theirs.body).toBe(absent.body)
      // Every header alike but the request's own (its time, its id, and the expiry counted from it).
      const headers = (answer: typeof theirs) =>
        [...answer.headers].filter(([name]) => !PER_REQUEST.has(name))
      expect(headers(theirs)).toEqual(headers(absent))
      expect(theirs.headers.get('upload-offset')).toBeNull()
      // Each request's own time plus the expiry: the two may be a second apart, never more.
      const t = theirs.headers.get('upload-expires')
      const a = absent.headers.get('upload-expires')
      expect(t === null).toBe(a === null)
      if (t !== null && a !== null) expect(Math.abs(Date.parse(t) - Date.parse(a))).toBeLessThanOrEqual(1000)
    }
    // Untouched: its owner goes on, and the upload is hers.
    expect((await tusHead(created.location, bearer(alice))).headers.get('upload-offset')).toBe('0')
    expect((await tusPatch(created.location, 0, bytes(10), bearer(alice))).status).toBe(204)
    const own = await gql<{ upload: { owner: string } }>(alice, UPLOAD, { id: created.id })
    expect(own.body.data?.upload.owner).toBe('alice')
    // Stored before the next test counts what storage holds.
    await waitFor(
      async () => (await rest(alice, 'GET', `/api/upload/${created.id}/status`)).body.status === 'completed',
    )
    // An Upload-Metadata owner is not taken from the sender.
    const forged = await tusCreate(server.url, 1, { filename: 'f', owner: 'alice' }, bearer(bob))
    expect(
      (await gql<{ upload: { owner: string } }>(bob, UPLOAD, { id: forged.id })).body.data?.upload.owner,
    ).toBe('bob')
  })

  it('anonymous tus requests get 401 and nothing is stored', async () => {
    const before = await listStorage(server.dir)
    expect((await tusCreate(server.url, 10)).status).toBe(401)
    const after = await listStorage(server.dir)
    expect(after.stored).toEqual(before.stored)
    expect(after.staging.filter((name) => !before.staging.includes(name))).toEqual([])
  })
})

describe('downloads', () => {
  it('a signed link opens its owner’s file without a header, and only that file, and only unaltered', async () => {
    const id = await completedUpload(alice)
    const other = await completedUpload(bob)
    const link = (await gql<{ upload: { downloadUrl: string } }>(alice, UPLOAD, { id })).body.data?.upload
      .downloadUrl as string
    expect(link).toMatch(/[?&]link=/)
    const plain = await fetch(new URL(link, server.url))
    expect(plain.status).toBe(200)
    expect((await plain.arrayBuffer()).byteLength).toBe(1000)
    // The same grant on another upload's path, or a tampered grant: no access at all.
    const moved = new URL(link, server.url)
    moved.pathname = `/api/files/${other}/download`
    expect((await fetch(moved)).status).toBe(401)
    const tampered = new URL(link, server.url)
    tampered.searchParams.set('link', `${tampered.searchParams.get('link')}x`)
    expect((await fetch(tampered)).status).toBe(401)
    // Bob, with his token, cannot download hers: a missing file.
    expect((await rest(bob, 'GET', `/api/files/${id}/download`)).status).toBe(404)
    // A tus GET of it is the same download.
    expect((await fetch(`${server.url}/files/${id}`, { headers: bearer(bob) })).status).toBe(404)
    expect((await fetch(`${server.url}/files/${id}`, { headers: bearer(alice) })).status).toBe(200)
  })
})

describe('scopes', () => {
  it('a read-only token cannot create or control (403); /metrics is an admin’s', async () => {
    const reader = await mintToken(key, 'alice', { claims: { scope: 'uploads:read' } })
    const id = await completedUpload(alice)
    expect((await upload(reader)).status).toBe(403)
    expect((await rest(reader, 'DELETE', `/api/files/${id}`)).status).toBe(403)
    expect((await rest(reader, 'GET', `/api/upload/${id}/status`)).status).toBe(200)
    expect((await fetch(`${server.url}/metrics`, { headers: bearer(alice) })).status).toBe(403)
    expect((await fetch(`${server.url}/metrics`, { headers: bearer(root) })).status).toBe(200)
  })

  it('a write-only token creates, sends and resumes its own tus upload: HEAD gives its offset; another’s is 404', async () => {
    const writer = await mintToken(key, 'alice', { claims: { scope: 'uploads:write' } })
    const created = await tusCreate(server.url, 20, { filename: 'w.bin' }, bearer(writer))
    expect(created.status).toBe(201)
    expect((await tusPatch(created.location, 0, bytes(10), bearer(writer))).status).toBe(204)
    // What tus-js-client asks before it resumes: a 4xx here makes it drop the upload and start over.
    const head = await tusHead(created.location, bearer(writer))
    expect(head.status).toBe(200)
    expect(head.headers.get('upload-offset')).toBe('10')
    expect(head.headers.get('upload-expires')).not.toBeNull()
    expect((await tusPatch(created.location, 10, bytes(10), bearer(writer))).status).toBe(204)
    // Another user's write-only token: answered as a missing id.
    const other = await mintToken(key, 'bob', { claims: { scope: 'uploads:write' } })
    const theirs = await tusHead(created.location, bearer(other))
    const absent = await tusHead(created.location.replace(created.id, MISSING), bearer(other))
    expect(theirs.status).toBe(404)
    expect(theirs.body).toBe(absent.body)
    expect(theirs.headers.get('upload-offset')).toBeNull()
    expect(theirs.headers.get('upload-expires')).toBeNull()
    // Stored before any test after it counts what storage holds.
    await waitFor(
      async () => (await rest(alice, 'GET', `/api/upload/${created.id}/status`)).body.status === 'completed',
    )
  })

  it('the hook deliveries (which name every user’s uploads) are an admin’s: a user’s query or retry is FORBIDDEN', async () => {
    const asked = await gql(alice, '{ hookDeliveries { pendingCount } }')
    expect(asked.body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN')
    const retried = await gql(alice, 'mutation { retryHookDelivery(eventId: "any") { eventId } }')
    expect(retried.body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN')
    // An admin is let through (this server has no hooks: there is nothing to retry, which is not FORBIDDEN).
    const admin = await gql(root, 'mutation { retryHookDelivery(eventId: "any") { eventId } }')
    expect(admin.body.errors?.[0]?.extensions?.code).not.toBe('FORBIDDEN')
  })
})

describe('upctl', () => {
  it('--token shows and reaches only your own uploads', async () => {
    const mine = await completedUpload(alice)
    const theirs = await completedUpload(bob)
    const env = { UPCTL_SERVER: server.url, API_TOKEN: undefined, UPCTL_STATE: `${server.dir}/.upctl-state` }
    const listed = await upctl(['ls', '--json', '--token', alice], env)
    expect(listed.code).toBe(0)
    const ids = JSON.stringify(ndjson(listed.stdout))
    expect(ids).toContain(mine)
    expect(ids).not.toContain(theirs)
    const other = await upctl(['status', theirs, '--token', alice], env)
    const missing = await upctl(['status', MISSING, '--token', alice], env)
    expect(other.code).not.toBe(0)
    expect(other.code).toBe(missing.code)
    expect(other.stderr.replaceAll(theirs, '<id>')).toBe(missing.stderr.replaceAll(MISSING, '<id>'))
    const anonymous = await upctl(['ls'], env)
    expect(anonymous.code).not.toBe(0)
    expect(anonymous.stderr).toMatch(/token/i)
  })
})
