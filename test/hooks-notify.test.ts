import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { NOTIFICATIONS } from '../src/hooks/config.js'
import type { HookPayload } from '../src/hooks/payload.js'
import { spawnServer, type ChildServer } from './support/child.js'
import { api, bytes, gql, restUpload, waitFor, waitForStatus } from './support/clients.js'
import { notificationsOf } from '../src/core/machine.js'
import { sign } from '../src/hooks/sign.js'
import { freePort, startRedis, type TestRedis } from './support/redis.js'
import { startHookReceiver, type HookReceiver } from './support/hook-receiver.js'
import { restartableServer, type RestartableServer } from './support/restartable.js'
import { AUDIENCE, ISSUER, mintHsToken } from './support/tokens.js'

/** Only the notifications (the blocking hooks may ask the same receiver too). */
const told = (payloads: readonly HookPayload[]) =>
  payloads.filter((p) => (NOTIFICATIONS as readonly string[]).includes(p.type))

/** Each upload's notification types, in the order the receiver acknowledged them. */
function byUpload(receiver: HookReceiver): Map<string, string[]> {
  const seen = new Map<string, string[]>()
  for (const { payload } of receiver.delivered()) {
    if (!told([payload]).length) continue
    seen.set(payload.upload.id, [...(seen.get(payload.upload.id) ?? []), payload.type])
  }
  return seen
}

const delivered = (receiver: HookReceiver, id: string, type: string) =>
  receiver.delivered().some((r) => r.payload.upload?.id === id && r.payload.type === type)

async function journalLines(dir: string): Promise<Record<string, unknown>[]> {
  const names = (await readdir(dir)).filter((name) => /^\.uploads\.journal\.\d+$/.test(name))
  const lines: Record<string, unknown>[] = []
  for (const name of names)
    for (const line of (await readFile(join(dir, name), 'utf8')).split('\n').filter(Boolean))
      lines.push(JSON.parse(line) as Record<string, unknown>)
  return lines
}

let receiver: HookReceiver
const dirs: string[] = []
const servers: ChildServer[] = []
beforeAll(async () => {
  receiver = await startHookReceiver()
})
afterAll(() => receiver.stop())
beforeEach(() => {
  receiver.requests.length = 0
  receiver.arrived.length = 0
  receiver.failNext(0)
  receiver.answerWith(undefined)
})
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.child.kill('SIGKILL')
    await server.exited
  }
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true })
})

const NOTIFIED = NOTIFICATIONS.join(',')

async function server(env: Record<string, string> = {}, shared?: string) {
  const dir = shared ?? (await mkdtemp(join(tmpdir(), 'hooks-notify-')))
  if (!shared) dirs.push(dir)
  // These tests are about notifications; the blocking hooks have their own file (hooks-blocking.test.ts).
  const hooks = { HOOKS_URL: receiver.url, HOOKS_SECRET: receiver.secret, HOOKS_EVENTS: NOTIFIED }
  const started = await spawnServer(dir, { ...hooks, ...env })
  servers.push(started)
  return { url: started.url, dir, child: started }
}

interface Deliveries {
  hookDeliveries: {
    pendingCount: number
    deadLetterCount: number
    pending: { eventId: string; type: string; attempts: number }[]
    deadLetters: { eventId: string; uploadId: string; type: string; attempts: number; lastError: string }[]
  }
}
const DELIVERIES = `{ hookDeliveries { pendingCount deadLetterCount
  pending { eventId type attempts } deadLetters { eventId uploadId type attempts lastError } } }`

const metric = async (url: string, line: RegExp) => {
  const text = await (await fetch(`${url}/metrics`)).text()
  return Number(line.exec(text)?.[1] ?? NaN)
}

