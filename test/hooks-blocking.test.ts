import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { HookPayload } from '../src/hooks/payload.js'
import { setLogLevel } from '../src/log.js'
import {
  api,
  bytes,
  gql,
  gqlUpload,
  restUpload,
  seededRandom,
  waitFor,
  waitForStatus,
} from './support/clients.js'
import { startHookReceiver, type HookAnswer, type HookReceiver } from './support/hook-receiver.js'
import { launchChromium } from './support/browser.js'
import { killAll, upctl } from './support/cli.js'
import { openDashboard } from './support/dashboard-page.js'
import { multipartHead, openRequest, partHead } from './support/raw.js'
import { freePort } from './support/redis.js'
import { listStorage, startServer, type TestServer } from './support/server.js'
import { tusCreate } from './support/tus.js'
import { spawnServer, type ChildServer } from './support/child.js'
import { AUDIENCE, ISSUER, mintHsToken } from './support/tokens.js'

/** A server whose HOOKS_URL nobody listens at, with `env` besides. */
async function serverWithHookDown(env: Record<string, string>): Promise<TestServer> {
  return startServer({
    HOOKS_URL: `http://127.0.0.1:${await freePort()}/hooks`,
    HOOKS_SECRET: 'a-secret-of-sixteen-chars',
    ...env,
  })
}

/** Ends a child server started here (SIGTERM; already ended is fine). */
async function stopChild(server: ChildServer) {
  if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGTERM')
  await server.exited
}

// The hook failures these tests cause on purpose are logged as warnings.
setLogLevel('error')

/**
 * The blocking hooks (issue 23) over every transport: pre-create decides before any byte is stored, and
 * its refusal reaches the client in its own protocol; pre-finish decides, after the bytes are verified,
 * whether the upload completes.
 */

let receiver: HookReceiver
let server: TestServer
const random = seededRandom(2312)
const content = (size: number) => {
  const data = bytes(size)
  for (let i = 0; i < size; i += 997) data[i] = Math.floor(random() * 256)
  return data
}

beforeAll(async () => {
  receiver = await startHookReceiver()
  server = await startServer({
    HOOKS_URL: receiver.url,
    HOOKS_SECRET: receiver.secret,
    HOOKS_EVENTS: 'pre-create,pre-finish',
    MAX_UPLOAD_SIZE: String(8 * 1024 ** 3),
  })
})
afterAll(async () => {
  await server?.stop()
  await receiver?.stop()
})
afterEach(() => receiver.answerWith(undefined))

/** The receiver refuses pre-create of `filename` with `status` and `message`; everything else is accepted. */
const refuseCreate = (filename: string, status: number, message: string, delayMs = 0) =>
  receiver.answerWith((payload): HookAnswer | undefined =>
    payload.type === 'pre-create' && payload.upload.filename === filename
      ? { status: 200, body: { reject: { status, message } }, delayMs }
      : undefined,
  )

const listed = async () =>
  (await api<{ uploads: { filename: string }[] }>(server.url, 'GET', '/api/uploads')).body.uploads
/** Every file in the storage folder: stored, staged, being transferred. */
const files = async () => {
  const { stored, staging, transfers } = await listStorage(server.dir)
  return [...stored, ...staging, ...transfers]
}
/** Nothing in the storage folder but what was there `before`. */
const nothingNew = (before: string[]) => async () => (await files()).every((name) => before.includes(name))
const asked = (filename: string, type = 'pre-create') =>
  receiver.arrived.filter((p) => p.type === type && p.upload.filename === filename)

