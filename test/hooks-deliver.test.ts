import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { Registry } from 'prom-client'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { collect } from '../src/collect.js'
import type { Notification } from '../src/hooks/config.js'
import { backoff, Deliverer, type DelivererOptions } from '../src/hooks/deliver.js'
import { hookMetrics } from '../src/hooks/metrics.js'
import { payloadBody } from '../src/hooks/payload.js'
import { setLogLevel } from '../src/log.js'
import type { HookEvent, Outbox } from '../src/seams/outbox/index.js'
import type { LocalOutbox } from '../src/seams/outbox/local.js'
import { LocalStore } from '../src/seams/records/local.js'
import { RedisOutbox } from '../src/seams/outbox/redis.js'
import { seededRandom } from './support/clients.js'
import { startHookReceiver, type HookReceiver } from './support/hook-receiver.js'
import { startRedis, type TestRedis } from './support/redis.js'

// Deliveries fail on purpose here; their warnings need not fill the report.
setLogLevel('error')

let sequence = 0
/** A notification as a state change would write it: the protocol's body, its bytes fixed from now on. */
function notification(uploadId: string, type: Notification): HookEvent {
  const eventId = `evt-${++sequence}`
  const body = payloadBody({
    eventId,
    type,
    upload: {
      id: uploadId,
      filename: `${uploadId}.bin`,
      size: 10,
      speed: 0,
      status: 'COMPLETED',
      metadata: {},
    },
  })
  return { eventId, uploadId, type, body, createdAt: Date.now() }
}

const TYPES: Notification[] = ['received', 'completed', 'deleted']

/** What one metric reads now, by its labels. */
async function metric(
  registry: Registry,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const found = (await registry.getMetricsAsJSON()).find((m) => m.name === name)
  const value = found?.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))
  return value?.value ?? 0
}

/** Per upload, the eventIds the receiver acknowledged, in the order it did. */
function deliveredByUpload(receiver: HookReceiver): Map<string, string[]> {
  const by = new Map<string, string[]>()
  for (const { payload } of receiver.delivered())
    by.set(payload.upload.id, [...(by.get(payload.upload.id) ?? []), payload.eventId])
  return by
}

/** The embedded outbox lives in the record store's journal: closing it here closes that store. */
async function openOutbox(file: string): Promise<LocalOutbox> {
  const store = await LocalStore.open(file)
  return Object.assign(store.outbox(), { close: () => store.close() })
}

