import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../src/config.js'
import { httpStatusOf } from '../src/errors.js'
import { asServiceError, callBlocking, type BlockingCall } from '../src/hooks/call.js'
import type { HooksConfig } from '../src/hooks/config.js'
import { sign, verify } from '../src/hooks/sign.js'
import { setLogLevel } from '../src/log.js'
import { startHookReceiver, type HookReceiver } from './support/hook-receiver.js'
import { freePort } from './support/redis.js'

// The failures these tests cause on purpose are logged as warnings; the runner's report need not show them.
setLogLevel('error')

describe('hook signatures', () => {
  const secret = 'a-secret-of-sixteen-chars'
  const body = '{"eventId":"e1","type":"completed"}'

  it('verify accepts exactly what sign signed: the same raw bytes, the same secret, recently', () => {
    const now = 1_800_000_000_000
    const header = sign(secret, body, now)
    expect(header).toMatch(/^t=1800000000,v1=[0-9a-f]{64}$/)
    expect(verify(secret, header, body, { nowMs: now + 60_000 })).toBe(true)
    expect(verify(secret, header, Buffer.from(body), { nowMs: now })).toBe(true)
    // Another body (even re-serialised JSON of the same value), another secret, an old or a mangled header.
    expect(verify(secret, header, '{"eventId":"e1", "type":"completed"}', { nowMs: now })).toBe(false)
    expect(verify('another-secret-sixteen', header, body, { nowMs: now })).toBe(false)
    expect(verify(secret, header, body, { nowMs: now + 301_000 })).toBe(false)
    expect(verify(secret, header.replace('t=1800000000', 't=1800000001'), body, { nowMs: now })).toBe(false)
    expect(verify(secret, undefined, body, { nowMs: now })).toBe(false)
    expect(verify(secret, 't=1800000000,v1=zz', body, { nowMs: now })).toBe(false)
  })

  it('verify accepts a header carrying several v1 (a secret being rotated) when one matches', () => {
    const header = sign(secret, body)
    const other = sign('the-old-secret-16chars', body).split(',')[1]
    expect(verify(secret, `${header},${other}`, body)).toBe(true)
    expect(verify('the-old-secret-16chars', `${header},${other}`, body)).toBe(true)
  })
})

