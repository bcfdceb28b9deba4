import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig, readEnv, SETTINGS } from '../src/config.js'
import { api, bytes, restUpload } from './support/clients.js'
import { startServer } from './support/server.js'

describe('configuration', () => {
  it('has embedded defaults, so a fresh clone starts with no setup', () => {
    expect(loadConfig({})).toMatchObject({
      uploadDir: resolve('uploads'),
      stateFile: resolve('uploads', '.uploads.json'),
      defaultSpeed: 1_048_576,
      port: 8000,
      host: '127.0.0.1',
      maxUploadSize: 10 * 1024 ** 3,
      bodyIdleTimeoutMs: 60_000,
      headersTimeoutMs: 30_000,
      apiToken: undefined,
      corsOrigins: [],
      allowedHosts: [],
      logLevel: 'info',
      publicUrl: undefined,
      // Forwarded headers are believed from no one unless TRUST_PROXY names the proxy.
      trustProxy: [],
    })
  })

  it.each([
    ['DEFAULT_UPLOAD_SPEED', 'fast'],
    ['DEFAULT_UPLOAD_SPEED', '-1'],
    ['DEFAULT_UPLOAD_SPEED', '1.5'],
    ['DEFAULT_UPLOAD_SPEED', '1Mb'],
    ['MAX_TOTAL_SPEED', '10 apples'],
    ['MAX_UPLOAD_SIZE', 'unlimited'],
    ['PORT', '70000'],
    ['MAX_UPLOAD_SIZE', '0'],
    ['MAX_UPLOAD_SIZE', '10Gb'],
    ['MAX_UPLOAD_SIZE', '1G/s'],
    ['CORS_ORIGINS', 'notaurl'],
    ['CORS_ORIGINS', 'https://app.example/path'],
    ['CORS_ORIGINS', 'ftp://app.example'],
    ['CORS_ORIGINS', 'app.example'],
    ['ALLOWED_HOSTS', 'https://uploads.example'],
    ['ALLOWED_HOSTS', 'uploads.example:8000'],
    ['PUBLIC_URL', 'uploads.example.com'],
    ['PUBLIC_URL', 'ftp://uploads.example.com'],
    ['PUBLIC_URL', 'https://uploads.example.com/?a=1'],
    ['PUBLIC_URL', 'https://user:pw@uploads.example.com'],
    ['TRUST_PROXY', 'true'],
    ['TRUST_PROXY', '10.0.0.0/8'],
    ['TRUST_PROXY', 'proxy.example'],
    // Past a timer's longest wait (about 24.8 days) Node fires after 1 ms: every connection would idle out.
    ['BODY_IDLE_TIMEOUT_MS', '3000000000'],
    ['HEADERS_TIMEOUT_MS', '3000000000'],
  ])('%s=%s stops start-up with a message naming the variable', (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError)
    expect(() => loadConfig({ [name]: value })).toThrow(new RegExp(`^${name} `))
  })

  it('decides the mode from REDIS_URL alone: embedded without it, shared with it, whatever the instance is called', () => {
    expect(loadConfig({}).mode).toEqual({ kind: 'embedded' })
    expect(loadConfig({ INSTANCE_ID: 'node-a' }).mode).toEqual({ kind: 'embedded' })
    for (const name of ['local', 'node-a', undefined]) {
      const config = loadConfig({ REDIS_URL: 'redis://127.0.0.1:6379', INSTANCE_ID: name })
      expect(config.mode).toEqual({ kind: 'shared', redisUrl: 'redis://127.0.0.1:6379' })
    }
  })

  it('stores in the local folder unless S3_BUCKET is set, and reads the S3 settings with it', () => {
    expect(loadConfig({}).storage).toEqual({ kind: 'local' })
    expect(loadConfig({ S3_BUCKET: 'media' }).storage).toEqual({
      kind: 's3',
      bucket: 'media',
      endpoint: undefined,
      region: undefined,
      prefix: '',
      forcePathStyle: false,
      timeoutMs: 20_000,
      presignMs: undefined,
      sweepMs: 15 * 60_000,
    })
    expect(
      loadConfig({
        S3_BUCKET: 'media',
        S3_ENDPOINT: 'http://127.0.0.1:9000',
        S3_REGION: 'auto',
        S3_PREFIX: 'uploads/',
        S3_FORCE_PATH_STYLE: 'true',
        S3_TIMEOUT: '5s',
        S3_PRESIGN_DOWNLOADS: '15m',
        S3_SWEEP_INTERVAL: '1h',
      }).storage,
    ).toEqual({
      kind: 's3',
      bucket: 'media',
      endpoint: 'http://127.0.0.1:9000',
      region: 'auto',
      prefix: 'uploads/',
      forcePathStyle: true,
      timeoutMs: 5000,
      presignMs: 900_000,
      sweepMs: 3_600_000,
    })
  })

  it.each([
    [{ S3_BUCKET: 'a' }, /^S3_BUCKET must be a bucket name/],
    [{ S3_BUCKET: 'my bucket' }, /^S3_BUCKET must be a bucket name/],
    [{ S3_BUCKET: 'media', S3_ENDPOINT: '127.0.0.1:9000' }, /^S3_ENDPOINT must be an http or https address/],
    [{ S3_BUCKET: 'media', S3_REGION: 'EU West' }, /^S3_REGION must be a region name/],
    [{ S3_BUCKET: 'media', S3_PREFIX: '/uploads/' }, /^S3_PREFIX must be a key prefix/],
    [{ S3_BUCKET: 'media', S3_FORCE_PATH_STYLE: 'yes please' }, /^S3_FORCE_PATH_STYLE must be true or false/],
    [{ S3_BUCKET: 'media', S3_TIMEOUT: 'soon' }, /^S3_TIMEOUT must be a length of time/],
    [{ S3_BUCKET: 'media', S3_PRESIGN_DOWNLOADS: '8d' }, /^S3_PRESIGN_DOWNLOADS must be between 1s and 7d/],
    [{ S3_TIMEOUT: '5s' }, /^S3_TIMEOUT is set but S3_BUCKET is not/],
    [{ S3_BUCKET: 'media', S3_SWEEP_INTERVAL: 'often' }, /^S3_SWEEP_INTERVAL must be a length of time/],
    [{ S3_BUCKET: 'media', S3_SWEEP_INTERVAL: '30d' }, /^S3_SWEEP_INTERVAL must be at most 24d/],
    [{ S3_BUCKET: 'media', S3_TIMEOUT: '25d' }, /^S3_TIMEOUT must be at most 24d/],
    [{ S3_SWEEP_INTERVAL: '1h' }, /^S3_SWEEP_INTERVAL is set but S3_BUCKET is not/],
    // Without S3_BUCKET the others would be ignored, and the files would go to the local folder unannounced.
    [{ S3_ENDPOINT: 'http://127.0.0.1:9000' }, /^S3_ENDPOINT is set but S3_BUCKET is not/],
    [{ S3_PREFIX: 'uploads/' }, /^S3_PREFIX is set but S3_BUCKET is not/],
    [{ S3_FORCE_PATH_STYLE: 'true' }, /^S3_FORCE_PATH_STYLE is true but S3_BUCKET is not set/],
  ])('S3 settings %j stop start-up with one line naming the variable', (env, message) => {
    expect(() => loadConfig(env)).toThrow(ConfigError)
    expect(() => loadConfig(env)).toThrow(message)
  })

  it('reads sizes and speeds with the units upctl takes (binary: 1K = 1024), or plain bytes', () => {
    expect(
      loadConfig({ DEFAULT_UPLOAD_SPEED: '512K', MAX_UPLOAD_SIZE: '10G', MAX_TOTAL_SPEED: '2.5MB/s' }),
    ).toMatchObject({
      defaultSpeed: 512 * 1024,
      maxUploadSize: 10 * 1024 ** 3,
      maxTotalSpeed: 2.5 * 1024 ** 2,
    })
    expect(
      loadConfig({
        DEFAULT_UPLOAD_SPEED: 'unlimited',
        MAX_UPLOAD_SIZE: '100MiB',
        MAX_TOTAL_SPEED: '1048576',
      }),
    ).toMatchObject({ defaultSpeed: 0, maxUploadSize: 100 * 1024 ** 2, maxTotalSpeed: 1_048_576 })
    expect(() => loadConfig({ MAX_TOTAL_SPEED: '10Mb' })).toThrow(
      'MAX_TOTAL_SPEED must be a speed: a lower-case b means bits; speeds are in bytes: write 10MB; got "10Mb"',
    )
  })

  it('reads exactly the settings of its list (SETTINGS, which the README table follows)', () => {
    const read = new Set<string>()
    const env = new Proxy({} as Record<string, string | undefined>, {
      get: (target, name) => {
        if (typeof name === 'string') read.add(name)
        return target[name as string]
      },
    })
    loadConfig(env)
    expect([...read].sort()).toEqual([...SETTINGS].sort())
  })

  it('normalises CORS_ORIGINS as browsers send Origin, and lower-cases ALLOWED_HOSTS', () => {
    const config = loadConfig({
      CORS_ORIGINS: 'https://App.Example:443/, http://localhost:3000, *',
      ALLOWED_HOSTS: 'Uploads.Example, .corp.example',
    })
    expect(config.corsOrigins).toEqual(['https://app.example', 'http://localhost:3000', '*'])
    expect(config.allowedHosts).toEqual(['uploads.example', '.corp.example'])
  })

  it('reads PUBLIC_URL without its trailing slash (a path is kept), and TRUST_PROXY as addresses', () => {
    expect(loadConfig({ PUBLIC_URL: 'https://Uploads.Example.com/' }).publicUrl).toBe(
      'https://uploads.example.com',
    )
    expect(loadConfig({ PUBLIC_URL: 'http://example.com:8080/uploads/' }).publicUrl).toBe(
      'http://example.com:8080/uploads',
    )
    expect(loadConfig({ TRUST_PROXY: '127.0.0.1, ::1, ::ffff:10.0.0.5' }).trustProxy).toEqual([
      '127.0.0.1',
      '::1',
      '10.0.0.5',
    ])
  })

  it('reads .env, and the environment wins over it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'env-'))
    const { PORT, UPLOAD_DIR } = process.env
    try {
      await writeFile(join(dir, '.env'), 'UPLOAD_DIR=from-file\nPORT=9001\n')
      process.env.PORT = '9002'
      delete process.env.UPLOAD_DIR
      const config = loadConfig(readEnv(dir))
      expect(config.uploadDir).toBe(resolve('from-file'))
      expect(config.port).toBe(9002)
    } finally {
      // Put the runner's environment back as it was.
      for (const [name, value] of Object.entries({ PORT, UPLOAD_DIR })) {
        if (value === undefined) Reflect.deleteProperty(process.env, name)
        else process.env[name] = value
      }
      await rm(dir, { recursive: true })
    }
  })
})