describe('pre-create refuses before any byte is stored, in each client protocol', () => {
  it('REST: {"detail"} with the hook status (409), answered while the body is still coming; nothing stored or listed', async () => {
    const SIZE = 4 * 1024 ** 3
    const before = await files()
    // Held a moment, so what the server does with the bytes meanwhile can be seen.
    refuseCreate('rest-refused.bin', 409, 'A file of that name exists already in your folder', 1000)
    const request = openRequest(
      server.url,
      multipartHead('/api/upload?speed=5000', SIZE).replace(
        '\r\n\r\n',
        '\r\nAuthorization: Bearer caller-token\r\nX-Request-Id: rest-req-1\r\n\r\n',
      ),
    )
    request.write(partHead('file', 'rest-refused.bin'))
    request.write(bytes(256 * 1024))
    await receiver.until(() => asked('rest-refused.bin').length === 1)
    // While the hook decides, the file part waits unread: no byte of it reaches the storage folder.
    const whileAsked = setInterval(
      () => void files().then((now) => now.forEach((name) => before.includes(name) || seenStored.push(name))),
      50,
    )
    const seenStored: string[] = []
    const answer = await request.answer
    clearInterval(whileAsked)
    expect(seenStored).toEqual([])
    request.end()
    expect(answer.status).toBe(409)
    expect(JSON.parse(answer.body)).toEqual({ detail: 'A file of that name exists already in your folder' })
    // What the hook was asked: the protocol's shape, with the caller's request id and Authorization.
    const [payload] = asked('rest-refused.bin')
    expect(payload).toMatchObject({
      type: 'pre-create',
      transport: 'rest',
      requestId: 'rest-req-1',
      upload: { filename: 'rest-refused.bin', size: null, speed: 5000, status: 'RECEIVING', metadata: {} },
    })
    const request1 = receiver.requests.find((r) => r.payload.eventId === payload?.eventId)
    expect(request1?.headers['x-forwarded-authorization']).toBe('Bearer caller-token')
    await waitFor(nothingNew(before))
    expect((await listed()).map((u) => u.filename)).not.toContain('rest-refused.bin')
  })

  it('GraphQL multipart: extensions.code REJECTED with the message; nothing stored or listed', async () => {
    const before = await files()
    refuseCreate('gql-refused.bin', 422, 'Only images are accepted here')
    const { body } = await gqlUpload(
      server.url,
      'mutation ($file: File!) { uploadFile(file: $file) { id } }',
      {},
      content(300_000),
      'gql-refused.bin',
    )
    expect(body.errors?.[0]).toMatchObject({
      message: 'Only images are accepted here',
      extensions: { code: 'REJECTED' },
    })
    expect(asked('gql-refused.bin')[0]).toMatchObject({ transport: 'graphql' })
    await waitFor(nothingNew(before))
    expect((await listed()).map((u) => u.filename)).not.toContain('gql-refused.bin')
  })

  it('tus: the hook status and its message as the body at creation; no upload, no file', async () => {
    const before = await files()
    refuseCreate('tus-refused.bin', 403, 'Your quota is used up')
    const created = await tusCreate(server.url, 1000, { filename: 'tus-refused.bin', note: 'from tus' })
    expect(created.status).toBe(403)
    expect(created.body).toBe('Your quota is used up\n')
    expect(created.location).toBe('')
    expect(asked('tus-refused.bin')[0]).toMatchObject({
      transport: 'tus',
      upload: { size: 1000, metadata: { filename: 'tus-refused.bin', note: 'from tus' } },
    })
    expect(await nothingNew(before)()).toBe(true)
    expect((await listed()).map((u) => u.filename)).not.toContain('tus-refused.bin')
  })
})

describe('pre-create refusals reach the terminal and the browser clients', () => {
  afterEach(() => killAll())

  it('upctl put: one line naming the hook status and message, exit 1; nothing stored or listed', async () => {
    const work = await mkdtemp(join(tmpdir(), 'hooks-upctl-'))
    try {
      const path = join(work, 'cli-refused.bin')
      await writeFile(path, content(40_000))
      const before = await files()
      refuseCreate('cli-refused.bin', 451, 'Unavailable for legal reasons in your region')
      const run = await upctl(['put', path], {
        UPCTL_SERVER: server.url,
        UPCTL_STATE: join(work, 'state'),
        API_TOKEN: undefined,
      })
      expect(run.code).toBe(1)
      // Its final line says how the file ended: refused, in the hook's words.
      expect(run.stdout.trim().split('\n').at(-1)).toBe(
        'cli-refused.bin: failed: the server refused it: 451 Unavailable for legal reasons in your region',
      )
      expect(await nothingNew(before)()).toBe(true)
      expect((await listed()).map((u) => u.filename)).not.toContain('cli-refused.bin')
    } finally {
      await rm(work, { recursive: true, force: true })
    }
  })

  it('the dashboard (Chromium): the hook message is said on the page; nothing stored or listed', async () => {
    const browser = await launchChromium()
    try {
      const before = await files()
      refuseCreate('page-refused.bin', 413, 'Files over 10 kB need a paid plan')
      const { page } = await openDashboard(browser, server.url, 'desktop', { allowStatuses: [413] })
      page.setDefaultTimeout(20_000)
      await page.getByLabel('Choose or drop files').setInputFiles({
        name: 'page-refused.bin',
        mimeType: 'application/octet-stream',
        buffer: content(30_000),
      })
      await page.getByRole('button', { name: 'Upload', exact: true }).click()
      await page
        .getByRole('status')
        .filter({ hasText: 'page-refused.bin was not sent: Files over 10 kB need a paid plan' })
        .waitFor()
      expect(await page.locator('#uploads td.name:text-is("page-refused.bin")').count()).toBe(0)
      expect(await nothingNew(before)()).toBe(true)
      expect((await listed()).map((u) => u.filename)).not.toContain('page-refused.bin')
      await page.close()
    } finally {
      await browser.close()
    }
  }, 60_000)
})

