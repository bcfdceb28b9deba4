import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bytes, type GraphQLResponse } from './support/clients.js'
import { listStorage, startServer, type TestServer } from './support/server.js'
import {
  makeKey,
  mintToken,
  serveJwks,
  AUDIENCE,
  ISSUER,
  type JwksEndpoint,
  type TestKey,
} from './support/tokens.js'
import { tusCreate } from './support/tus.js'
import { openRequest, partHead } from './support/raw.js'
import { waitFor } from './support/clients.js'
import { startHookReceiver } from './support/hook-receiver.js'

/*
 * Per-user quotas (issue 24) on one real server: each refused one over, before anything is stored, in each
 * protocol's words: 413 stored bytes, 429 running uploads, 422 speed.
 */

let jwks: JwksEndpoint
let key: TestKey
let server: TestServer
let users = 0

beforeAll(async () => {
  key = await makeKey('ES256')
  jwks = await serveJwks([key])
  server = await startServer({
    AUTH_JWKS_URL: jwks.url,
    AUTH_ISSUER: ISSUER,
    AUTH_AUDIENCE: AUDIENCE,
    AUTH_LINK_SECRET: 'l'.repeat(32),
    // The defaults; each user below overrides them with the upload_quota claim.
    AUTH_QUOTA_SPEED: '5000',
  })
})

afterAll(async () => {
  await server?.stop()
  await jwks?.close()
})

/** A fresh user with these quotas. */
const user = (quota: Record<string, number>) =>
  mintToken(key, `user-${++users}`, { claims: { upload_quota: quota } })

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

