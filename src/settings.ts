import { parseBytes, UnitError } from './units.js'
import { quote } from './errors.js'
import { AUTH_SETTINGS } from './auth/config.js'

// The settings' names and the readers that check one value each, apart from config.ts so that an area's own
// settings (hooks/settings.ts) are read with the same rules and messages without importing config.ts, which
// imports them.

/**
 * Every environment variable the server reads, each in the README's Configuration table (test/readme.test.ts
 * holds the two together, and test/config.test.ts holds this list to what loadConfig reads).
 */
export const SETTINGS = [
  'UPLOAD_DIR',
  'STATE_FILE',
  'DEFAULT_UPLOAD_SPEED',
  'PORT',
  'HOST',
  'MAX_UPLOAD_SIZE',
  'MAX_TOTAL_SPEED',
  'BODY_IDLE_TIMEOUT_MS',
  'HEADERS_TIMEOUT_MS',
  'API_TOKEN',
  'CORS_ORIGINS',
  'ALLOWED_HOSTS',
  'LOG_LEVEL',
  'LOG_FORMAT',
  'REDIS_URL',
  'INSTANCE_ID',
  'RESUMABLE_EXPIRY',
  'PUBLIC_URL',
  'TRUST_PROXY',
  ...AUTH_SETTINGS,
  'S3_BUCKET',
  'S3_ENDPOINT',
  'S3_REGION',
  'S3_PREFIX',
  'S3_FORCE_PATH_STYLE',
  'S3_TIMEOUT',
  'S3_PRESIGN_DOWNLOADS',
  'HOOKS_URL',
  'HOOKS_SECRET',
  'HOOKS_EVENTS',
  'HOOKS_TIMEOUT',
  'HOOKS_NOTIFY_TIMEOUT',
  'HOOKS_ON_ERROR',
  'HOOKS_FORWARD_AUTH',
  'HOOKS_MAX_AGE',
  'S3_SWEEP_INTERVAL',
] as const

export class ConfigError extends Error {
  override readonly name = 'ConfigError'
}

export type Setting = (typeof SETTINGS)[number]

/** What loadConfig reads: a name missing from SETTINGS does not compile. */
export type Env = { readonly [name in Setting]?: string | undefined }

export function wholeNumber(
  env: Env,
  name: Setting,
  fallback: number,
  { min = 0, max = Number.MAX_SAFE_INTEGER } = {},
) {
  const raw = env[name]?.trim()
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(raw)}`)
  }
  return value
}

/**
 * A byte count or a speed (bytes per second), with the units upctl takes (src/units.ts): `10G`, `512KiB`,
 * `1M`, or a plain number of bytes; a speed also as `1MB/s` or `unlimited` (0).
 */
export function bytes(
  env: Env,
  name: Setting,
  fallback: number,
  { min = 0, speed = false }: { min?: number; speed?: boolean } = {},
): number {
  const raw = env[name]?.trim()
  if (raw === undefined || raw === '') return fallback
  let value: number
  try {
    value = parseBytes(raw, { speed })
  } catch (error) {
    if (!(error instanceof UnitError)) throw error
    throw new ConfigError(
      `${name} must be ${speed ? 'a speed' : 'a size'}: ${error.message}; got ${quote(raw)}`,
    )
  }
  if (value < min) throw new ConfigError(`${name} must be at least ${min}; got ${quote(raw)}`)
  return value
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** A length of time: `500ms`, `90s`, `30m`, `24h`, `7d`, or a plain number of seconds. */
export function duration(env: Env, name: Setting, fallbackMs: number, { timer = false } = {}): number {
  const raw = env[name]?.trim()
  if (raw === undefined || raw === '') return fallbackMs
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(raw)
  const ms = match ? Math.round(Number(match[1]) * (UNIT_MS[match[2] ?? 's'] ?? 1000)) : NaN
  if (!Number.isSafeInteger(ms) || ms < 1) {
    throw new ConfigError(
      `${name} must be a length of time such as 24h, 30m, 90s or 500ms (a plain number is seconds); got ${JSON.stringify(raw)}`,
    )
  }
  if (timer && ms > MAX_TIMER_MS)
    throw new ConfigError(`${name} must be at most 24d (a timer's longest); got ${JSON.stringify(raw)}`)
  return ms
}

/**
 * The longest a Node timer waits (2^31 - 1 ms, about 24.8 days): past it Node fires after 1 ms instead, so a
 * setting a timer waits for is held to it.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1

export const list = (env: Env, name: Setting) =>
  (env[name] ?? '')
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean)

export function yesNo(env: Env, name: Setting): boolean {
  const value = env[name]?.trim().toLowerCase() ?? ''
  if (value === '' || value === 'false' || value === '0') return false
  if (value === 'true' || value === '1') return true
  throw new ConfigError(`${name} must be true or false; got ${JSON.stringify(value.slice(0, 80))}`)
}
