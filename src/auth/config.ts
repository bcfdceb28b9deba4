import { createHmac, createPublicKey, type KeyObject } from 'node:crypto'
import { parseBytes, UnitError } from '../units.js'

/** The settings of per-user access, read by loadConfig with the rest (src/config.ts spreads them into SETTINGS). */
export const AUTH_SETTINGS = [
  'AUTH_JWKS_URL',
  'AUTH_JWT_PUBLIC_KEY',
  'AUTH_JWT_SECRET',
  'AUTH_ISSUER',
  'AUTH_AUDIENCE',
  'AUTH_ALGORITHMS',
  'AUTH_CLOCK_SKEW',
  'AUTH_QUOTA_BYTES',
  'AUTH_QUOTA_RUNNING',
  'AUTH_QUOTA_SPEED',
  'AUTH_QUOTA_CLAIM',
  'AUTH_LINK_SECRET',
] as const

export type AuthSetting = (typeof AUTH_SETTINGS)[number]
type AuthEnv = { readonly [name in AuthSetting]?: string | undefined }

/** Where the keys that sign users' tokens come from: exactly one of the three. */
export type KeySource =
  { kind: 'jwks'; url: URL } | { kind: 'public-key'; key: KeyObject } | { kind: 'secret'; secret: Uint8Array }

/** Per user, unless the token's quota claim says otherwise; 0 means no limit. */
export interface Quotas {
  /** Bytes a user's uploads may hold at once (all not canceled, failed or deleted). */
  bytes: number
  /** Uploads of a user receiving or transferring at once. */
  running: number
  /** The highest speed (bytes per second) a user may ask for; a caller naming none gets at most this. */
  speed: number
}

export interface JwtAuth {
  keys: KeySource
  issuer: string
  audience: string
  /** JWS `alg` values accepted: never `none`, never HMAC with a public key (or the reverse). */
  algorithms: string[]
  /** Seconds of leeway on `exp` and `nbf`, for clocks that disagree a little. */
  clockSkewSeconds: number
  quotas: Quotas
  /** The claim that may override `quotas` for one user: `{"bytes", "running", "speed"}`, each optional. */
  quotaClaim: string
  /** HMAC key of signed download links; the same on every instance, or links fail at the others. */
  linkKey: Uint8Array
}

/** A bad auth setting; its message starts with the variable's name (loadConfig turns it into a ConfigError). */
export class AuthSettingError extends Error {
  override readonly name = 'AuthSettingError'
}

const ASYMMETRIC = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
]
const SYMMETRIC = ['HS256', 'HS384', 'HS512']
const DEFAULT_ALGORITHMS = {
  asymmetric: ['RS256', 'PS256', 'ES256', 'EdDSA', 'Ed25519'],
  symmetric: ['HS256'],
}
const DEFAULT_CLOCK_SKEW_SECONDS = 30

const value = (env: AuthEnv, name: AuthSetting) => {
  const raw = env[name]?.trim()
  return raw === undefined || raw === '' ? undefined : raw
}

