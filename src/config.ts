import { existsSync, readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { parseEnv } from 'node:util'
import { AuthSettingError, readAuthConfig, type JwtAuth } from './auth/config.js'
import type { HooksConfig } from './hooks/config.js'
import { readHooksConfig } from './hooks/settings.js'
import { isLogLevel, LOG_FORMATS, type LogFormat, type LogLevel } from './log.js'
import { isIpAddress, normaliseIp } from './app/public-url.js'
import { quote } from './errors.js'
import { bytes, ConfigError, duration, list, MAX_TIMER_MS, wholeNumber, yesNo, type Env } from './settings.js'

export { ConfigError, SETTINGS, type Setting } from './settings.js'

export interface Config {
  /** Storage folder. Default `uploads`. */
  uploadDir: string
  /**
   * The embedded store's snapshot (a lowdb JSON document); its journal of every change since sits beside
   * it as `<name without .json>.journal.<first seq>`. Default `<uploadDir>/.uploads.json`. Unused in shared
   * mode (Redis).
   */
  stateFile: string
  /** Bytes per second when a caller names no speed. Default 1048576; 0 means unlimited. */
  defaultSpeed: number
  /** Default 8000; 0 picks a free port. */
  port: number
  /** Default 127.0.0.1; use 0.0.0.0 in a container. */
  host: string
  /** Bytes per second for all transfers of this instance together, shared fairly; 0 (default) means no cap. */
  maxTotalSpeed: number
  /** Largest file accepted, in bytes. Default 10 GiB. */
  maxUploadSize: number
  /** A connection that sends nothing for this long is dropped (uploads and SSE included). Default 60 s. */
  bodyIdleTimeoutMs: number
  /** Request headers must arrive whole within this. Default 30 s. */
  headersTimeoutMs: number
  /** When set, every call needs `Authorization: Bearer <token>` (graphql-ws: in connection_init). */
  apiToken: string | undefined
  /** Origins allowed to call from a browser besides the service's own; empty (the default) turns CORS off. `*` allows any. */
  corsOrigins: string[]
  /** Host names accepted besides loopback ones when listening on loopback (DNS-rebinding guard). */
  allowedHosts: string[]
  /** debug, info (default), warn or error. */
  logLevel: LogLevel
  /** `json` (one object per line) or `pretty` (readable); unset, pretty when stdout is a terminal. */
  logFormat: LogFormat | undefined
  /**
   * `embedded`: this process alone on its folder, its state in the embedded store. `shared` (REDIS_URL set):
   * one of several instances sharing records, leases and live progress over Redis. Decided here, once, from
   * REDIS_URL alone: nothing else (an instance's name included) changes it.
   */
  mode: Mode
  /** This instance's name in logs, metrics and leases; default `{hostname}-{random}`, unique per start. */
  instanceId: string | undefined
  /** A resumable (tus) upload that receives no byte for this long is removed. Default 24 h. */
  resumableExpiryMs: number
  /** Where clients reach the service (no trailing slash): links it hands out are absolute. Default unset. */
  publicUrl: string | undefined
  /** Addresses of proxies whose Forwarded / X-Forwarded-* headers are believed. Default none. */
  trustProxy: string[]
  /** Per-user bearer JWTs (AUTH_*), or undefined: then nothing changes (open, or API_TOKEN alone). */
  auth: JwtAuth | undefined
  /**
   * Where files are kept: `local` (the default) in `uploadDir`; `s3` (S3_BUCKET set) in a bucket every
   * instance reaches, each instance's own folder then holding no upload's bytes.
   */
  storage: StorageMode
  /** The user's backend, asked before uploads and told of their outcomes (HOOKS_*); unset: no hooks at all. */
  hooks: HooksConfig | undefined
}

export type StorageMode = { kind: 'local' } | ({ kind: 's3' } & S3Settings)

export interface S3Settings {
  bucket: string
  /** For S3-compatible services (MinIO, R2, Ceph RGW...); unset means AWS's own endpoint for the region. */
  endpoint: string | undefined
  /** S3_REGION; unset leaves it to the AWS SDK's chain (AWS_REGION, then the profile's region). */
  region: string | undefined
  /** Put before every key the service writes (`uploads/`); empty by default. */
  prefix: string
  /** `bucket` in the path rather than the host name, as MinIO-style endpoints want. */
  forcePathStyle: boolean
  /**
   * S3_TIMEOUT: a request whose socket is silent this long is given up and tried again (a frozen or
   * unreachable S3 is noticed this soon). Default 20 s: a part of 5 MiB at a crawl still answers well within.
   */
  timeoutMs: number
  /** S3_PRESIGN_DOWNLOADS: a download answers 302 to a presigned GET valid this long; unset streams it. */
  presignMs: number | undefined
  /**
   * S3_SWEEP_INTERVAL: the bucket is looked through this often for multipart uploads and staging objects no
   * unfinished upload owns; one found so in two sweeps in a row is removed (see core/sweep.ts). Default 15 m.
   */
  sweepMs?: number
}

export type Mode = { kind: 'embedded' } | { kind: 'shared'; redisUrl: string }

/** Environment variables win over `.env` in the working directory, as with dotenv. */
export function readEnv(cwd = process.cwd()): Record<string, string | undefined> {
  const file = resolve(cwd, '.env')
  const fromFile = existsSync(file) ? parseEnv(readFileSync(file, 'utf8')) : {}
  return { ...fromFile, ...process.env }
}

function logLevel(env: Env): LogLevel {
  const value = env.LOG_LEVEL?.trim().toLowerCase() || 'info'
  if (!isLogLevel(value))
    throw new ConfigError(`LOG_LEVEL must be debug, info, warn or error, got ${JSON.stringify(value)}`)
  return value
}

function logFormat(env: Env): LogFormat | undefined {
  const value = env.LOG_FORMAT?.trim().toLowerCase() || undefined
  if (value === undefined || (LOG_FORMATS as readonly string[]).includes(value)) return value as LogFormat
  throw new ConfigError(`LOG_FORMAT must be json or pretty, got ${quote(value)}`)
}

function token(env: Env): string | undefined {
  const value = env.API_TOKEN
  if (value === undefined || value === '') return undefined
  if (!/^[\x21-\x7e]{16,}$/.test(value)) {
    throw new ConfigError('API_TOKEN must be at least 16 printable characters without spaces')
  }
  return value
}

/** `scheme://host[:port]`, as browsers send it in `Origin` (normalised as they do), or `*`. */
function origins(env: Env): string[] {
  return list(env, 'CORS_ORIGINS').map((value) => {
    if (value === '*') return value
    const origin = /^https?:\/\/[^/?#@\s]+\/?$/i.test(value) ? URL.parse(value)?.origin : undefined
    if (origin === undefined || origin === 'null') {
      throw new ConfigError(
        `CORS_ORIGINS must list origins such as https://app.example.com or http://localhost:3000 (scheme, host and port only), or *; got ${JSON.stringify(value)}`,
      )
    }
    return origin
  })
}

function mode(env: Env): Mode {
  const value = env.REDIS_URL?.trim()
  if (!value) return { kind: 'embedded' }
  const url = URL.parse(value)
  if (!url || !/^rediss?:$/.test(url.protocol) || !url.hostname || !/^(\/\d*)?$/.test(url.pathname)) {
    throw new ConfigError(
      `REDIS_URL must be redis://host:port[/db] (or rediss:// for TLS); got ${JSON.stringify(value.replace(/\/\/[^@/]*@/, '//***@'))}`,
    )
  }
  return { kind: 'shared', redisUrl: value }
}

function instanceId(env: Env): string | undefined {
  const value = env.INSTANCE_ID?.trim()
  if (!value) return undefined
  if (!/^[\w.-]{1,64}$/.test(value))
    throw new ConfigError(
      `INSTANCE_ID must be 1 to 64 letters, digits, dots, dashes or underscores; got ${JSON.stringify(value)}`,
    )
  return value
}

function hosts(env: Env): string[] {
  const values = list(env, 'ALLOWED_HOSTS').map((value) => value.toLowerCase())
  for (const value of values) {
    if (!/^\.?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$|^[0-9a-f:]+$/.test(value)) {
      throw new ConfigError(
        `ALLOWED_HOSTS must list host names (no scheme or port), such as uploads.example.com or .example.com; got ${JSON.stringify(value)}`,
      )
    }
  }
  return values
}

/** `https://host[:port][/path]`: the service's address as its clients use it. */
function publicUrl(env: Env): string | undefined {
  const value = env.PUBLIC_URL?.trim()
  if (!value) return undefined
  const url = URL.parse(value)
  if (
    !url ||
    !/^https?:$/.test(url.protocol) ||
    !url.hostname ||
    url.username ||
    url.password ||
    url.search ||
    url.hash
  ) {
    throw new ConfigError(
      `PUBLIC_URL must be the address clients reach this service at, such as https://uploads.example.com or https://example.com/uploads (http or https, no query); got ${JSON.stringify(value)}`,
    )
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`
}

/** The proxies' addresses, as this server sees them connect: only their forwarded headers are believed. */
function trustProxy(env: Env): string[] {
  return list(env, 'TRUST_PROXY').map((value) => {
    if (!isIpAddress(value)) {
      throw new ConfigError(
        `TRUST_PROXY must list the IP addresses of the proxies in front of this service, such as 127.0.0.1 or 10.0.0.5; got ${JSON.stringify(value)}`,
      )
    }
    return normaliseIp(value)
  })
}

function auth(env: Env): JwtAuth | undefined {
  try {
    return readAuthConfig(env)
  } catch (error) {
    if (error instanceof AuthSettingError) throw new ConfigError(error.message)
    throw error
  }
}

/**
 * S3_BUCKET switches storage to S3. The other S3_ settings without it would be silently ignored, which is
 * refused: the operator meant S3 and would otherwise get the local folder.
 */
function storage(env: Env): StorageMode {
  const bucket = env.S3_BUCKET?.trim() ?? ''
  const endpoint = env.S3_ENDPOINT?.trim() || undefined
  const region = env.S3_REGION?.trim() || undefined
  const prefix = env.S3_PREFIX ?? ''
  const forcePathStyle = yesNo(env, 'S3_FORCE_PATH_STYLE')
  if (bucket === '') {
    const stray = (
      [
        'S3_ENDPOINT',
        'S3_REGION',
        'S3_PREFIX',
        'S3_TIMEOUT',
        'S3_PRESIGN_DOWNLOADS',
        'S3_SWEEP_INTERVAL',
      ] as const
    ).find((name) => env[name]?.trim())
    if (stray === undefined && forcePathStyle)
      throw new ConfigError(
        'S3_FORCE_PATH_STYLE is true but S3_BUCKET is not set: set S3_BUCKET to store files in S3',
      )
    if (stray)
      throw new ConfigError(`${stray} is set but S3_BUCKET is not: set S3_BUCKET to store files in S3`)
    return { kind: 'local' }
  }
  // S3's rules, relaxed to the older ones (capitals, underscores) that some buckets and compatibles still use.
  if (!/^[A-Za-z0-9][\w.-]{1,253}[A-Za-z0-9]$/.test(bucket))
    throw new ConfigError(
      `S3_BUCKET must be a bucket name (3 to 255 letters, digits, dots, dashes or underscores); got ${JSON.stringify(bucket.slice(0, 80))}`,
    )
  if (endpoint !== undefined) {
    const url = URL.parse(endpoint)
    if (!url || !/^https?:$/.test(url.protocol) || !url.hostname || url.username || url.search || url.hash)
      throw new ConfigError(
        `S3_ENDPOINT must be an http or https address such as https://s3.example.com or http://127.0.0.1:9000; got ${JSON.stringify(endpoint.slice(0, 80))}`,
      )
  }
  if (region !== undefined && !/^[a-z0-9-]{1,64}$/.test(region))
    throw new ConfigError(
      `S3_REGION must be a region name such as eu-west-1 (or auto for R2); got ${JSON.stringify(region.slice(0, 80))}`,
    )
  // A key is at most 1024 bytes; the prefix leaves room for `{id}/{filename}`. A leading slash would make an
  // empty first path segment that `aws s3 ls` does not show.
  if (
    prefix.startsWith('/') ||
    Buffer.byteLength(prefix) > 256 ||
    [...prefix].some((c) => c < ' ' || c === '\x7f')
  )
    throw new ConfigError(
      `S3_PREFIX must be a key prefix such as uploads/ (no leading slash, no control characters, at most 256 bytes); got ${JSON.stringify(prefix.slice(0, 80))}`,
    )
  const timeoutMs = duration(env, 'S3_TIMEOUT', 20_000, { timer: true })
  const presignMs = env.S3_PRESIGN_DOWNLOADS?.trim() ? duration(env, 'S3_PRESIGN_DOWNLOADS', 0) : undefined
  // S3 signs a URL for at most 7 days.
  if (presignMs !== undefined && (presignMs < 1000 || presignMs > 7 * 86_400_000))
    throw new ConfigError(
      `S3_PRESIGN_DOWNLOADS must be between 1s and 7d (how long a download link stays valid); got ${JSON.stringify(env.S3_PRESIGN_DOWNLOADS)}`,
    )
  const sweepMs = duration(env, 'S3_SWEEP_INTERVAL', 15 * 60_000, { timer: true })
  return { kind: 's3', bucket, endpoint, region, prefix, forcePathStyle, timeoutMs, presignMs, sweepMs }
}

/** Validated once at start-up: a bad value stops the server with a message naming the variable. */
export function loadConfig(env: Env = readEnv()): Config {
  const uploadDir = resolve(env.UPLOAD_DIR?.trim() || 'uploads')
  const host = env.HOST?.trim() || '127.0.0.1'
  return {
    uploadDir,
    stateFile: resolve(uploadDir, env.STATE_FILE?.trim() || '.uploads.json'),
    defaultSpeed: bytes(env, 'DEFAULT_UPLOAD_SPEED', 1_048_576, { speed: true }),
    port: wholeNumber(env, 'PORT', 8000, { max: 65_535 }),
    host,
    maxUploadSize: bytes(env, 'MAX_UPLOAD_SIZE', 10 * 1024 ** 3, { min: 1 }),
    maxTotalSpeed: bytes(env, 'MAX_TOTAL_SPEED', 0, { speed: true }),
    bodyIdleTimeoutMs: wholeNumber(env, 'BODY_IDLE_TIMEOUT_MS', 60_000, { min: 1, max: MAX_TIMER_MS }),
    headersTimeoutMs: wholeNumber(env, 'HEADERS_TIMEOUT_MS', 30_000, { min: 1, max: MAX_TIMER_MS }),
    apiToken: token(env),
    corsOrigins: origins(env),
    allowedHosts: hosts(env),
    logLevel: logLevel(env),
    logFormat: logFormat(env),
    mode: mode(env),
    instanceId: instanceId(env),
    resumableExpiryMs: duration(env, 'RESUMABLE_EXPIRY', 24 * 3_600_000),
    publicUrl: publicUrl(env),
    trustProxy: trustProxy(env),
    auth: auth(env),
    storage: storage(env),
    hooks: readHooksConfig(env),
  }
}
