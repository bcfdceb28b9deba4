import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { readAuthConfig, type JwtAuth } from '../src/auth/config.js'
import { OPERATOR } from '../src/auth/principal.js'
import { createVerifier, type Verifier } from '../src/auth/jwt.js'
import { createAuthenticator } from '../src/auth/verify.js'
import { ServiceError } from '../src/errors.js'
import {
  AUDIENCE,
  ISSUER,
  makeKey,
  mintHsToken,
  mintToken,
  serveJwks,
  unsignedToken,
  type JwksEndpoint,
  type TestKey,
} from './support/tokens.js'

const LINK_SECRET = 'a-link-secret-of-at-least-32-bytes!'
const HS_SECRET = 'an-hmac-secret-of-at-least-32-bytes!'

/** The configuration loadConfig would make of these AUTH_* settings. */
function authFrom(env: Record<string, string>): JwtAuth {
  const auth = readAuthConfig({
    AUTH_ISSUER: ISSUER,
    AUTH_AUDIENCE: AUDIENCE,
    AUTH_LINK_SECRET: LINK_SECRET,
    ...env,
  })
  if (!auth) throw new Error('auth should be on')
  return auth
}

/** The refusal `promise` ends in: its code and message. */
async function refusalOf(promise: Promise<unknown>): Promise<{ code: string; message: string }> {
  const error: unknown = await promise.then(
    () => new Error('accepted'),
    (refused: unknown) => refused,
  )
  if (!(error instanceof ServiceError)) throw error
  return { code: error.code, message: error.message }
}