describe('pre-create accepts with changes', () => {
  it('the speed, filename and metadata it answers are the upload’s, on REST, GraphQL and tus', async () => {
    receiver.answerWith((payload) =>
      payload.type === 'pre-create' && payload.upload.filename.startsWith('rename-me')
        ? {
            status: 200,
            body: {
              speed: 1_000_000,
              filename: `approved-${payload.transport}.bin`,
              metadata: { tenant: 'acme' },
            },
          }
        : undefined,
    )
    const form = new FormData()
    form.append('file', new Blob([content(20_000)]), 'rename-me.bin')
    const rest = await fetch(`${server.url}/api/upload?speed=100`, { method: 'POST', body: form })
    const restBody = (await rest.json()) as { upload_id: string; speed: number }
    expect(rest.status).toBe(200)
    expect(restBody.speed).toBe(1_000_000)
    const { body } = await gqlUpload<{ uploadFile: { id: string; filename: string; targetSpeed: number } }>(
      server.url,
      'mutation ($file: File!) { uploadFile(file: $file, speed: 100) { id filename targetSpeed } }',
      {},
      content(20_000),
      'rename-me.bin',
    )
    expect(body.data?.uploadFile).toMatchObject({ filename: 'approved-graphql.bin', targetSpeed: 1_000_000 })
    const tus = await tusCreate(server.url, 0, { filename: 'rename-me.bin', speed: '100' })
    expect(tus.status).toBe(201)
    for (const [id, name] of [
      [restBody.upload_id, 'approved-rest.bin'],
      [body.data?.uploadFile.id ?? '', 'approved-graphql.bin'],
      [tus.id, 'approved-tus.bin'],
    ] as const) {
      const done = await waitForStatus(server.url, id, 'completed')
      expect(done).toMatchObject({ filename: name, target_speed: 1_000_000 })
      // The metadata it asked to keep is on the record, and survives a read back.
      expect((await server.app.service.get(id)).metadata).toEqual({ tenant: 'acme' })
    }
  })
})