describe('delivering notifications from the embedded outbox', () => {
  let receiver: HookReceiver
  let dir: string
  let outbox: LocalOutbox
  let registry: Registry
  let deliverer: Deliverer | undefined
  beforeAll(async () => {
    receiver = await startHookReceiver()
  })
  afterAll(() => receiver.stop())
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'deliver-'))
    outbox = await openOutbox(join(dir, 'state.json'))
    registry = new Registry()
    receiver.requests.length = 0
    receiver.arrived.length = 0
    receiver.failNext(0)
    receiver.answerWith(undefined)
  })
  afterEach(async () => {
    await deliverer?.stop()
    deliverer = undefined
    await outbox.close()
    await rm(dir, { recursive: true, force: true })
  })

  const start = (options: Partial<DelivererOptions> = {}) => {
    deliverer = new Deliverer({
      outbox,
      config: { url: receiver.url, secret: receiver.secret, notifyTimeoutMs: 10_000, maxAgeMs: 60_000 },
      metrics: hookMetrics(registry, outbox),
      random: seededRandom(),
      pollMs: 50,
      baseDelayMs: 40,
      ...options,
    })
    deliverer.start()
    return deliverer
  }

  it('delivers every event once, signed, in order per upload, and leaves nothing pending', async () => {
    const events = Array.from({ length: 8 }, (_, u) => TYPES.map((type) => notification(`up-${u}`, type)))
    // Added as state changes would be: interleaved across uploads.
    for (const i of TYPES.keys()) await outbox.add(events.map((upload) => upload[i]!))
    start({ concurrency: 4 })
    await receiver.until((r) => r.delivered().length === 24)
    expect(receiver.requests.every((r) => r.verified)).toBe(true)
    const by = deliveredByUpload(receiver)
    for (const upload of events) expect(by.get(upload[0]!.uploadId)).toEqual(upload.map((e) => e.eventId))
    // The bytes sent are the bytes written with the state change.
    expect(
      receiver
        .delivered()
        .map((r) => r.raw)
        .sort(),
    ).toEqual(
      events
        .flat()
        .map((e) => e.body)
        .sort(),
    )
    await expect.poll(() => outbox.stats()).toEqual({ pending: 0, dead: 0, oldestQueuedAt: null })
    // The receiver has answered; the deliverer counts once it has acknowledged.
    await expect
      .poll(() => metric(registry, 'hook_deliveries_total', { event: 'completed', outcome: 'delivered' }))
      .toBe(8)
    expect(await metric(registry, 'hook_pending_events')).toBe(0)
  })

  it('retries a failing receiver with growing delays, the same eventId and bytes each time, until it answers 2xx', async () => {
    receiver.failNext(3)
    const only = notification('up-retry', 'completed')
    await outbox.add([only])
    start()
    await receiver.until((r) => r.delivered().length === 1)
    expect(receiver.requests.map((r) => r.status)).toEqual([500, 500, 500, 204])
    expect(new Set(receiver.requests.map((r) => r.raw))).toEqual(new Set([only.body]))
    await expect
      .poll(() => metric(registry, 'hook_deliveries_total', { event: 'completed', outcome: 'delivered' }))
      .toBe(1)
    expect(await metric(registry, 'hook_deliveries_total', { event: 'completed', outcome: 'failed' })).toBe(3)
    // Backoff: at least half of 40, 80, 160 ms between attempts (no upper bound: the machine may be busy).
    const at = receiver.requests.map((r) => r.arrivedAt)
    const gaps = at.slice(1).map((t, i) => t - at[i]!)
    ;[20, 40, 80].forEach((least, i) => expect(gaps[i]).toBeGreaterThanOrEqual(least))
  })

  it('gives up on an answer later than HOOKS_NOTIFY_TIMEOUT, even when a collection runs while it waits, and sends it again', async () => {
    const late = notification('up-late', 'completed')
    // The first attempt is answered long after the timeout; a delivery that missed its timeout would take it.
    receiver.answerWith((payload) =>
      receiver.arrived.length === 1 && payload.eventId === late.eventId
        ? { status: 204, delayMs: 3_000 }
        : undefined,
    )
    await outbox.add([late])
    start({ config: { url: receiver.url, secret: receiver.secret, notifyTimeoutMs: 300, maxAgeMs: 60_000 } })
    await receiver.until((r) => r.arrived.length === 1)
    // A full collection while it waits: what only weak references hold goes.
    collect()
    await receiver.until((r) => r.delivered().length === 1, 5_000)
    expect(receiver.arrived.map((p) => p.eventId)).toEqual([late.eventId, late.eventId])
    expect(await metric(registry, 'hook_deliveries_total', { event: 'completed', outcome: 'failed' })).toBe(1)
  })

  it('does not hold one upload’s events behind another’s slow delivery, and holds that upload’s own next', async () => {
    const slow = [notification('slow', 'received'), notification('slow', 'completed')]
    receiver.answerWith((payload) =>
      payload.eventId === slow[0]!.eventId ? { status: 204, delayMs: 3_000 } : undefined,
    )
    await outbox.add(slow)
    const fast = ['a', 'b', 'c'].map((id) => notification(id, 'completed'))
    await outbox.add(fast)
    start()
    await receiver.until((r) => fast.every((e) => r.delivered().some((d) => d.payload.eventId === e.eventId)))
    // The slow upload's first is still being answered; its second has not been sent.
    expect(receiver.arrived.filter((p) => p.upload.id === 'slow').map((p) => p.eventId)).toEqual([
      slow[0]!.eventId,
    ])
    await receiver.until(
      (r) => r.delivered().filter((d) => d.payload.upload.id === 'slow').length === 2,
      20_000,
    )
    expect(deliveredByUpload(receiver).get('slow')).toEqual(slow.map((e) => e.eventId))
    // Sent once: its claim outlasted the slow answer (a shorter lease would have sent it again meanwhile).
    expect(receiver.arrived.filter((p) => p.eventId === slow[0]!.eventId)).toHaveLength(1)
  })

  it('dead-letters an event still failing after HOOKS_MAX_AGE, counts it, and goes on with its upload’s next', async () => {
    const [doomed, next] = [notification('up-dead', 'completed'), notification('up-dead', 'deleted')]
    receiver.answerWith((payload) => (payload.eventId === doomed.eventId ? { status: 503 } : undefined))
    await outbox.add([doomed, next])
    start({ config: { url: receiver.url, secret: receiver.secret, notifyTimeoutMs: 10_000, maxAgeMs: 300 } })
    await receiver.until((r) => r.delivered().some((d) => d.payload.eventId === next.eventId))
    expect(await outbox.deadLetters(10)).toMatchObject([
      { eventId: doomed.eventId, lastError: 'the hook answered 503' },
    ])
    expect(await metric(registry, 'hook_dead_letters')).toBe(1)
    expect(
      await metric(registry, 'hook_deliveries_total', { event: 'completed', outcome: 'dead_lettered' }),
    ).toBe(1)
    expect(receiver.delivered().map((d) => d.payload.eventId)).toEqual([next.eventId])
  })

  it('reports the pending count and the oldest pending age while the receiver is down', async () => {
    receiver.answerWith(() => ({ status: 500 }))
    const old = { ...notification('up-old', 'completed'), createdAt: Date.now() - 90_000 }
    await outbox.add([old, notification('up-new', 'completed')])
    start()
    await receiver.until((r) => r.requests.length >= 2)
    expect(await metric(registry, 'hook_pending_events')).toBe(2)
    expect(await metric(registry, 'hook_oldest_pending_age_seconds')).toBeGreaterThanOrEqual(90)
  })

  it('delivers after a restart what a process killed with SIGKILL had written but not sent', async () => {
    const file = join(dir, 'killed.json')
    const written = [notification('up-kill', 'received'), notification('up-kill', 'completed')]
    const module = fileURLToPath(new URL('../dist/seams/records/local.js', import.meta.url))
    const script = `
      const { LocalStore } = await import(${JSON.stringify(module)})
      const outbox = (await LocalStore.open(process.argv[1])).outbox()
      await outbox.add(JSON.parse(process.argv[2]))
      process.stdout.write('added\\n')
      setInterval(() => {}, 1000)
    `
    const child = spawn(
      process.execPath,
      ['--input-type=module', '-e', script, file, JSON.stringify(written)],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    )
    const exited = once(child, 'exit')
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (chunk: Buffer) => chunk.toString().includes('added') && resolve())
        void exited.then(() => reject(new Error('the child exited before it added')))
      })
    } finally {
      child.kill('SIGKILL')
      await exited
    }
    await outbox.close()
    outbox = await openOutbox(file)
    start()
    await receiver.until((r) => r.delivered().length === 2)
    expect(receiver.delivered().map((d) => d.payload.eventId)).toEqual(written.map((e) => e.eventId))
  })
})