describe('verifying bearer JWTs against a JWKS served over HTTP', () => {
  let key: TestKey
  let otherKey: TestKey
  let jwks: JwksEndpoint
  let verifier: Verifier

  beforeAll(async () => {
    key = await makeKey('ES256')
    otherKey = await makeKey('ES256')
    jwks = await serveJwks([key])
    verifier = createVerifier(
      authFrom({ AUTH_JWKS_URL: jwks.url, AUTH_QUOTA_BYTES: '1G', AUTH_QUOTA_RUNNING: '2' }),
    )
  })
  afterAll(() => jwks.close())
  afterEach(() => jwks.publish([key]))

  it("takes a good token: its sub is the owner, its scopes and the configured quotas are the principal's", async () => {
    const token = await mintToken(key, 'alice', { claims: { scope: 'uploads:read' } })
    expect(await verifier.verify(token)).toEqual({
      sub: 'alice',
      scopes: { read: true, write: false, admin: false },
      quotas: { bytes: 1024 ** 3, running: 2, speed: 0 },
    })
  })

  it('reads scopes from scp as a list, and quotas from the upload_quota claim over the defaults', async () => {
    const token = await mintToken(key, 'bob', {
      claims: {
        scope: undefined,
        scp: ['uploads:write', 'uploads:admin'],
        upload_quota: { speed: 4096, running: 5 },
      },
    })
    expect(await verifier.verify(token)).toEqual({
      sub: 'bob',
      scopes: { read: false, write: true, admin: true },
      quotas: { bytes: 1024 ** 3, running: 5, speed: 4096 },
    })
  })

  it.each([
    ['expired', () => mintToken(key, 'alice', { expiresIn: -120 }), 'The token has expired'],
    [
      'not yet valid',
      () => mintToken(key, 'alice', { notBeforeIn: 120 }),
      'The token is not valid yet (nbf)',
    ],
    [
      'for another audience',
      () => mintToken(key, 'alice', { claims: { aud: 'another-service' } }),
      'The token is for another audience (aud)',
    ],
    [
      'from another issuer',
      () => mintToken(key, 'alice', { claims: { iss: 'https://evil.test' } }),
      'The token is from another issuer (iss)',
    ],
    [
      'alg none',
      () => Promise.resolve(unsignedToken('alice')),
      "The token's algorithm (alg) is not accepted",
    ],
    [
      'alg none naming a published kid',
      () => Promise.resolve(unsignedToken('alice', key.kid)),
      "The token's algorithm (alg) is not accepted",
    ],
    [
      'signed by another key under a published kid',
      () => mintToken({ ...otherKey, kid: key.kid }, 'alice'),
      "The token's signature does not verify",
    ],
    ['without sub', () => mintToken(key, undefined), 'The token has no sub claim'],
    ['without exp', () => mintToken(key, 'alice', { expiresIn: null }), 'The token has no exp claim'],
    [
      'with a malformed quota claim',
      () => mintToken(key, 'alice', { claims: { upload_quota: { bytes: -1 } } }),
      "The token's upload_quota.bytes must be a whole number, 0 for no limit",
    ],
    ['not a JWT at all', () => Promise.resolve('not-a-jwt'), 'The token is not a well-formed signed JWT'],
  ])('refuses a token %s with UNAUTHENTICATED saying why', async (_name, make, message) => {
    expect(await refusalOf(verifier.verify(await make()))).toEqual({ code: 'UNAUTHENTICATED', message })
  })

  it('allows the configured clock skew on exp, and no more', async () => {
    // AUTH_CLOCK_SKEW defaults to 30 s: expired 10 s ago passes, 60 s ago does not.
    await expect(verifier.verify(await mintToken(key, 'alice', { expiresIn: -10 }))).resolves.toMatchObject({
      sub: 'alice',
    })
    expect(await refusalOf(verifier.verify(await mintToken(key, 'alice', { expiresIn: -60 })))).toMatchObject(
      {
        code: 'UNAUTHENTICATED',
      },
    )
    const strict = createVerifier(authFrom({ AUTH_JWKS_URL: jwks.url, AUTH_CLOCK_SKEW: '0' }))
    expect(await refusalOf(strict.verify(await mintToken(key, 'alice', { expiresIn: -10 })))).toMatchObject({
      message: 'The token has expired',
    })
  })

  it('fetches the key set again on an unknown kid, once, then refuses', async () => {
    const fresh = createVerifier(authFrom({ AUTH_JWKS_URL: jwks.url }), { jwksCooldownMs: 0 })
    await fresh.verify(await mintToken(key, 'alice'))
    const before = jwks.fetches
    const stranger = await makeKey('ES256')
    expect(await refusalOf(fresh.verify(await mintToken(stranger, 'alice')))).toEqual({
      code: 'UNAUTHENTICATED',
      message: "The token's signing key (kid) is not in the key set",
    })
    expect(jwks.fetches).toBe(before + 1)
  })

  it('takes a token signed by a key rotated in after the set was cached, by fetching the set again', async () => {
    const fresh = createVerifier(authFrom({ AUTH_JWKS_URL: jwks.url }), { jwksCooldownMs: 0 })
    await fresh.verify(await mintToken(key, 'alice'))
    const rotated = await makeKey('RS256')
    jwks.publish([rotated])
    await expect(fresh.verify(await mintToken(rotated, 'carol'))).resolves.toMatchObject({ sub: 'carol' })
    // The old key is gone from the set now: its tokens are refused.
    expect(await refusalOf(fresh.verify(await mintToken(key, 'alice')))).toMatchObject({
      code: 'UNAUTHENTICATED',
    })
  })

  it('within the cooldown after a fetch, a flood of unknown kids fetches nothing more', async () => {
    const fresh = createVerifier(authFrom({ AUTH_JWKS_URL: jwks.url }))
    await fresh.verify(await mintToken(key, 'alice'))
    const before = jwks.fetches
    const stranger = await makeKey('ES256')
    for (let i = 0; i < 5; i += 1) {
      expect(await refusalOf(fresh.verify(await mintToken(stranger, 'alice')))).toMatchObject({
        code: 'UNAUTHENTICATED',
      })
    }
    expect(jwks.fetches).toBe(before)
  })

  it('answers UNAVAILABLE, not UNAUTHENTICATED, when the key set cannot be fetched', async () => {
    const gone = await serveJwks([key])
    const url = gone.url
    await gone.close()
    const orphan = createVerifier(authFrom({ AUTH_JWKS_URL: url }))
    expect(await refusalOf(orphan.verify(await mintToken(key, 'alice')))).toMatchObject({
      code: 'UNAVAILABLE',
    })
  })

  it('never writes a token to the log, though it logs each refusal', async () => {
    const tokens = [
      await mintToken(key, 'alice', { expiresIn: -120 }),
      await mintToken(key, 'alice', { claims: { aud: 'x' } }),
      await mintToken(await makeKey('ES256'), 'alice'),
      unsignedToken('alice', key.kid),
    ]
    const written: string[] = []
    const write = process.stdout.write.bind(process.stdout)
    process.stdout.write = ((chunk: string | Uint8Array) => {
      written.push(String(chunk))
      return true
    }) as typeof process.stdout.write
    try {
      const door = await createAuthenticator({
        auth: authFrom({ AUTH_JWKS_URL: jwks.url }),
        apiToken: undefined,
      })
      for (const token of tokens) await refusalOf(door.authenticate(`Bearer ${token}`))
    } finally {
      process.stdout.write = write
    }
    const log = written.join('')
    expect(log.match(/"auth\.refused"/g)?.length).toBe(tokens.length)
    for (const token of tokens) {
      for (const part of token.split('.').filter((item) => item.length > 8)) expect(log).not.toContain(part)
    }
  })
})

