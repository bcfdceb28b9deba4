import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawnServer, type ChildServer } from './support/child.js'
import { startRedis, type TestRedis } from './support/redis.js'
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

/*
 * Per-user quotas across two instances sharing Redis (issue 24): what one instance admitted counts at the
 * other. And, from the processes' own output, no log line ever holds a token.
 */

let redis: TestRedis
let jwks: JwksEndpoint
let key: TestKey
let dir: string
let a: ChildServer
let b: ChildServer
const tokens: string[] = []

beforeAll(async () => {
  redis = await startRedis()
  key = await makeKey('ES256')
  jwks = await serveJwks([key])
  dir = await mkdtemp(join(tmpdir(), 'uploads-auth-cluster-'))
  const env = {
    REDIS_URL: redis.url,
    AUTH_JWKS_URL: jwks.url,
    AUTH_ISSUER: ISSUER,
    AUTH_AUDIENCE: AUDIENCE,
    AUTH_LINK_SECRET: 'l'.repeat(32),
    LOG_LEVEL: 'debug',
  }
  ;[a, b] = await Promise.all([
    spawnServer(dir, { ...env, INSTANCE_ID: 'node-a' }),
    spawnServer(dir, { ...env, INSTANCE_ID: 'node-b' }),
  ])
})

afterAll(async () => {
  for (const instance of [a, b]) instance?.child.kill('SIGKILL')
  await Promise.all([a, b].map((instance) => instance?.exited))
  await jwks?.close()
  await redis?.stop()
  await rm(dir, { recursive: true, force: true })
})

const user = async (sub: string, quota: Record<string, number>) => {
  const token = await mintToken(key, sub, { claims: { upload_quota: quota } })
  tokens.push(token)
  return { authorization: `Bearer ${token}` }
}

/** The uploads `headers`' user may list, at `url`. */
const listed = async (url: string, headers: Record<string, string>) => {
  const response = await fetch(`${url}/api/uploads`, { headers })
  return ((await response.json()) as { uploads: { upload_id: string }[] }).uploads.map((u) => u.upload_id)
}

/** `count` tus creations of `size` bytes by one user, all at once, alternating between the two instances. */
const racing = (count: number, size: number, headers: Record<string, string>) =>
  Promise.all(
    Array.from({ length: count }, (_, i) =>
      tusCreate([a, b][i % 2]!.url, size, { filename: `r${i}` }, headers),
    ),
  )

describe('admissions racing at two instances', () => {
  // An instance loads tus and fetches the key set on its first such request: done first, so the creations
  // below do race rather than queue behind that.
  beforeAll(async () => {
    const headers = await user('warm', {})
    for (const instance of [a, b])
      expect((await tusCreate(instance.url, 1, { filename: 'w' }, headers)).status).toBe(201)
  })

  it('running quota N: of many creations at once, spread over both instances, exactly N are admitted, the rest 429 with nothing stored', async () => {
    const headers = await user('rita', { running: 3 })
    const answers = await racing(16, 10, headers)
    const statuses = answers.map((answer) => answer.status).sort()
    expect(statuses).toEqual([...Array(3).fill(201), ...Array(13).fill(429)])
    for (const answer of answers.filter((x) => x.status === 429))
      expect(answer.body).toMatch(/uploads running/)
    const admitted = answers.filter((x) => x.status === 201).map((x) => x.id)
    for (const url of [a.url, b.url]) expect((await listed(url, headers)).sort()).toEqual(admitted.sort())
  })

  it('bytes quota: of many creations at once over both instances, exactly those that fit are admitted, the rest 413 with nothing stored', async () => {
    const headers = await user('sam', { bytes: 900 })
    const answers = await racing(16, 300, headers)
    const statuses = answers.map((answer) => answer.status).sort()
    expect(statuses).toEqual([...Array(3).fill(201), ...Array(13).fill(413)])
    const admitted = answers.filter((x) => x.status === 201).map((x) => x.id)
    for (const url of [a.url, b.url]) expect((await listed(url, headers)).sort()).toEqual(admitted.sort())
  })

  it('a creation that cannot have its owner’s lock in time is 503, saying nothing was stored, and nothing is', async () => {
    const headers = await user('tess', { running: 5 })
    // As if another instance were admitting tess's upload and had stalled (its lock runs out by itself).
    const client = redis.client()
    await client.set('uploads:x:owner:tess', 'elsewhere:1', 'PX', 60_000)
    try {
      const answer = await tusCreate(b.url, 10, { filename: 'late' }, headers)
      expect(answer.status).toBe(503)
      expect(answer.body).toMatch(/nothing was stored/)
      expect(await listed(a.url, headers)).toEqual([])
    } finally {
      await client.del('uploads:x:owner:tess')
    }
    expect((await tusCreate(b.url, 10, { filename: 'now' }, headers)).status).toBe(201)
  })
})