function keySource(env: AuthEnv): KeySource | undefined {
  const url = value(env, 'AUTH_JWKS_URL')
  const pem = value(env, 'AUTH_JWT_PUBLIC_KEY')
  const secret = value(env, 'AUTH_JWT_SECRET')
  const given = (['AUTH_JWKS_URL', 'AUTH_JWT_PUBLIC_KEY', 'AUTH_JWT_SECRET'] as const).filter(
    (name) => value(env, name) !== undefined,
  )
  if (given.length > 1) {
    throw new AuthSettingError(
      `${given.join(' and ')} are alternatives: set only one of AUTH_JWKS_URL, AUTH_JWT_PUBLIC_KEY and AUTH_JWT_SECRET`,
    )
  }
  if (url !== undefined) {
    const parsed = URL.parse(url)
    if (
      !parsed ||
      !/^https?:$/.test(parsed.protocol) ||
      !parsed.hostname ||
      parsed.username ||
      parsed.password
    ) {
      throw new AuthSettingError(
        `AUTH_JWKS_URL must be the http(s) address of a JSON Web Key Set, such as https://issuer.example/.well-known/jwks.json; got ${JSON.stringify(url.slice(0, 120))}`,
      )
    }
    return { kind: 'jwks', url: parsed }
  }
  if (pem !== undefined) {
    // An environment variable often carries a PEM's line breaks as `\n`.
    const text = pem.replaceAll('\\n', '\n')
    if (!/^-----BEGIN PUBLIC KEY-----\n[\s\S]+\n-----END PUBLIC KEY-----$/.test(text)) {
      throw new AuthSettingError(
        'AUTH_JWT_PUBLIC_KEY must be a PEM public key (SPKI: -----BEGIN PUBLIC KEY----- ... -----END PUBLIC KEY-----)',
      )
    }
    try {
      return { kind: 'public-key', key: createPublicKey(text) }
    } catch {
      throw new AuthSettingError(
        'AUTH_JWT_PUBLIC_KEY is not a public key Node can read (an RSA, EC or Ed25519 key in SPKI PEM)',
      )
    }
  }
  if (secret !== undefined) {
    // RFC 7518 §3.2: an HMAC key at least as long as the hash; HS256 needs 32 bytes.
    if (Buffer.byteLength(secret) < 32) {
      throw new AuthSettingError('AUTH_JWT_SECRET must be at least 32 bytes long (HS256 needs a 256-bit key)')
    }
    return { kind: 'secret', secret: new TextEncoder().encode(secret) }
  }
  return undefined
}

/** The algorithms one fixed public key can check, by its type (and curve): any other `alg` is refused as such. */
function fitting(key: KeyObject): string[] {
  const curve = key.asymmetricKeyDetails?.namedCurve
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']
    case 'rsa-pss':
      return ['PS256', 'PS384', 'PS512']
    case 'ec':
      return curve === 'prime256v1'
        ? ['ES256']
        : curve === 'secp384r1'
          ? ['ES384']
          : curve === 'secp521r1'
            ? ['ES512']
            : []
    case 'ed25519':
      return ['EdDSA', 'Ed25519']
    default:
      return []
  }
}

function algorithms(env: AuthEnv, keys: KeySource): string[] {
  const symmetric = keys.kind === 'secret'
  const allowed = symmetric ? SYMMETRIC : keys.kind === 'public-key' ? fitting(keys.key) : ASYMMETRIC
  if (allowed.length === 0)
    throw new AuthSettingError('AUTH_JWT_PUBLIC_KEY must be an RSA, EC (P-256, P-384, P-521) or Ed25519 key')
  const raw = value(env, 'AUTH_ALGORITHMS')
  if (raw === undefined) {
    if (symmetric) return DEFAULT_ALGORITHMS.symmetric
    // A fixed key's type pins what it can check; a key set's keys each carry their own kty (and often alg).
    return keys.kind === 'public-key' ? allowed : DEFAULT_ALGORITHMS.asymmetric
  }
  const names = raw
    .split(',')
    .map((name) => name.trim())
    .filter(Boolean)
  for (const name of names) {
    if (!allowed.includes(name)) {
      // HS* with a public key would let anyone who has the public key sign (algorithm confusion).
      throw new AuthSettingError(
        `AUTH_ALGORITHMS must list algorithms the key can check (${allowed.join(', ')}); got ${JSON.stringify(name.slice(0, 40))}`,
      )
    }
  }
  if (names.length === 0) throw new AuthSettingError('AUTH_ALGORITHMS must list at least one algorithm')
  return names
}

function seconds(env: AuthEnv, name: AuthSetting, fallback: number): number {
  const raw = value(env, name)
  if (raw === undefined) return fallback
  const match = /^(\d{1,5})s?$/.exec(raw)
  if (!match)
    throw new AuthSettingError(
      `${name} must be a whole number of seconds, such as 30 or 30s; got ${JSON.stringify(raw.slice(0, 40))}`,
    )
  return Number(match[1])
}