describe('notifications (HOOKS_URL)', () => {
  it('a small body stored whole from memory is one change on record, heard as received, then completed', async () => {
    const { url, dir } = await server()
    const id = (await restUpload(url, bytes(16), { filename: 'whole.bin', speed: 0 })).body.upload_id
    await receiver.until(() => delivered(receiver, id, 'completed'))
    expect(byUpload(receiver).get(id)).toEqual(['received', 'completed'])
    // Each carries the status the change left it in: COMPLETED already (a staged body's says IN_PROGRESS).
    const statusIn = (type: string) =>
      receiver.arrived.find((p) => p.type === type && p.upload.id === id)?.upload.status
    expect([statusIn('received'), statusIn('completed')]).toEqual(['COMPLETED', 'COMPLETED'])
    const puts = (await journalLines(dir))
      .map((line) => line.put as { id: string; status: string } | undefined)
      .filter((put) => put?.id === id)
      .map((put) => put?.status)
    expect(puts).toEqual(['RECEIVING', 'COMPLETED'])
  })

  it('tells the receiver each upload’s outcome in order, signed, with the file’s size, sha256 and a link that serves it', async () => {
    const { url } = await server()
    const content = bytes(3000)
    const kept = (await restUpload(url, content, { filename: 'kept.bin', speed: 10_000_000 })).body.upload_id
    const slow = (await restUpload(url, bytes(200_000), { filename: 'slow.bin', speed: 1000 })).body.upload_id
    await waitForStatus(url, kept, 'completed')
    expect((await api(url, 'POST', `/api/upload/${slow}/cancel`)).status).toBe(200)
    expect((await api(url, 'DELETE', `/api/files/${kept}`)).status).toBe(200)
    await receiver.until(() => delivered(receiver, kept, 'deleted') && delivered(receiver, slow, 'canceled'))
    const order = byUpload(receiver)
    expect(order.get(kept)).toEqual(['received', 'completed', 'deleted'])
    expect(receiver.arrived.find((p) => p.type === 'received' && p.upload.id === kept)?.upload.status).toBe(
      'IN_PROGRESS',
    )
    expect(order.get(slow)).toEqual(['received', 'canceled'])
    const completed = receiver.delivered().find((r) => r.payload.type === 'completed')!.payload
    expect(completed.upload).toMatchObject({
      id: kept,
      filename: 'kept.bin',
      size: 3000,
      status: 'COMPLETED',
      sha256: createHash('sha256').update(content).digest('hex'),
    })
    expect(completed.downloadUrl).toBe(`${url}/api/files/${kept}/download`)
    // Every event has its own id; every request was signed (the receiver verified each).
    const ids = told(receiver.arrived).map((p) => p.eventId)
    expect(new Set(ids).size).toBe(ids.length)
    expect(receiver.requests.every((r) => r.verified)).toBe(true)
  })

  it('the completed event’s link serves the file to the receiver', async () => {
    const { url } = await server()
    const content = bytes(5000)
    const id = (await restUpload(url, content, { speed: 10_000_000 })).body.upload_id
    await receiver.until(() => delivered(receiver, id, 'completed'))
    const link = receiver.delivered().find((r) => r.payload.type === 'completed')!.payload.downloadUrl!
    const served = Buffer.from(await (await fetch(link)).arrayBuffer())
    expect(served.equals(content)).toBe(true)
  })

  it('sends only the events HOOKS_EVENTS lists', async () => {
    const { url } = await server({ HOOKS_EVENTS: 'completed' })
    const id = (await restUpload(url, bytes(1000), { speed: 10_000_000 })).body.upload_id
    await receiver.until(() => delivered(receiver, id, 'completed'))
    await api(url, 'DELETE', `/api/files/${id}`)
    // A second upload's completion, after the deletion, is the fence: had `deleted` gone out, it came first.
    const next = (await restUpload(url, bytes(1000), { speed: 10_000_000 })).body.upload_id
    await receiver.until(() => delivered(receiver, next, 'completed'))
    expect(told(receiver.arrived).map((p) => p.type)).toEqual(['completed', 'completed'])
  })

  it('writes each event in the same journal line as the change that causes it, and nothing more without HOOKS_URL', async () => {
    const { url, dir } = await server()
    const id = (await restUpload(url, bytes(1000), { speed: 10_000_000 })).body.upload_id
    await receiver.until(() => delivered(receiver, id, 'completed'))
    const withHooks = await journalLines(dir)
    const completedLine = withHooks.find(
      (line) => (line.put as { status?: string } | undefined)?.status === 'COMPLETED',
    )
    expect((completedLine?.ev as { type: string }[]).map((e) => e.type)).toEqual(['completed'])

    const plain = await server({ HOOKS_URL: '', HOOKS_SECRET: '' })
    const other = (await restUpload(plain.url, bytes(1000), { speed: 10_000_000 })).body.upload_id
    await waitForStatus(plain.url, other, 'completed')
    await api(plain.url, 'DELETE', `/api/files/${other}`)
    const lines = await journalLines(plain.dir)
    expect(lines.length).toBeGreaterThan(0)
    // Without hooks: record changes only (no events, no outbox lines), as before hooks existed.
    expect(lines.filter((line) => 'ev' in line || 'o' in line)).toEqual([])
  })
})