describe('a fixed key, API_TOKEN and no auth at all', () => {
  it('checks tokens against AUTH_JWT_PUBLIC_KEY, and refuses an HS256 token keyed by that public key (alg confusion)', async () => {
    const key = await makeKey('RS256')
    const verifier = createVerifier(authFrom({ AUTH_JWT_PUBLIC_KEY: key.publicPem }))
    await expect(verifier.verify(await mintToken(key, 'alice'))).resolves.toMatchObject({ sub: 'alice' })
    // A token in an algorithm of another key type is refused as such, before any key is tried.
    expect(await refusalOf(verifier.verify(await mintToken(await makeKey('ES256'), 'alice')))).toEqual({
      code: 'UNAUTHENTICATED',
      message: "The token's algorithm (alg) is not accepted",
    })
    const confused = await mintHsToken(key.publicPem, 'mallory', { scope: 'uploads:admin' })
    expect(await refusalOf(verifier.verify(confused))).toEqual({
      code: 'UNAUTHENTICATED',
      message: "The token's algorithm (alg) is not accepted",
    })
  })

  it('checks HS256 tokens against AUTH_JWT_SECRET, and refuses one made with another secret', async () => {
    const verifier = createVerifier(authFrom({ AUTH_JWT_SECRET: HS_SECRET }))
    await expect(verifier.verify(await mintHsToken(HS_SECRET, 'alice'))).resolves.toMatchObject({
      sub: 'alice',
    })
    expect(await refusalOf(verifier.verify(await mintHsToken(`${HS_SECRET}?`, 'alice')))).toEqual({
      code: 'UNAUTHENTICATED',
      message: "The token's signature does not verify",
    })
  })

  it('takes API_TOKEN as the operator (an admin without limits) beside JWTs, and asks anyone else for a token', async () => {
    const apiToken = 'an-api-token-0123456789'
    const door = await createAuthenticator({ auth: authFrom({ AUTH_JWT_SECRET: HS_SECRET }), apiToken })
    expect(door.required).toBe(true)
    expect(await door.authenticate(`Bearer ${apiToken}`)).toEqual(OPERATOR)
    await expect(door.authenticate(`Bearer ${await mintHsToken(HS_SECRET, 'alice')}`)).resolves.toMatchObject(
      { sub: 'alice' },
    )
    expect(await refusalOf(door.authenticate(undefined))).toEqual({
      code: 'UNAUTHENTICATED',
      message: 'A bearer token is required (Authorization: Bearer <token>)',
    })
    expect(await refusalOf(door.authenticate('Basic abc'))).toMatchObject({ code: 'UNAUTHENTICATED' })
  })

  it('with API_TOKEN alone, takes it and refuses any other bearer; with nothing set, everyone is the operator', async () => {
    const apiToken = 'an-api-token-0123456789'
    const tokenOnly = await createAuthenticator({ auth: undefined, apiToken })
    expect(await tokenOnly.authenticate(`Bearer ${apiToken}`)).toEqual(OPERATOR)
    expect(await refusalOf(tokenOnly.authenticate(`Bearer ${apiToken}x`))).toMatchObject({
      code: 'UNAUTHENTICATED',
    })
    const open = await createAuthenticator({ auth: undefined, apiToken: undefined })
    expect(open.required).toBe(false)
    expect(await open.authenticate(undefined)).toEqual(OPERATOR)
  })
})