describe('quotas across instances', () => {
  it('stored bytes: what one instance admitted counts at the other; one byte over is 413', async () => {
    const headers = await user('carol', { bytes: 1000 })
    expect((await tusCreate(a.url, 600, { filename: 'a' }, headers)).status).toBe(201)
    const over = await tusCreate(b.url, 401, { filename: 'b' }, headers)
    expect(over.status).toBe(413)
    expect((await tusCreate(b.url, 400, { filename: 'b' }, headers)).status).toBe(201)
  })

  it('running uploads: one over, at the other instance, is 429', async () => {
    const headers = await user('dave', { running: 1 })
    expect((await tusCreate(a.url, 10, { filename: 'a' }, headers)).status).toBe(201)
    expect((await tusCreate(b.url, 10, { filename: 'b' }, headers)).status).toBe(429)
  })

  it('speed over the cap is 422 at every instance', async () => {
    const headers = await user('erin', { speed: 5000 })
    for (const url of [a.url, b.url])
      expect((await tusCreate(url, 10, { filename: 'a', speed: '5001' }, headers)).status).toBe(422)
  })

  it('no log line of either instance holds a token: valid, expired and malformed ones, on REST, GraphQL and tus', async () => {
    const expired = await mintToken(key, 'mallory', { expiresIn: -60 })
    const otherKey = await mintToken(await makeKey('ES256'), 'mallory')
    const malformed = [
      'not-a-jwt-but-a-long-secret-looking-string',
      `${expired.split('.')[0]}.${'x'.repeat(40)}`,
      `${otherKey.split('.').slice(0, 2).join('.')}.${'A'.repeat(86)}`,
    ]
    const valid = await mintToken(key, 'victor')
    const refused = [expired, otherKey, ...malformed]
    tokens.push(valid, ...refused)
    const asks = (token: string, url: string) => {
      const authorization = `Bearer ${token}`
      return [
        fetch(`${url}/api/uploads`, { headers: { authorization } }),
        fetch(`${url}/graphql`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization },
          body: JSON.stringify({ query: '{ me { sub } }' }),
        }),
        tusCreate(url, 10, { filename: 'l' }, { authorization }),
      ]
    }
    for (const url of [a.url, b.url]) {
      for (const token of refused)
        for (const answer of await Promise.all(asks(token, url))) expect([401, 200]).toContain(answer.status) // GraphQL says 401 in its body's errors
      for (const answer of await Promise.all(asks(valid, url))) expect([200, 201]).toContain(answer.status)
    }
    for (const instance of [a, b]) {
      const output = instance.output()
      expect(output).toMatch(/auth\.refused/)
      for (const token of tokens) {
        expect(output).not.toContain(token)
        // Nor any part of it whole, nor any 16 characters of its signature (what makes it a credential).
        for (const part of token.split('.').filter((item) => item.length > 8))
          expect(output).not.toContain(part)
        const signature = token.split('.')[2] ?? token
        for (let i = 0; i + 16 <= signature.length; i++)
          expect(output).not.toContain(signature.slice(i, i + 16))
      }
    }
  })
})