describe('notifications of a user’s upload (AUTH_*)', () => {
  it('carry the metadata kept on it and its owner, as pre-create and pre-finish do, and a download link signed at each attempt that serves the file', async () => {
    const secret = 'hooks-notify-jwt-secret-0123456789'
    const { url } = await server({
      AUTH_JWT_SECRET: secret,
      AUTH_ISSUER: ISSUER,
      AUTH_AUDIENCE: AUDIENCE,
      HOOKS_EVENTS: '', // every event: pre-create keeps metadata, pre-finish and the notifications see it
    })
    const completedAttempts = () => receiver.arrived.filter((p) => p.type === 'completed')
    receiver.answerWith((payload) => {
      if (payload.type === 'pre-create') return { status: 200, body: { metadata: { tenant: 'acme' } } }
      // The first attempt is held past a second, then refused: the retry is signed at a later second.
      if (payload.type === 'completed' && completedAttempts().length === 1)
        return { status: 500, delayMs: 1100 }
      return undefined
    })
    const content = bytes(4000)
    const alice = await mintHsToken(secret, 'alice')
    const started = await restUpload(url, content, {
      speed: 10_000_000,
      headers: { authorization: `Bearer ${alice}` },
    })
    const id = started.body.upload_id
    await receiver.until(() => delivered(receiver, id, 'completed'))
    const of = (type: string) => receiver.arrived.filter((p) => p.type === type && p.upload.id === id)
    expect(of('pre-create')[0]?.upload.owner).toBe('alice')
    expect(of('pre-finish')[0]?.upload).toMatchObject({ owner: 'alice', metadata: { tenant: 'acme' } })
    for (const type of ['received', 'completed'])
      expect(of(type)[0]?.upload).toMatchObject({ owner: 'alice', metadata: { tenant: 'acme' } })
    // Each attempt's link is signed when it is sent (the AUTH_* link, bound to the owner), so a late one works.
    const links = of('completed').map((p) => p.downloadUrl ?? '')
    expect(links).toHaveLength(2)
    const expiry = (link: string) => {
      const grant = new URL(link).searchParams.get('link')?.split('.')[0] ?? ''
      return (JSON.parse(Buffer.from(grant, 'base64url').toString()) as [string, string, number])[2]
    }
    expect(expiry(links[1]!)).toBeGreaterThan(expiry(links[0]!))
    const served = await fetch(links[1]!)
    expect(served.status).toBe(200)
    expect(Buffer.from(await served.arrayBuffer()).equals(content)).toBe(true)
  })
})