describe('a server started with units in its settings', () => {
  it('takes MAX_UPLOAD_SIZE=64K as 65536 bytes, DEFAULT_UPLOAD_SPEED=2K and MAX_TOTAL_SPEED=1M', async () => {
    const server = await startServer({
      MAX_UPLOAD_SIZE: '64K',
      DEFAULT_UPLOAD_SPEED: '2K',
      MAX_TOTAL_SPEED: '1M',
    })
    try {
      const options = await fetch(`${server.url}/files/`, { method: 'OPTIONS' })
      expect(options.headers.get('tus-max-size')).toBe('65536')
      expect((await restUpload(server.url, bytes(64 * 1024 + 1))).status).toBe(413)
      const { status, body } = await restUpload(server.url, bytes(10_000))
      expect(status).toBe(200)
      expect(body.speed).toBe(2048)
      expect(await api(server.url, 'GET', '/api/limits')).toEqual({
        status: 200,
        body: { max_total_speed: 1024 * 1024 },
      })
      await api(server.url, 'POST', `/api/upload/${body.upload_id}/cancel`)
    } finally {
      await server.stop()
    }
  })
})

describe('hooks settings', () => {
  it('turns hooks on with HOOKS_URL and HOOKS_SECRET, every event sent, 503 on a failing hook by default', () => {
    expect(loadConfig({}).hooks).toBeUndefined()
    expect(
      loadConfig({ HOOKS_URL: 'https://backend.example/hooks', HOOKS_SECRET: 'sixteen-chars-long!' }).hooks,
    ).toEqual({
      url: 'https://backend.example/hooks',
      secret: 'sixteen-chars-long!',
      events: new Set(['pre-create', 'pre-finish', 'received', 'completed', 'failed', 'canceled', 'deleted']),
      blockingTimeoutMs: 5_000,
      notifyTimeoutMs: 10_000,
      onError: 'refuse',
      forwardAuthorization: true,
      maxAgeMs: 24 * 3_600_000,
    })
  })

  it('reads the filter, the timeouts, fail-open, forwarding and the max age', () => {
    const hooks = loadConfig({
      HOOKS_URL: 'http://127.0.0.1:9000/h',
      HOOKS_SECRET: 'sixteen-chars-long!',
      HOOKS_EVENTS: 'pre-create, Completed',
      HOOKS_TIMEOUT: '750ms',
      HOOKS_NOTIFY_TIMEOUT: '3s',
      HOOKS_ON_ERROR: 'accept',
      HOOKS_FORWARD_AUTH: 'false',
      HOOKS_MAX_AGE: '2h',
    }).hooks
    expect(hooks).toMatchObject({
      events: new Set(['pre-create', 'completed']),
      blockingTimeoutMs: 750,
      notifyTimeoutMs: 3000,
      onError: 'accept',
      forwardAuthorization: false,
      maxAgeMs: 7_200_000,
    })
  })

  it.each([
    [{ HOOKS_URL: 'https://backend.example/hooks' }, 'HOOKS_SECRET'],
    [{ HOOKS_URL: 'https://backend.example/hooks', HOOKS_SECRET: 'short' }, 'HOOKS_SECRET'],
    [{ HOOKS_URL: 'ftp://backend.example/hooks', HOOKS_SECRET: 'sixteen-chars-long!' }, 'HOOKS_URL'],
    [{ HOOKS_URL: 'https://user:pw@backend.example/', HOOKS_SECRET: 'sixteen-chars-long!' }, 'HOOKS_URL'],
    [{ HOOKS_EVENTS: 'completed,uploaded' }, 'HOOKS_EVENTS'],
    [{ HOOKS_ON_ERROR: 'ignore' }, 'HOOKS_ON_ERROR'],
    [{ HOOKS_FORWARD_AUTH: 'yes' }, 'HOOKS_FORWARD_AUTH'],
    [{ HOOKS_TIMEOUT: '-1' }, 'HOOKS_TIMEOUT'],
    [{ HOOKS_TIMEOUT: '30d' }, 'HOOKS_TIMEOUT'],
    [{ HOOKS_NOTIFY_TIMEOUT: '25d' }, 'HOOKS_NOTIFY_TIMEOUT'],
    [{ HOOKS_MAX_AGE: 'forever' }, 'HOOKS_MAX_AGE'],
  ])('%o stops start-up with a message naming %s (checked even without HOOKS_URL)', (env, name) => {
    expect(() => loadConfig(env)).toThrow(new RegExp(`^${name} `))
  })
})