describe('backoff', () => {
  it('doubles from the base up to the cap, with jitter between half and all of each step', () => {
    const random = seededRandom()
    for (let attempts = 0; attempts < 12; attempts++) {
      const full = Math.min(60_000, 1000 * 2 ** attempts)
      const delay = backoff(attempts, random, 1000, 60_000)
      expect(delay).toBeGreaterThanOrEqual(full / 2)
      expect(delay).toBeLessThanOrEqual(full)
    }
    // Jitter: the same step twice is (with this seed) not the same delay.
    const r = seededRandom()
    expect(backoff(5, r, 1000, 60_000)).not.toBe(backoff(5, r, 1000, 60_000))
  })
})

describe('delivering notifications from Redis, with three instances', () => {
  let redis: TestRedis
  let receiver: HookReceiver
  beforeAll(async () => {
    redis = await startRedis()
    receiver = await startHookReceiver()
  })
  afterAll(async () => {
    await receiver.stop()
    await redis.stop()
  })

  it('counts a delivery the receiver took as delivered when its acknowledgement fails, and acknowledges it once the outbox is back', async () => {
    // The deliverer's own Redis user: its rights are taken away (NOPERM on every command) while the
    // receiver holds its answer, so the acknowledgement after the 2xx fails for real.
    const admin = redis.client()
    await admin.call('ACL', 'SETUSER', 'deliverer', 'on', '>deliverer-pw', '~*', '&*', '+@all')
    const client = new Redis(redis.url, {
      username: 'deliverer',
      password: 'deliverer-pw',
      maxRetriesPerRequest: 1,
    })
    client.on('error', () => undefined)
    const outbox = new RedisOutbox(client, 'node-ack', 'ackfail')
    const registry = new Registry()
    const only = notification('ack-fails', 'completed')
    await outbox.add([only])
    receiver.requests.length = 0
    receiver.answerWith(() => ({ status: 204, delayMs: 500 }))
    const deliverer = new Deliverer({
      outbox,
      config: { url: receiver.url, secret: receiver.secret, notifyTimeoutMs: 2_000, maxAgeMs: 1 },
      metrics: hookMetrics(registry, outbox),
      random: seededRandom(7),
      pollMs: 50,
    })
    try {
      deliverer.start()
      await receiver.until((r) => r.arrived.some((p) => p.eventId === only.eventId))
      await admin.call('ACL', 'SETUSER', 'deliverer', '-@all')
      await receiver.until((r) => r.delivered().length === 1)
      // Delivered, not failed, and never dead-lettered (HOOKS_MAX_AGE here is 1 ms).
      await expect
        .poll(() => metric(registry, 'hook_deliveries_total', { event: 'completed', outcome: 'delivered' }))
        .toBe(1)
      await admin.call('ACL', 'SETUSER', 'deliverer', '+@all')
      // Acknowledged once the outbox answers again (asked again, or sent again and acknowledged then).
      await expect.poll(() => outbox.stats(), { timeout: 15_000 }).toMatchObject({ pending: 0, dead: 0 })
      expect(await metric(registry, 'hook_deliveries_total', { event: 'completed', outcome: 'failed' })).toBe(
        0,
      )
      expect(
        await metric(registry, 'hook_deliveries_total', { event: 'completed', outcome: 'dead_lettered' }),
      ).toBe(0)
    } finally {
      await deliverer.stop()
      client.disconnect()
      receiver.answerWith(undefined)
      receiver.requests.length = 0
    }
  })

  it('delivers every event, in order per upload, once each, and takes over a killed instance’s claims', async () => {
    const LEASE_MS = 600
    const outboxes: Outbox[] = ['a', 'b', 'c'].map(
      (name) => new RedisOutbox(redis.client(), `node-${name}`, 'three'),
    )
    const events = Array.from({ length: 10 }, (_, u) => TYPES.map((type) => notification(`r-${u}`, type)))
    for (const i of TYPES.keys()) await outboxes[0]!.add(events.map((upload) => upload[i]!))
    // Instance c claims four uploads' heads and dies holding them, before sending anything.
    const doomedClient = redis.client()
    const held = await new RedisOutbox(doomedClient, 'node-c', 'three').claim(Date.now(), 4, LEASE_MS)
    expect(held).toHaveLength(4)
    doomedClient.disconnect()
    const deliverers = outboxes.slice(0, 2).map((outbox, i) => {
      const deliverer = new Deliverer({
        outbox,
        config: { url: receiver.url, secret: receiver.secret, notifyTimeoutMs: 10_000, maxAgeMs: 60_000 },
        random: seededRandom(i + 1),
        pollMs: 50,
        concurrency: 3,
      })
      deliverer.start()
      return deliverer
    })
    try {
      await receiver.until((r) => r.delivered().length === 30, 20_000)
      const by = deliveredByUpload(receiver)
      for (const upload of events) expect(by.get(upload[0]!.uploadId)).toEqual(upload.map((e) => e.eventId))
      await expect.poll(() => outboxes[1]!.stats()).toEqual({ pending: 0, dead: 0, oldestQueuedAt: null })
      // Once each: nobody sent an event twice (no delivery here outlasted its claim).
      expect(receiver.requests).toHaveLength(30)
    } finally {
      await Promise.all(deliverers.map((d) => d.stop()))
    }
  })
})