describe('a failed upload’s notification', () => {
  it('carries the reason, and is sent again when the receiver answers later than HOOKS_NOTIFY_TIMEOUT', async () => {
    const { url } = await server({ HOOKS_EVENTS: 'pre-finish,failed', HOOKS_NOTIFY_TIMEOUT: '1s' })
    const attempts = () => receiver.arrived.filter((p) => p.type === 'failed')
    receiver.answerWith((payload) => {
      if (payload.type === 'pre-finish')
        return { status: 200, body: { reject: { status: 422, message: 'Malware found' } } }
      // The first attempt is answered after the timeout: it counts as failed, and the event goes again.
      if (payload.type === 'failed' && attempts().length === 1) return { status: 204, delayMs: 3000 }
      return undefined
    })
    const id = (await restUpload(url, bytes(2000), { speed: 10_000_000 })).body.upload_id
    await receiver.until(() => attempts().length >= 2)
    const [first, second] = attempts()
    expect(second?.eventId).toBe(first?.eventId)
    expect(first).toMatchObject({ upload: { id, status: 'FAILED' }, reason: 'Malware found' })
    await receiver.until(() => delivered(receiver, id, 'failed'))
  })
})

describe('which change causes which notification (the machine)', () => {
  it('the body arriving whole, each end, and a deletion; nothing for a forgotten arrival or the same status again', () => {
    expect(notificationsOf(undefined, 'RECEIVING')).toEqual([])
    expect(notificationsOf('RECEIVING', 'IN_PROGRESS')).toEqual(['received'])
    expect(notificationsOf('IN_PROGRESS', 'PAUSED')).toEqual([])
    expect(notificationsOf('PAUSED', 'COMPLETED')).toEqual(['completed'])
    expect(notificationsOf('IN_PROGRESS', 'FAILED')).toEqual(['failed'])
    expect(notificationsOf('RECEIVING', 'FAILED')).toEqual(['failed']) // expired before it arrived
    expect(notificationsOf('RECEIVING', 'CANCELED')).toEqual(['canceled'])
    // Recovery finding a tus body whole on disk, never recorded as arrived, and completing it.
    expect(notificationsOf('RECEIVING', 'COMPLETED')).toEqual(['received', 'completed'])
    expect(notificationsOf('COMPLETED', 'COMPLETED')).toEqual([])
    expect(notificationsOf('COMPLETED', 'removed')).toEqual(['deleted'])
    expect(notificationsOf('RECEIVING', 'removed')).toEqual([])
  })
})

describe('the README’s example receiver', () => {
  it('verifies the signature, drops what it has seen, and hears an upload’s events', async () => {
    const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8')
    const section = readme.slice(readme.indexOf('### Notifications'))
    const code = /```js\n([\s\S]*?)```/.exec(section)?.[1]
    expect(code).toBeDefined()
    const dir = await mkdtemp(join(tmpdir(), 'readme-receiver-'))
    dirs.push(dir)
    await writeFile(join(dir, 'receiver.mjs'), code!)
    const port = await freePort()
    const child = spawn(process.execPath, [join(dir, 'receiver.mjs')], {
      env: { ...process.env, PORT: String(port), HOOKS_SECRET: receiver.secret },
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    let out = ''
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()))
    const exited = once(child, 'exit')
    try {
      const hookUrl = `http://127.0.0.1:${port}/`
      await waitFor(() =>
        fetch(hookUrl, { method: 'POST', body: '{}' }).then(
          (r) => r.status,
          () => false,
        ),
      )
      // A forged body is refused, a signed one taken (and heard once, however often it is sent).
      const body = JSON.stringify({ eventId: 'e1', type: 'deleted', upload: { id: 'u1' } })
      const forged = await fetch(hookUrl, {
        method: 'POST',
        body,
        headers: { 'x-hook-signature': sign('wrong-secret-0123456789', body) },
      })
      expect(forged.status).toBe(401)
      for (let i = 0; i < 2; i++) {
        const good = await fetch(hookUrl, {
          method: 'POST',
          body,
          headers: { 'x-hook-signature': sign(receiver.secret, body) },
        })
        expect(good.status).toBe(204)
      }
      // Every event, as HOOKS_EVENTS sends when unset: its 204 accepts pre-create and pre-finish too.
      const { url } = await server({ HOOKS_URL: hookUrl, HOOKS_EVENTS: '' })
      const id = (await restUpload(url, bytes(1000), { speed: 10_000_000 })).body.upload_id
      await waitFor(() => out.includes(`"type":"completed","upload":"${id}"`), 15_000)
      const lines = out
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { type: string; upload: string; url?: string })
      expect(lines.map((l) => l.type)).toEqual([
        'deleted',
        'pre-create',
        'received',
        'pre-finish',
        'completed',
      ])
      expect(lines[4]!.url).toBe(`${url}/api/files/${id}/download`)
    } finally {
      child.kill('SIGKILL')
      await exited
    }
  })
})