describe('pre-finish', () => {
  it('refused: FAILED with the hook message as the reason (GraphQL, the subscription), and no file left', async () => {
    receiver.answerWith((payload) =>
      payload.type === 'pre-finish' && payload.upload.filename === 'infected.bin'
        ? {
            status: 200,
            body: { reject: { status: 422, message: 'Malware found: EICAR test file' } },
            // Long enough for the subscription below to be listening when the verdict comes.
            delayMs: 1000,
          }
        : undefined,
    )
    const data = content(50_000)
    const form = new FormData()
    form.append('file', new Blob([data]), 'infected.bin')
    const started = (await (
      await fetch(`${server.url}/api/upload`, { method: 'POST', body: form })
    ).json()) as { upload_id: string }
    const id = started.upload_id
    const stream = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({
        query: 'subscription ($id: ID!) { uploadProgress(id: $id) { status error } }',
        variables: { id },
      }),
    })
    // The stream ends when the subscription does: at the upload's final state.
    const events = [...(await stream.text()).matchAll(/^data: (.*)$/gm)].map(
      (m) => (JSON.parse(m[1] ?? '{}') as { data?: { uploadProgress: unknown } }).data?.uploadProgress,
    )
    expect(events.at(-1)).toEqual({ status: 'FAILED', error: 'Malware found: EICAR test file' })
    await waitForStatus(server.url, id, 'failed')
    const { data: seen } = await gql<{ upload: { status: string; error: string } }>(
      server.url,
      'query ($id: ID!) { upload(id: $id) { status error } }',
      { id },
    )
    expect(seen?.upload).toEqual({ status: 'FAILED', error: 'Malware found: EICAR test file' })
    // REST's status says why too.
    expect((await api(server.url, 'GET', `/api/upload/${id}/status`)).body).toMatchObject({
      status: 'failed',
      error: 'Malware found: EICAR test file',
    })
    const [payload] = asked('infected.bin', 'pre-finish')
    expect(payload?.upload).toMatchObject({
      id,
      size: 50_000,
      sha256: createHash('sha256').update(data).digest('hex'),
    })
    await waitFor(async () => (await files()).every((name) => !name.includes(id)))
  })

  it('accepted: its signed link reads the verified bytes while it decides; then COMPLETED', async () => {
    receiver.answerWith((payload) =>
      payload.type === 'pre-finish' && payload.upload.filename === 'clean.bin'
        ? { delayMs: 1500 }
        : undefined,
    )
    const data = content(70_000)
    const form = new FormData()
    form.append('file', new Blob([data]), 'clean.bin')
    const { upload_id: id } = (await (
      await fetch(`${server.url}/api/upload`, { method: 'POST', body: form })
    ).json()) as { upload_id: string }
    await receiver.until(() => asked('clean.bin', 'pre-finish').length === 1)
    const link = asked('clean.bin', 'pre-finish')[0]?.downloadUrl ?? ''
    expect(link).toMatch(
      new RegExp(`^${server.url}/hooks/files/${id}\\?expires=\\d+&signature=[0-9a-f]{64}$`),
    )
    const read = await fetch(link)
    expect(read.status).toBe(200)
    expect(Buffer.from(await read.arrayBuffer()).equals(data)).toBe(true)
    // A scanner reading part of it, or only asking its length, is answered as by any download.
    const part = await fetch(link, { headers: { range: 'bytes=1000-1999' } })
    expect(part.status).toBe(206)
    expect(part.headers.get('content-range')).toBe('bytes 1000-1999/70000')
    expect(Buffer.from(await part.arrayBuffer()).equals(data.subarray(1000, 2000))).toBe(true)
    const head = await fetch(link, { method: 'HEAD' })
    expect([head.status, head.headers.get('content-length')]).toEqual([200, '70000'])
    // Still deciding: not COMPLETED yet. A link with a forged signature reads nothing.
    expect((await api(server.url, 'GET', `/api/upload/${id}/status`)).body.status).not.toBe('completed')
    // Its signature's first digit changed (to another one: a '0' replaced by '0' would forge nothing).
    const forged = link.replace(
      /signature=(.)/,
      (_, digit: string) => `signature=${digit === '0' ? '1' : '0'}`,
    )
    expect(forged).not.toBe(link)
    expect((await fetch(forged)).status).toBe(403)
    await waitForStatus(server.url, id, 'completed')
    // Completed, its staged bytes are gone: the link reads the stored file.
    const stored = await fetch(link, { headers: { range: 'bytes=69000-' } })
    expect(stored.status).toBe(206)
    expect(Buffer.from(await stored.arrayBuffer()).equals(data.subarray(69_000))).toBe(true)
  })
})

