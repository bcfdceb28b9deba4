import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from '../src/config.js'
import { makeKey } from './support/tokens.js'

const SECRET = 's'.repeat(32)
const base = { AUTH_ISSUER: 'https://issuer.test', AUTH_AUDIENCE: 'gateway' }

describe('auth settings', () => {
  it('leaves auth off when no AUTH_* is set, so nothing changes', () => {
    expect(loadConfig({}).auth).toBeUndefined()
    expect(loadConfig({ API_TOKEN: 'x'.repeat(16) }).auth).toBeUndefined()
  })

  it('reads a secret, its algorithms, the clock skew, the quota defaults and claim name', () => {
    const auth = loadConfig({
      ...base,
      AUTH_JWT_SECRET: SECRET,
      AUTH_CLOCK_SKEW: '5s',
      AUTH_QUOTA_BYTES: '2G',
      AUTH_QUOTA_RUNNING: '3',
      AUTH_QUOTA_SPEED: '1MB/s',
      AUTH_QUOTA_CLAIM: 'https://example.com/quota',
    }).auth
    expect(auth).toMatchObject({
      keys: { kind: 'secret' },
      issuer: 'https://issuer.test',
      audience: 'gateway',
      algorithms: ['HS256'],
      clockSkewSeconds: 5,
      quotas: { bytes: 2 * 1024 ** 3, running: 3, speed: 1024 ** 2 },
      quotaClaim: 'https://example.com/quota',
    })
    // Derived from the secret, yet not the secret itself.
    expect(Buffer.from(auth?.linkKey ?? []).toString()).not.toBe(SECRET)
    expect(auth?.linkKey.length).toBe(32)
  })

  it('defaults to 30 s of clock skew, the upload_quota claim and no quota limits', () => {
    expect(loadConfig({ ...base, AUTH_JWT_SECRET: SECRET }).auth).toMatchObject({
      clockSkewSeconds: 30,
      quotaClaim: 'upload_quota',
      quotas: { bytes: 0, running: 0, speed: 0 },
    })
  })

  it('reads a PEM public key, with its line breaks written as \\n', async () => {
    const { publicPem } = await makeKey('RS256')
    const env = {
      ...base,
      AUTH_JWT_PUBLIC_KEY: publicPem.trim().replaceAll('\n', '\\n'),
      AUTH_LINK_SECRET: SECRET,
    }
    expect(loadConfig(env).auth?.keys).toMatchObject({ kind: 'public-key' })
  })

  it("takes only the algorithms a fixed public key's type can check", async () => {
    const rsa = { ...base, AUTH_JWT_PUBLIC_KEY: (await makeKey('RS256')).publicPem, AUTH_LINK_SECRET: SECRET }
    expect(loadConfig(rsa).auth?.algorithms).toEqual(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'])
    expect(() => loadConfig({ ...rsa, AUTH_ALGORITHMS: 'ES256' })).toThrow(/^AUTH_ALGORITHMS /)
    const ec = { ...rsa, AUTH_JWT_PUBLIC_KEY: (await makeKey('ES256')).publicPem }
    expect(loadConfig(ec).auth?.algorithms).toEqual(['ES256'])
  })

  it.each([
    [{ AUTH_JWT_SECRET: SECRET, AUTH_JWKS_URL: 'https://issuer.test/jwks' }, 'AUTH_JWKS_URL'],
    [{ AUTH_JWT_SECRET: 'short' }, 'AUTH_JWT_SECRET'],
    [{ AUTH_JWKS_URL: 'ftp://issuer.test/jwks', AUTH_LINK_SECRET: SECRET }, 'AUTH_JWKS_URL'],
    [{ AUTH_JWT_PUBLIC_KEY: 'not a key', AUTH_LINK_SECRET: SECRET }, 'AUTH_JWT_PUBLIC_KEY'],
    [{ AUTH_JWKS_URL: 'https://issuer.test/jwks' }, 'AUTH_LINK_SECRET'],
    [
      { AUTH_JWKS_URL: 'https://issuer.test/jwks', AUTH_LINK_SECRET: SECRET, AUTH_ALGORITHMS: 'HS256' },
      'AUTH_ALGORITHMS',
    ],
    [{ AUTH_JWT_SECRET: SECRET, AUTH_ALGORITHMS: 'RS256' }, 'AUTH_ALGORITHMS'],
    [{ AUTH_JWT_SECRET: SECRET, AUTH_ALGORITHMS: 'none' }, 'AUTH_ALGORITHMS'],
    [{ AUTH_JWT_SECRET: SECRET, AUTH_CLOCK_SKEW: 'a while' }, 'AUTH_CLOCK_SKEW'],
    [{ AUTH_JWT_SECRET: SECRET, AUTH_QUOTA_SPEED: '10Mb' }, 'AUTH_QUOTA_SPEED'],
    [{ AUTH_JWT_SECRET: SECRET, AUTH_QUOTA_RUNNING: 'two' }, 'AUTH_QUOTA_RUNNING'],
    [{ AUTH_JWT_SECRET: SECRET, AUTH_QUOTA_CLAIM: 'a claim' }, 'AUTH_QUOTA_CLAIM'],
  ])('%o stops start-up with a message naming %s', (env, name) => {
    expect(() => loadConfig({ ...base, ...env })).toThrow(ConfigError)
    expect(() => loadConfig({ ...base, ...env })).toThrow(new RegExp(`^${name} `))
  })

  it('needs AUTH_ISSUER and AUTH_AUDIENCE with a key, and a key with any other AUTH_* setting', () => {
    expect(() => loadConfig({ AUTH_JWT_SECRET: SECRET, AUTH_AUDIENCE: 'gateway' })).toThrow(/^AUTH_ISSUER /)
    expect(() => loadConfig({ AUTH_JWT_SECRET: SECRET, AUTH_ISSUER: 'https://issuer.test' })).toThrow(
      /^AUTH_AUDIENCE /,
    )
    expect(() => loadConfig({ AUTH_QUOTA_BYTES: '1G' })).toThrow(/^AUTH_QUOTA_BYTES needs a key/)
  })
})