describe('a blocking hook call (pre-create, pre-finish)', () => {
  let receiver: HookReceiver
  let config: HooksConfig
  beforeAll(async () => {
    receiver = await startHookReceiver()
    config = loadConfig({
      HOOKS_URL: receiver.url,
      HOOKS_SECRET: receiver.secret,
      HOOKS_TIMEOUT: '1s',
    }).hooks!
  })
  afterAll(() => receiver.stop())
  afterEach(() => {
    receiver.answerWith(undefined)
    receiver.failNext(0)
  })

  const call = (overrides: Partial<BlockingCall> = {}): BlockingCall => ({
    type: 'pre-create',
    upload: {
      id: 'u1',
      filename: 'a.bin',
      size: 100,
      speed: 1024,
      status: 'RECEIVING',
      metadata: { kind: 'x' },
    },
    requestId: 'req-1',
    transport: 'rest',
    authorization: 'Bearer callers-own-token',
    ...overrides,
  })

  it('accepts on a 2xx with no body, after sending a signed POST of the protocol’s shape with the caller’s Authorization', async () => {
    const before = receiver.requests.length
    expect(await callBlocking(config, call())).toEqual({ accepted: true, changes: {} })
    const got = receiver.requests.slice(before)
    expect(got).toHaveLength(1)
    expect(got[0]!.verified).toBe(true)
    expect(got[0]!.headers['x-forwarded-authorization']).toBe('Bearer callers-own-token')
    expect(got[0]!.payload).toMatchObject({
      type: 'pre-create',
      requestId: 'req-1',
      transport: 'rest',
      upload: { id: 'u1', filename: 'a.bin', size: 100, speed: 1024, metadata: { kind: 'x' } },
    })
    expect(got[0]!.payload.eventId).toMatch(/^[0-9a-f-]{36}$/)
  })

  it('does not forward Authorization when HOOKS_FORWARD_AUTH=false', async () => {
    const quiet = { ...config, forwardAuthorization: false }
    const before = receiver.requests.length
    await callBlocking(quiet, call())
    expect(receiver.requests[before]!.headers).not.toHaveProperty('x-forwarded-authorization')
  })

  it('accepts with the changes a pre-create answer names: speed, filename, metadata', async () => {
    receiver.answerWith(() => ({
      status: 200,
      body: { speed: 2048, filename: 'renamed.bin', metadata: { scan: 'queued' } },
    }))
    expect(await callBlocking(config, call())).toEqual({
      accepted: true,
      changes: { speed: 2048, filename: 'renamed.bin', metadata: { scan: 'queued' } },
    })
    // A pre-finish answer changes nothing.
    expect(await callBlocking(config, call({ type: 'pre-finish' }))).toEqual({ accepted: true, changes: {} })
  })

  it('refuses with the hook’s status and message, which every edge answers as REJECTED', async () => {
    receiver.answerWith(() => ({
      status: 200,
      body: { reject: { status: 409, message: 'No more .exe files, please' } },
    }))
    const verdict = await callBlocking(config, call())
    expect(verdict).toEqual({
      accepted: false,
      rejection: { code: 'REJECTED', status: 409, message: 'No more .exe files, please' },
    })
    const error = asServiceError((verdict as { rejection: Parameters<typeof asServiceError>[0] }).rejection)
    expect(error).toMatchObject({ code: 'REJECTED', httpStatus: 409, message: 'No more .exe files, please' })
    expect(httpStatusOf('REJECTED')).toBe(403)
    // A reject without a 4xx still refuses (the hook meant no), as 403.
    receiver.answerWith(() => ({ status: 200, body: { reject: { status: 200 } } }))
    expect(await callBlocking(config, call())).toMatchObject({
      accepted: false,
      rejection: { code: 'REJECTED', status: 403 },
    })
  })

  it('accepts any 2xx without reject, JSON or not (“ok”, an HTML page, a JSON array), and refuses 503 on a JSON object with a bad speed', async () => {
    const accepted = { accepted: true, changes: {} }
    for (const raw of [
      { text: 'ok', contentType: 'text/plain' },
      { text: '<!doctype html><html><body><p>Thanks!</p></body></html>', contentType: 'text/html' },
      { text: '["not", "an", "object"]', contentType: 'application/json' },
    ]) {
      receiver.answerWith(() => ({ status: 200, raw }))
      expect(await callBlocking(config, call())).toEqual(accepted)
    }
    receiver.answerWith(() => ({
      status: 200,
      raw: { text: '{"speed": -5}', contentType: 'application/json' },
    }))
    expect(await callBlocking(config, call())).toMatchObject({
      accepted: false,
      rejection: { code: 'UNAVAILABLE', status: 503 },
    })
  })

  it('refuses with 503 when the hook times out, errors, answers outside the protocol, or cannot be reached', async () => {
    const unavailable = { accepted: false, rejection: { code: 'UNAVAILABLE', status: 503 } }
    receiver.answerWith(() => ({ status: 204, delayMs: 3000 }))
    const started = performance.now()
    expect(await callBlocking(config, call())).toMatchObject(unavailable)
    expect(performance.now() - started).toBeLessThan(2900) // HOOKS_TIMEOUT=1s, not the hook's 3 s
    receiver.answerWith(undefined)
    receiver.failNext(1)
    expect(await callBlocking(config, call())).toMatchObject(unavailable)
    receiver.answerWith(() => ({ status: 200, body: { speed: 'fast' } }))
    expect(await callBlocking(config, call())).toMatchObject(unavailable)
    const nobody = { ...config, url: `http://127.0.0.1:${await freePort()}/hooks` }
    const verdict = await callBlocking(nobody, call())
    expect(verdict).toMatchObject(unavailable)
    expect(
      asServiceError((verdict as { rejection: Parameters<typeof asServiceError>[0] }).rejection),
    ).toMatchObject({
      code: 'UNAVAILABLE',
      httpStatus: 503,
    })
  })

  it('lets the upload go on when the hook fails and HOOKS_ON_ERROR=accept (fail open)', async () => {
    const open = { ...config, onError: 'accept' as const }
    receiver.failNext(1)
    expect(await callBlocking(open, call())).toEqual({ accepted: true, changes: {}, failedOpen: true })
    // A rejection is still a rejection.
    receiver.answerWith(() => ({ status: 200, body: { reject: { status: 422, message: 'no' } } }))
    expect(await callBlocking(open, call())).toMatchObject({ accepted: false, rejection: { status: 422 } })
  })

  it('logs a failed hook call with its request id and never the caller’s Authorization', async () => {
    setLogLevel('info')
    const lines: string[] = []
    const write = process.stdout.write.bind(process.stdout)
    process.stdout.write = ((chunk: string | Uint8Array) => {
      lines.push(String(chunk))
      return true
    }) as typeof process.stdout.write
    try {
      receiver.failNext(1)
      await callBlocking(config, call({ authorization: 'Bearer secret-that-must-not-leak' }))
    } finally {
      process.stdout.write = write
      setLogLevel('error')
    }
    const failed = lines.filter((line) => line.includes('hook.blocking_failed'))
    expect(failed).toHaveLength(1)
    expect(failed[0]).toContain('"requestId":"req-1"')
    expect(lines.join('')).not.toContain('secret-that-must-not-leak')
  })
})