describe('forwarding the caller’s Authorization (HOOKS_FORWARD_AUTH, on by default)', () => {
  it('forwards a user’s JWT to pre-create, and never the operator’s API_TOKEN', async () => {
    const secret = 'hooks-blocking-jwt-secret-0123456789'
    const apiToken = 'operator-api-token-0123456789'
    const guarded = await startServer({
      HOOKS_URL: receiver.url,
      HOOKS_SECRET: receiver.secret,
      HOOKS_EVENTS: 'pre-create',
      API_TOKEN: apiToken,
      AUTH_JWT_SECRET: secret,
      AUTH_ISSUER: ISSUER,
      AUTH_AUDIENCE: AUDIENCE,
    })
    try {
      const jwt = await mintHsToken(secret, 'carol')
      for (const [name, token] of [
        ['as-operator.bin', apiToken],
        ['as-carol.bin', jwt],
      ] as const) {
        const sent = await restUpload(guarded.url, content(1000), {
          filename: name,
          headers: { authorization: `Bearer ${token}` },
        })
        expect(sent.status).toBe(200)
      }
      const headersOf = (name: string) =>
        receiver.requests.find((r) => r.payload.upload?.filename === name)?.headers ?? {}
      expect(headersOf('as-operator.bin')).not.toHaveProperty('x-forwarded-authorization')
      expect(headersOf('as-carol.bin')['x-forwarded-authorization']).toBe(`Bearer ${jwt}`)
    } finally {
      await guarded.stop()
    }
  })

  it('warns once at start-up when HOOKS_URL is plain http to another host', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hooks-clear-'))
    const started: ChildServer[] = []
    try {
      // 192.0.2.1 is TEST-NET-1: never reached here, since no upload is sent.
      const remote = await spawnServer(dir, {
        HOOKS_URL: 'http://192.0.2.1/hooks',
        HOOKS_SECRET: receiver.secret,
      })
      started.push(remote)
      const warnings = (server: ChildServer) =>
        server
          .output()
          .split('\n')
          .filter((line) => line.includes('"hook.forwards_auth_in_clear"'))
      expect(warnings(remote)).toHaveLength(1)
      await stopChild(remote)
      // Not for a loopback receiver, nor with forwarding off.
      for (const env of <Record<string, string>[]>[
        { HOOKS_URL: receiver.url },
        { HOOKS_URL: 'http://192.0.2.1/hooks', HOOKS_FORWARD_AUTH: 'false' },
      ]) {
        const quiet = await spawnServer(dir, { ...env, HOOKS_SECRET: receiver.secret })
        started.push(quiet)
        expect(warnings(quiet)).toEqual([])
        await stopChild(quiet)
      }
    } finally {
      for (const child of started) await stopChild(child)
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('which hooks are asked, and where they point', () => {
  it('never asks pre-finish when HOOKS_EVENTS leaves it out: the upload completes on pre-create alone', async () => {
    const only = await startServer({
      HOOKS_URL: receiver.url,
      HOOKS_SECRET: receiver.secret,
      HOOKS_EVENTS: 'pre-create',
    })
    try {
      const id = (await restUpload(only.url, content(5000), { filename: 'no-finish.bin' })).body.upload_id
      await waitForStatus(only.url, id, 'completed')
      expect(asked('no-finish.bin')).toHaveLength(1)
      expect(asked('no-finish.bin', 'pre-finish')).toEqual([])
    } finally {
      await only.stop()
    }
  })

  it('gives pre-finish a link on PUBLIC_URL when it is set', async () => {
    const behind = await startServer({
      HOOKS_URL: receiver.url,
      HOOKS_SECRET: receiver.secret,
      HOOKS_EVENTS: 'pre-finish',
      PUBLIC_URL: 'https://uploads.example.test',
    })
    try {
      const id = (await restUpload(behind.url, content(5000), { filename: 'public.bin' })).body.upload_id
      await waitForStatus(behind.url, id, 'completed')
      expect(asked('public.bin', 'pre-finish')[0]?.downloadUrl).toMatch(
        new RegExp(
          `^https://uploads\\.example\\.test/hooks/files/${id}\\?expires=\\d+&signature=[0-9a-f]{64}$`,
        ),
      )
    } finally {
      await behind.stop()
    }
  })
})

describe('the README', () => {
  it('its few-line verifier accepts a real hook request and refuses a changed one', async () => {
    const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8')
    const block = /<!-- hook-verifier -->\s*```js\n([\s\S]*?)```/.exec(readme)?.[1]
    expect(block).toBeDefined()
    const work = await mkdtemp(join(tmpdir(), 'hooks-readme-'))
    try {
      const module = join(work, 'verify.mjs')
      await writeFile(module, block ?? '')
      const { verifyHook } = (await import(pathToFileURL(module).href)) as {
        verifyHook: (secret: string, header: string | undefined, raw: string) => boolean
      }
      // A real hook request: a tus creation the receiver refuses (nothing is kept of it).
      refuseCreate('readme-check.bin', 403, 'no')
      expect((await tusCreate(server.url, 10, { filename: 'readme-check.bin' })).status).toBe(403)
      const real = receiver.requests.find((r) => r.payload.upload?.filename === 'readme-check.bin')
      const header = real?.headers['x-hook-signature'] as string | undefined
      expect(verifyHook(receiver.secret, header, real?.raw ?? '')).toBe(true)
      expect(verifyHook(receiver.secret, header, `${real?.raw ?? ''} `)).toBe(false)
      expect(verifyHook('another-secret-0123456789', header, real?.raw ?? '')).toBe(false)
      expect(verifyHook(receiver.secret, undefined, real?.raw ?? '')).toBe(false)
    } finally {
      await rm(work, { recursive: true, force: true })
    }
  })
})

describe('a hook that cannot answer', () => {
  it('hanging: 503 before any byte is kept (HOOKS_TIMEOUT), and the service answers others meanwhile', async () => {
    const hung = await startHookReceiver()
    const slow = await startServer({
      HOOKS_URL: hung.url,
      HOOKS_SECRET: hung.secret,
      HOOKS_EVENTS: 'pre-create',
      HOOKS_TIMEOUT: '3s',
    })
    try {
      hung.answerWith(() => ({ delayMs: 60_000 }))
      const form = new FormData()
      form.append('file', new Blob([content(100_000)]), 'waits.bin')
      const pending = fetch(`${slow.url}/api/upload`, { method: 'POST', body: form })
      await hung.until(() => hung.arrived.length === 1)
      // While the hook keeps it waiting, the service answers: the status route, the list, readiness.
      const startedAt = Date.now()
      expect((await fetch(`${slow.url}/readyz`)).status).toBe(200)
      expect((await api<{ uploads: unknown[] }>(slow.url, 'GET', '/api/uploads')).body.uploads).toEqual([])
      expect(Date.now() - startedAt).toBeLessThan(2500)
      const answer = await pending
      expect(answer.status).toBe(503)
      expect(((await answer.json()) as { detail: string }).detail).toMatch(
        /could not be asked.*nothing was stored/,
      )
      expect((await listStorage(slow.dir)).staging).toEqual([])
      expect((await api<{ uploads: unknown[] }>(slow.url, 'GET', '/api/uploads')).body.uploads).toEqual([])
    } finally {
      await slow.stop()
      await hung.stop()
    }
  })

  it('down, with HOOKS_ON_ERROR=accept: uploads go on and complete, on REST and tus', async () => {
    const open = await serverWithHookDown({
      HOOKS_EVENTS: 'pre-create,pre-finish',
      HOOKS_ON_ERROR: 'accept',
    })
    try {
      const sent = await restUpload(open.url, content(3000), { filename: 'open.bin' })
      expect(sent.status).toBe(200)
      await waitForStatus(open.url, sent.body.upload_id, 'completed')
      expect((await tusCreate(open.url, 10, { filename: 'open-tus.bin' })).status).toBe(201)
    } finally {
      await open.stop()
    }
  })

  it('pre-finish down: the upload ends FAILED with a reason saying the hook could not be asked', async () => {
    const down = await serverWithHookDown({ HOOKS_EVENTS: 'pre-finish' })
    try {
      const sent = await restUpload(down.url, content(3000), { filename: 'unasked.bin' })
      expect(sent.status).toBe(200)
      const id = sent.body.upload_id
      await waitForStatus(down.url, id, 'failed')
      const { data } = await gql<{ upload: { status: string; error: string } }>(
        down.url,
        'query ($id: ID!) { upload(id: $id) { status error } }',
        { id },
      )
      expect(data?.upload).toMatchObject({
        status: 'FAILED',
        error: expect.stringMatching(/could not be asked/),
      })
      await waitFor(async () => (await listStorage(down.dir)).stored.every((name) => !name.includes(id)))
    } finally {
      await down.stop()
    }
  })

  it('down (nothing listens): 503 at once on REST, GraphQL and tus; nothing kept', async () => {
    const down = await serverWithHookDown({ HOOKS_EVENTS: 'pre-create' })
    try {
      const form = new FormData()
      form.append('file', new Blob([content(10_000)]), 'nobody.bin')
      const rest = await fetch(`${down.url}/api/upload`, { method: 'POST', body: form })
      expect(rest.status).toBe(503)
      const { body } = await gqlUpload(
        down.url,
        'mutation ($file: File!) { uploadFile(file: $file) { id } }',
        {},
        content(10_000),
      )
      expect(body.errors?.[0]?.extensions?.code).toBe('UNAVAILABLE')
      expect((await tusCreate(down.url, 10)).status).toBe(503)
      expect(await listStorage(down.dir)).toEqual({ stored: [], staging: [], transfers: [] })
      expect((await api<{ uploads: unknown[] }>(down.url, 'GET', '/api/uploads')).body.uploads).toEqual([])
    } finally {
      await down.stop()
    }
  })
})

export type { HookPayload }
