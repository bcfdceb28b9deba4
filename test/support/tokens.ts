import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import {
  exportJWK,
  exportSPKI,
  generateKeyPair,
  SignJWT,
  UnsecuredJWT,
  type JWK,
  type JWTPayload,
} from 'jose'

/**
 * Tokens as an identity provider would mint them, signed by keys these tests make; and that provider's JWKS
 * endpoint, served for real over loopback HTTP, whose keys can be rotated while a server uses it.
 */

export const ISSUER = 'https://issuer.test'
export const AUDIENCE = 'upload-gateway'

export interface TestKey {
  kid: string
  alg: 'RS256' | 'ES256'
  privateKey: CryptoKey
  publicJwk: JWK
  /** SPKI PEM of the public key, for AUTH_JWT_PUBLIC_KEY. */
  publicPem: string
}

export async function makeKey(
  alg: 'RS256' | 'ES256' = 'ES256',
  kid = `key-${randomUUID()}`,
): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true })
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' }
  return { kid, alg, privateKey, publicJwk, publicPem: await exportSPKI(publicKey) }
}

export interface Mint {
  /** Claims to add, or to remove with `undefined`. */
  claims?: Record<string, unknown>
  /** Seconds from now; negative is in the past; null leaves exp out. */
  expiresIn?: number | null
  notBeforeIn?: number
  /** The `kid` header, when it should not be the signing key's own. */
  kid?: string
}

/** A token for `sub` that the gateway configured with ISSUER and AUDIENCE should take, unless `mint` spoils it. */
export async function mintToken(key: TestKey, sub: string | undefined, mint: Mint = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000)
  const given: Record<string, unknown> = {
    iss: ISSUER,
    aud: AUDIENCE,
    scope: 'uploads:read uploads:write',
    sub,
    ...mint.claims,
  }
  // A claim given as undefined is one the token leaves out.
  const claims: JWTPayload = Object.fromEntries(
    Object.entries(given).filter(([, value]) => value !== undefined),
  )
  const jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: key.alg, kid: mint.kid ?? key.kid, typ: 'JWT' })
    .setIssuedAt(now)
  if (mint.expiresIn !== null) jwt.setExpirationTime(now + (mint.expiresIn ?? 600))
  if (mint.notBeforeIn !== undefined) jwt.setNotBefore(now + mint.notBeforeIn)
  return jwt.sign(key.privateKey)
}

/** An HMAC-signed token, for AUTH_JWT_SECRET. */
export async function mintHsToken(
  secret: string,
  sub: string,
  claims: Record<string, unknown> = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000)
  return new SignJWT({ iss: ISSUER, aud: AUDIENCE, scope: 'uploads:read uploads:write', ...claims })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(sub)
    .setIssuedAt(now)
    .setExpirationTime(now + 600)
    .sign(new TextEncoder().encode(secret))
}

/** `alg: none`: no signature at all, with every claim a good token has. */
export function unsignedToken(sub: string, kid?: string): string {
  const now = Math.floor(Date.now() / 1000)
  const token = new UnsecuredJWT({ iss: ISSUER, aud: AUDIENCE, scope: 'uploads:admin', sub })
    .setIssuedAt(now)
    .setExpirationTime(now + 600)
    .encode()
  if (kid === undefined) return token
  // The same token with a kid in its header, as an attacker would send to reach a key lookup.
  const [, payload] = token.split('.')
  return `${Buffer.from(JSON.stringify({ alg: 'none', kid })).toString('base64url')}.${payload}.`
}

export interface JwksEndpoint {
  url: string
  /** How many times the key set has been fetched. */
  readonly fetches: number
  /** Publish exactly these keys from now on. */
  publish(keys: TestKey[]): void
  /** Wait for the fetch count to pass `count`. */
  fetched(count: number): Promise<void>
  close(): Promise<void>
}

export async function serveJwks(keys: TestKey[]): Promise<JwksEndpoint> {
  let published = keys
  let fetches = 0
  const waiting: { count: number; resolve: () => void }[] = []
  const server: Server = createServer((req, res) => {
    if (req.url !== '/.well-known/jwks.json') {
      res.writeHead(404).end()
      return
    }
    fetches += 1
    res.writeHead(200, { 'content-type': 'application/jwk-set+json' })
    res.end(JSON.stringify({ keys: published.map((key) => key.publicJwk) }))
    for (const wait of waiting.filter((item) => fetches > item.count)) {
      waiting.splice(waiting.indexOf(wait), 1)
      wait.resolve()
    }
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    get fetches() {
      return fetches
    },
    publish(next) {
      published = next
    },
    fetched: (count) =>
      fetches > count ? Promise.resolve() : new Promise((resolve) => waiting.push({ count, resolve })),
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