describe('notifications the receiver keeps refusing', () => {
  it('are retried with growing delays, then dead-lettered (listed, counted, logged); retryHookDelivery sends one again', async () => {
    const { url, child } = await server({ HOOKS_MAX_AGE: '2s' })
    receiver.answerWith(() => ({ status: 503 }))
    const form = new FormData()
    form.append('file', new Blob([bytes(1000)]), 'data.bin')
    const answer = await fetch(`${url}/api/upload?speed=10000000`, {
      method: 'POST',
      body: form,
      headers: { 'x-request-id': 'hook-test-7' },
    })
    const id = ((await answer.json()) as { upload_id: string }).upload_id
    const dead = await waitFor(async () => {
      const { data } = await gql<Deliveries>(url, DELIVERIES)
      return data?.hookDeliveries.deadLetterCount === 2 && data.hookDeliveries
    }, 20_000)
    expect(dead.pendingCount).toBe(0)
    expect(dead.deadLetters.map((d) => [d.uploadId, d.type])).toEqual([
      [id, 'received'],
      [id, 'completed'],
    ])
    expect(dead.deadLetters[0]).toMatchObject({ lastError: 'the hook answered 503' })
    // The same event each time, each wait longer than the one before it (backoff).
    const received = dead.deadLetters[0]!.eventId
    const times = receiver.requests.filter((r) => r.payload.eventId === received).map((r) => r.arrivedAt)
    expect(times.length).toBe(dead.deadLetters[0]!.attempts)
    expect(times.length).toBeGreaterThanOrEqual(2)
    const gaps = times.slice(1).map((t, i) => t - times[i]!)
    for (let i = 1; i < gaps.length; i++) expect(gaps[i]).toBeGreaterThan(gaps[i - 1]!)
    expect(await metric(url, /^hook_dead_letters(?:\{[^}]*\})? (\d+)$/m)).toBe(2)
    expect(
      await metric(
        url,
        /^hook_deliveries_total\{[^}]*event="received"[^}]*outcome="dead_lettered"[^}]*\} (\d+)$/m,
      ),
    ).toBe(1)
    expect(child.output()).toContain('"hook.dead_lettered"')
    // The request that caused the events is in them, and in every failed delivery's log line.
    expect(receiver.arrived.find((p) => p.type === 'received')?.requestId).toBe('hook-test-7')
    const failures = child
      .output()
      .split('\n')
      .filter((line) => line.includes('"hook.delivery_failed"') || line.includes('"hook.dead_lettered"'))
    expect(failures.length).toBeGreaterThanOrEqual(3)
    for (const line of failures.filter((l) => l.includes('"type":"received"')))
      expect(line).toContain('"requestId":"hook-test-7"')

    // The receiver is back; an operator retries the received event.
    receiver.answerWith(undefined)
    const retried = await gql<{ retryHookDelivery: { eventId: string } }>(
      url,
      'mutation ($id: ID!) { retryHookDelivery(eventId: $id) { eventId } }',
      { id: received },
    )
    expect(retried.data?.retryHookDelivery.eventId).toBe(received)
    await receiver.until(() => receiver.delivered().some((r) => r.payload.eventId === received))
    const after = (await gql<Deliveries>(url, DELIVERIES)).data!.hookDeliveries
    expect(after.deadLetters.map((d) => d.type)).toEqual(['completed'])
    // An id that is no dead letter is NOT_FOUND.
    const missing = await gql(url, 'mutation { retryHookDelivery(eventId: "nope") { eventId } }')
    expect(missing.errors?.[0]?.extensions?.code).toBe('NOT_FOUND')
  }, 60_000)
})