function amount(env: AuthEnv, name: AuthSetting, kind: 'size' | 'speed' | 'count'): number {
  const raw = value(env, name)
  if (raw === undefined) return 0
  if (kind === 'count') {
    if (!/^\d{1,9}$/.test(raw))
      throw new AuthSettingError(
        `${name} must be a whole number (0: no limit); got ${JSON.stringify(raw.slice(0, 40))}`,
      )
    return Number(raw)
  }
  try {
    return parseBytes(raw, { speed: kind === 'speed' })
  } catch (error) {
    if (!(error instanceof UnitError)) throw error
    throw new AuthSettingError(
      `${name} must be a ${kind} (0: no limit): ${error.message}; got ${JSON.stringify(raw.slice(0, 40))}`,
    )
  }
}

function claimName(env: AuthEnv): string {
  const name = value(env, 'AUTH_QUOTA_CLAIM') ?? 'upload_quota'
  if (!/^[\w.:/-]{1,100}$/.test(name)) {
    throw new AuthSettingError(
      `AUTH_QUOTA_CLAIM must be a claim name (letters, digits, _ . : / -); got ${JSON.stringify(name.slice(0, 40))}`,
    )
  }
  return name
}

/**
 * The link key. With AUTH_JWT_SECRET it is derived from it (a separate key, so a link's MAC is never a token's);
 * with a public key or a JWKS the server holds no secret of its own, so one must be given.
 */
function linkKey(env: AuthEnv, keys: KeySource): Uint8Array {
  const given = value(env, 'AUTH_LINK_SECRET')
  if (given !== undefined) {
    if (Buffer.byteLength(given) < 32)
      throw new AuthSettingError('AUTH_LINK_SECRET must be at least 32 bytes long')
    return new TextEncoder().encode(given)
  }
  if (keys.kind === 'secret')
    return createHmac('sha256', keys.secret).update('upload gateway: download links').digest()
  throw new AuthSettingError(
    'AUTH_LINK_SECRET must be set (32+ bytes, the same on every instance) with AUTH_JWKS_URL or AUTH_JWT_PUBLIC_KEY: it signs download links',
  )
}

/**
 * Per-user access, or undefined when no key is configured (then nothing changes: the service is as open, or
 * as API_TOKEN-guarded, as before). Every setting is read either way, so a stray one is still checked.
 */
export function readAuthConfig(env: AuthEnv): JwtAuth | undefined {
  const keys = keySource(env)
  const issuer = value(env, 'AUTH_ISSUER')
  const audience = value(env, 'AUTH_AUDIENCE')
  const clockSkewSeconds = seconds(env, 'AUTH_CLOCK_SKEW', DEFAULT_CLOCK_SKEW_SECONDS)
  const quotas: Quotas = {
    bytes: amount(env, 'AUTH_QUOTA_BYTES', 'size'),
    running: amount(env, 'AUTH_QUOTA_RUNNING', 'count'),
    speed: amount(env, 'AUTH_QUOTA_SPEED', 'speed'),
  }
  const quotaClaim = claimName(env)
  if (keys === undefined) {
    // A quota or an issuer without a key would be silently ignored: the operator meant auth to be on.
    const stray = AUTH_SETTINGS.find((name) => value(env, name) !== undefined)
    if (stray !== undefined) {
      throw new AuthSettingError(
        `${stray} needs a key to check tokens with: set AUTH_JWKS_URL, AUTH_JWT_PUBLIC_KEY or AUTH_JWT_SECRET`,
      )
    }
    return undefined
  }
  // Without both, a token minted for another service by the same issuer (or by another issuer) would pass.
  if (issuer === undefined)
    throw new AuthSettingError('AUTH_ISSUER must be set with a token key: the `iss` tokens must carry')
  if (audience === undefined)
    throw new AuthSettingError('AUTH_AUDIENCE must be set with a token key: the `aud` tokens must carry')
  return {
    keys,
    issuer,
    audience,
    algorithms: algorithms(env, keys),
    clockSkewSeconds,
    quotas,
    quotaClaim,
    linkKey: linkKey(env, keys),
  }
}