async function restUpload(token: string, size: number, speed?: number) {
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

async function gql<T = Record<string, unknown>>(token: string, query: string, variables = {}) {
  const response = await fetch(`${server.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json', ...bearer(token) },
    body: JSON.stringify({ query, variables }),
  })
  return (await response.json()) as GraphQLResponse<T>
}

const usage = async (token: string) =>
  (
    await gql<{ me: { usage: { bytesStored: number; running: number } } }>(
      token,
      '{ me { usage { bytesStored running } } }',
    )
  ).data?.me.usage

describe('stored bytes', () => {
  it('tus: one byte over is 413 at creation, nothing recorded or stored; exactly the quota is taken', async () => {
    const token = await user({ bytes: 1000, speed: 0 })
    const before = await listStorage(server.dir)
    const over = await tusCreate(server.url, 1001, { filename: 'a' }, bearer(token))
    expect(over.status).toBe(413)
    expect(over.body).toMatch(/over your quota of 1000/)
    expect(await usage(token)).toEqual({ bytesStored: 0, running: 0 })
    expect((await listStorage(server.dir)).staging).toEqual(before.staging)
    const exact = await tusCreate(server.url, 1000, { filename: 'a' }, bearer(token))
    expect(exact.status).toBe(201)
    expect(await usage(token)).toEqual({ bytesStored: 1000, running: 1 })
    expect((await tusCreate(server.url, 1, { filename: 'b' }, bearer(token))).status).toBe(413)
  })

  it('multipart: a body over the quota is 413 before it is stored', async () => {
    const token = await user({ bytes: 1000, speed: 0 })
    const before = await listStorage(server.dir)
    const refused = await restUpload(token, 2000)
    expect(refused.status).toBe(413)
    expect(refused.body.detail).toMatch(/quota/)
    const after = await listStorage(server.dir)
    expect(after.stored).toEqual(before.stored)
    expect(await usage(token)).toEqual({ bytesStored: 0, running: 0 })
  })
})

describe('multipart bodies still arriving', () => {
  /** A multipart upload whose request declares `length` bytes, sent up to its first `sent` file bytes. */
  function arriving(token: string, length: number, sent: number) {
    const boundary = 'b0undary'
    const head = partHead('file', 'arriving.bin', boundary)
    const request = openRequest(
      server.url,
      `POST /api/upload?speed=0 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\n` +
        `Content-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: ${length}\r\n\r\n`,
    )
    request.write(Buffer.concat([Buffer.from(head), bytes(sent)]))
    return request
  }

  it('one still arriving holds its Content-Length: a second that would go over is 413, nothing stored', async () => {
    const token = await user({ bytes: 10_000, speed: 0 })
    const first = arriving(token, 6_000, 1_000)
    try {
      await waitFor(async () => (await usage(token))?.running === 1)
      expect((await usage(token))?.bytesStored).toBe(6_000)
      const before = await listStorage(server.dir)
      const second = await restUpload(token, 5_000)
      expect(second.status).toBe(413)
      expect(second.body.detail).toMatch(/quota/)
      expect((await listStorage(server.dir)).stored).toEqual(before.stored)
    } finally {
      first.end()
    }
    // Gone with its request: the room is the user's again.
    await waitFor(async () => (await usage(token))?.running === 0)
    expect((await restUpload(token, 5_000)).status).toBe(200)
  })

  it('a chunked body (no Content-Length) under a stored-bytes quota is 411 before a byte is read', async () => {
    const token = await user({ bytes: 10_000, speed: 0 })
    const boundary = 'b0undary'
    const request = openRequest(
      server.url,
      `POST /api/upload?speed=0 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\n` +
        `Content-Type: multipart/form-data; boundary=${boundary}\r\nTransfer-Encoding: chunked\r\n\r\n`,
    )
    const first = Buffer.concat([Buffer.from(partHead('file', 'chunked.bin', boundary)), bytes(100)])
    request.write(`${first.length.toString(16)}\r\n`)
    request.write(first)
    request.write('\r\n')
    try {
      const answer = await request.answer
      expect(answer.status).toBe(411)
      expect(JSON.parse(answer.body)).toEqual({ detail: expect.stringMatching(/Content-Length/) })
      expect(await usage(token)).toEqual({ bytesStored: 0, running: 0 })
      // Nothing of it was staged (other tests' uploads may still be finishing beside it).
      expect((await listStorage(server.dir)).staging.filter((name) => name.endsWith('.incoming'))).toEqual([])
    } finally {
      request.end()
    }
  })
})

describe('running uploads', () => {
  it('one over the quota is 429 (tus and REST), and frees up when one ends', async () => {
    const token = await user({ running: 1, speed: 0 })
    const first = await tusCreate(server.url, 100, { filename: 'a' }, bearer(token))
    expect(first.status).toBe(201)
    const second = await tusCreate(server.url, 100, { filename: 'b' }, bearer(token))
    expect(second.status).toBe(429)
    expect(second.body).toMatch(/uploads running/)
    expect((await restUpload(token, 10)).status).toBe(429)
    expect(
      (
        await fetch(first.location, {
          method: 'DELETE',
          headers: { ...bearer(token), 'tus-resumable': '1.0.0' },
        })
      ).status,
    ).toBe(204)
    expect((await tusCreate(server.url, 100, { filename: 'c' }, bearer(token))).status).toBe(201)
  })
})

describe('admissions racing', () => {
  it('multipart: of many uploads at once by a user with running quota 2, exactly 2 are taken, the rest 429', async () => {
    const token = await user({ running: 2, speed: 0 })
    // Slow, so the two taken are still running while the rest ask.
    const answers = await Promise.all(Array.from({ length: 6 }, () => restUpload(token, 1000, 100)))
    expect(answers.map((answer) => answer.status).sort()).toEqual([200, 200, 429, 429, 429, 429])
    expect(await usage(token)).toEqual({ bytesStored: 2000, running: 2 })
  })
})

describe('resuming', () => {
  it('a paused upload resumed with one running already is 429; a speed over the cap is 422', async () => {
    const token = await user({ running: 1, speed: 5000 })
    const slow = await restUpload(token, 50_000, 1000)
    expect(slow.status).toBe(200)
    const id = slow.body.upload_id as string
    const paused = await gql(token, 'mutation P($id: ID!) { pauseUpload(id: $id) { status } }', { id })
    expect(paused.data).toEqual({ pauseUpload: { status: 'PAUSED' } })
    const other = await tusCreate(server.url, 10, { filename: 'b' }, bearer(token))
    expect(other.status).toBe(201)
    const resumed = await gql(token, 'mutation R($id: ID!) { resumeUpload(id: $id) { status } }', { id })
    expect(resumed.errors?.[0]?.extensions?.code).toBe('TOO_MANY_UPLOADS')
    const fast = await gql(token, 'mutation R($id: ID!) { resumeUpload(id: $id, speed: 6000) { status } }', {
      id,
    })
    expect(fast.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT')
  })

  it('adds no stored bytes: a user now over a lowered stored-bytes quota still resumes their paused upload', async () => {
    const sub = `user-${++users}`
    const before = await mintToken(key, sub, { claims: { upload_quota: { bytes: 100_000 } } })
    const slow = await restUpload(before, 50_000, 1000)
    const id = slow.body.upload_id as string
    const paused = await gql(before, 'mutation P($id: ID!) { pauseUpload(id: $id) { status } }', { id })
    expect(paused.data).toEqual({ pauseUpload: { status: 'PAUSED' } })
    // The same user, their quota lowered below what they hold.
    const after = await mintToken(key, sub, { claims: { upload_quota: { bytes: 10_000 } } })
    const resumed = await gql(after, 'mutation R($id: ID!) { resumeUpload(id: $id) { status } }', { id })
    expect(resumed.data).toEqual({ resumeUpload: { status: 'IN_PROGRESS' } })
    await gql(after, 'mutation C($id: ID!) { cancelUpload(id: $id) { status } }', { id })
  })
})

describe('speed', () => {
  it('a speed over the cap is 422 on REST, GraphQL and tus; no speed gets the cap', async () => {
    const token = await user({ speed: 5000 })
    const rest = await restUpload(token, 10, 5001)
    expect(rest.status).toBe(422)
    expect(rest.body.detail).toMatch(/over your quota: at most 5000/)
    expect((await restUpload(token, 10, 0)).status).toBe(422)
    const tus = await tusCreate(server.url, 10, { filename: 'a', speed: '5001' }, bearer(token))
    expect(tus.status).toBe(422)
    const capped = await restUpload(token, 10)
    expect(capped.status).toBe(200)
    expect(capped.body.speed).toBe(5000)
    const id = capped.body.upload_id as string
    const faster = await gql(token, 'mutation S($id: ID!) { setSpeed(id: $id, speed: 6000) { id } }', { id })
    expect(faster.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT')
  })
})

describe('a speed a pre-create hook answers', () => {
  it('is held to its owner’s cap on every transport, as a speed the caller did not name is', async () => {
    const receiver = await startHookReceiver()
    receiver.answerWith((payload) =>
      payload.type === 'pre-create' ? { status: 200, body: { speed: 50_000 } } : undefined,
    )
    const own = await startServer({
      AUTH_JWKS_URL: jwks.url,
      AUTH_ISSUER: ISSUER,
      AUTH_AUDIENCE: AUDIENCE,
      AUTH_LINK_SECRET: 'l'.repeat(32),
      AUTH_QUOTA_SPEED: '5000',
      HOOKS_URL: receiver.url,
      HOOKS_SECRET: receiver.secret,
      HOOKS_EVENTS: 'pre-create',
    })
    try {
      const token = await mintToken(key, 'hooked')
      const form = new FormData()
      form.append('file', new Blob([bytes(100)]), 'rest.bin')
      const rest = await fetch(`${own.url}/api/upload`, {
        method: 'POST',
        headers: bearer(token),
        body: form,
      })
      expect(rest.status).toBe(200)
      expect(((await rest.json()) as { speed: number }).speed).toBe(5000)
      const tus = await tusCreate(own.url, 100, { filename: 'tus.bin' }, bearer(token))
      expect(tus.status).toBe(201)
      const status = await fetch(`${own.url}/api/upload/${tus.id}/status`, { headers: bearer(token) })
      expect(((await status.json()) as { target_speed: number }).target_speed).toBe(5000)
    } finally {
      await own.stop()
      await receiver.stop()
    }
  })
})