describe('notifications among three instances over Redis', () => {
  let redis: TestRedis
  beforeAll(async () => {
    redis = await startRedis()
  })
  afterAll(() => redis.stop())

  it('a killed instance’s claimed deliveries are taken over: every event arrives, each upload’s in order', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hooks-cluster-'))
    dirs.push(dir)
    const env = (name: string) => ({ REDIS_URL: redis.url, INSTANCE_ID: name, HOOKS_NOTIFY_TIMEOUT: '2s' })
    const nodes = [
      await server(env('node-a'), dir),
      await server(env('node-b'), dir),
      await server(env('node-c'), dir),
    ]
    // Every delivery is taken and held unanswered: each stays claimed by the instance that sent it.
    receiver.answerWith(() => ({ delayMs: 600_000 }))
    const ids: string[] = []
    for (const [i, node] of nodes.entries())
      for (let n = 0; n < 3; n++)
        ids.push((await restUpload(node.url, bytes(1000 + i), { speed: 10_000_000 })).body.upload_id)
    await receiver.until(() => ids.every((id) => receiver.arrived.some((p) => p.upload?.id === id)))
    // The instance holding the most claims is the one killed.
    const client = redis.client()
    const holders = await Promise.all(
      (await client.keys('uploads:hook:claim:*')).map((key) => client.get(key)),
    )
    await client.quit()
    const held = (name: string) => holders.filter((h) => h?.startsWith(`${name}:`)).length
    const victim = ['node-a', 'node-b', 'node-c'].sort((a, b) => held(b) - held(a))[0]!
    expect(held(victim)).toBeGreaterThan(0)
    const killed = nodes[['node-a', 'node-b', 'node-c'].indexOf(victim)]!.child
    killed.child.kill('SIGKILL')
    await killed.exited
    receiver.answerWith(undefined)
    await receiver.until(() => ids.every((id) => delivered(receiver, id, 'completed')), 60_000)
    const order = byUpload(receiver)
    for (const id of ids) expect(new Set(order.get(id))).toEqual(new Set(['received', 'completed']))
    // In order: no upload's completed was acknowledged before its received.
    for (const id of ids) expect(order.get(id)?.indexOf('received')).toBe(0)
  }, 120_000)
})

describe('notifications across a crash', () => {
  let restartable: RestartableServer | undefined
  afterEach(async () => {
    await restartable?.stop()
    restartable = undefined
  })

  it('delivers after a restart the completion a server SIGKILLed before its delivery had written', async () => {
    restartable = await restartableServer({
      HOOKS_URL: receiver.url,
      HOOKS_SECRET: receiver.secret,
      HOOKS_EVENTS: NOTIFIED,
    })
    // The receiver takes every notification but never answers: none is acknowledged before the kill.
    receiver.answerWith(() => ({ delayMs: 600_000 }))
    const id = (await restUpload(restartable.url, bytes(2000), { speed: 10_000_000 })).body.upload_id
    await receiver.until(() => receiver.arrived.some((p) => p.type === 'received' && p.upload.id === id))
    await waitForStatus(restartable.url, id, 'completed')
    await restartable.kill('SIGKILL')
    expect(receiver.delivered()).toEqual([])
    receiver.answerWith(undefined)
    await restartable.start()
    await receiver.until(() => delivered(receiver, id, 'completed'))
    expect(byUpload(receiver).get(id)).toEqual(['received', 'completed'])
    // The same events as before the kill: a receiver dedupes by these ids.
    const before = told(receiver.arrived).find((p) => p.type === 'received')!.eventId
    expect(receiver.delivered().find((r) => r.payload.type === 'received')!.payload.eventId).toBe(before)
  })
})
