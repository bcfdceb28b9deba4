import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { api, bytes, statusOf, waitFor, waitForStatus, wsClient } from './support/clients.js'
import { spawnServer, type ChildServer } from './support/child.js'
import { multipartHead, openRequest, partHead } from './support/raw.js'
import { tusCreate } from './support/tus.js'
import { freePort, startRedis, type TestRedis } from './support/redis.js'

/**
 * Debian's nginx, running the shipped deploy/nginx.conf (only its ports changed), in front of two real
 * instances over one real Redis: uploads stream through, subscriptions work over WebSocket and SSE, and
 * control reaches the transfer whichever instance nginx picks.
 */
const NGINX = '/usr/sbin/nginx'

let redis: TestRedis
let dir: string
let prefix: string
let instances: ChildServer[]
let nginx: ChildProcess
let nginxExited: Promise<unknown>
let url: string
/** The instances' idle limit: short, so that a client who stalls mid-body is cut off within the test. */
const IDLE_MS = 3000
beforeAll(async () => {
  if (!existsSync(NGINX)) throw new Error(`${NGINX} is missing: apt-get install -y nginx`)
  redis = await startRedis()
  dir = await mkdtemp(join(tmpdir(), 'uploads-nginx-'))
  instances = await Promise.all(
    ['a', 'b'].map((name) =>
      spawnServer(dir, {
        REDIS_URL: redis.url,
        INSTANCE_ID: `nginx-${name}`,
        BODY_IDLE_TIMEOUT_MS: String(IDLE_MS),
      }),
    ),
  )
  // The shipped file as it is, run as the README runs it (-p names the folder for its pid, log and
  // temporary files); only its ports change, to free ones.
  prefix = await mkdtemp(join(tmpdir(), 'nginx-'))
  const port = await freePort()
  const shipped = await readFile(new URL('../deploy/nginx.conf', import.meta.url), 'utf8')
  const ports = instances.map((instance) => new URL(instance.url).port)
  let config = shipped.replace('listen 127.0.0.1:8000;', `listen 127.0.0.1:${port};`)
  for (const [i, p] of ports.entries()) config = config.replace(`127.0.0.1:800${i + 1}`, `127.0.0.1:${p}`)
  expect(config).not.toMatch(/:800\d/)
  await writeFile(join(prefix, 'nginx.conf'), config)
  nginx = spawn(NGINX, ['-p', prefix, '-c', join(prefix, 'nginx.conf')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  nginx.stderr?.on('data', (chunk: Buffer) => (nginxLog += chunk.toString()))
  nginxExited = once(nginx, 'exit')
  url = `http://127.0.0.1:${port}`
  await waitFor(async () => (await fetch(`${url}/healthz`).catch(() => undefined))?.status === 200, 10_000)
}, 60_000)
/** What nginx said on stderr (its error log). */
let nginxLog = ''
afterAll(async () => {
  nginx?.kill('SIGTERM')
  await nginxExited
  for (const instance of instances ?? []) instance.child.kill('SIGKILL')
  await Promise.all((instances ?? []).map((instance) => instance.exited))
  await redis?.stop()
  await rm(dir, { recursive: true, force: true })
  await rm(prefix, { recursive: true, force: true })
})

const sha = (content: Buffer) => createHash('sha256').update(content).digest('hex')

describe('behind nginx with deploy/nginx.conf', () => {
  it('streams an upload through as it arrives (request buffering off), with no body size cap', async () => {
    const content = bytes(3 * 1024 * 1024)
    const tail = Buffer.from('\r\n--b0undary--\r\n')
    const head = Buffer.from(partHead('file', 'through.bin'))
    const upload = openRequest(
      url,
      multipartHead('/api/upload?speed=0', head.length + content.length + tail.length),
    )
    upload.write(head)
    upload.write(content.subarray(0, 1024 * 1024))
    // The first megabyte is already at an instance, in its staging folder, before the rest is sent.
    await waitFor(async () => {
      const { readdir, stat } = await import('node:fs/promises')
      const names = (await readdir(join(dir, '.staging'))).filter((name) => name.endsWith('.incoming'))
      return names.length === 1 && (await stat(join(dir, '.staging', names[0]!))).size > 512 * 1024
      // An instance's first request loads its API: on a busy machine that alone can take seconds.
    }, 30_000)
    upload.write(Buffer.concat([content.subarray(1024 * 1024), tail]))
    const answer = await upload.answer
    upload.end()
    expect(answer.status).toBe(200)
    const id = (JSON.parse(answer.body) as { upload_id: string }).upload_id
    await waitForStatus(url, id, 'completed')
    const download = Buffer.from(await (await fetch(`${url}/api/files/${id}/download`)).arrayBuffer())
    expect(sha(download)).toBe(sha(content))
  })

  it('a graphql-ws subscription and pause, resume and cancel through it reach the transfer', async () => {
    const form = new FormData()
    form.append('file', new Blob([bytes(200_000)]), 'followed.bin')
    const started = (await (
      await fetch(`${url}/api/upload?speed=40000`, { method: 'POST', body: form })
    ).json()) as {
      upload_id: string
    }
    const id = started.upload_id
    const client = wsClient(url)
    const statuses: string[] = []
    const done = (async () => {
      for await (const result of client.iterate<{ uploadProgress: { status: string } }>({
        query: 'subscription ($id: ID) { uploadProgress(id: $id) { status } }',
        variables: { id },
      })) {
        statuses.push(result.data!.uploadProgress.status)
      }
    })()
    await waitFor(() => statuses.length >= 3)
    // Each call may land on any instance; each one reaches the owner.
    for (let i = 0; i < 3; i++) {
      expect((await api(url, 'POST', `/api/upload/${id}/pause`)).body).toEqual({ status: 'paused' })
      expect((await statusOf(url, id)).body.status).toBe('paused')
      expect((await api(url, 'POST', `/api/upload/${id}/resume`)).body).toMatchObject({ status: 'resumed' })
    }
    expect(await api(url, 'POST', `/api/upload/${id}/cancel`)).toEqual({
      status: 200,
      body: { status: 'canceled' },
    })
    await done
    await client.dispose()
    expect(statuses).toContain('PAUSED')
    expect(statuses.at(-1)).toBe('CANCELED')
  })

  it('SSE events arrive as they happen (response buffering off)', async () => {
    const form = new FormData()
    form.append('file', new Blob([bytes(100_000)]), 'sse.bin')
    const { upload_id: id } = (await (
      await fetch(`${url}/api/upload?speed=50000`, { method: 'POST', body: form })
    ).json()) as {
      upload_id: string
    }
    const times: number[] = []
    await new Promise<void>((resolve, reject) => {
      const body = JSON.stringify({
        query: `subscription { uploadProgress(id: "${id}") { status uploadedSize } }`,
      })
      const req = request(
        `${url}/graphql`,
        {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            accept: 'text/event-stream',
            'content-length': Buffer.byteLength(body),
          },
        },
        (res) => {
          res.on('data', (chunk: Buffer) => {
            for (const _ of chunk.toString().matchAll(/event: next/g)) times.push(performance.now())
          })
          res.on('end', resolve)
        },
      )
      req.on('error', reject)
      req.end(body)
    })
    // Two seconds of events, spread out as they happened, not in one burst at the end.
    expect(times.length).toBeGreaterThan(10)
    expect(times.at(-1)! - times[0]!).toBeGreaterThan(1500)
    // Each instance also asks any proxy not to buffer its event streams, whatever that proxy's configuration
    // (nginx acts on the header and does not pass it on, so it is read from an instance directly).
    const direct = new AbortController()
    const response = await fetch(`${instances[0]!.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ query: `subscription { uploadProgress(id: "${id}") { status } }` }),
      signal: direct.signal,
    })
    expect(response.headers.get('x-accel-buffering')).toBe('no')
    direct.abort()
  })
})

/** curl as a user runs it: the status it got, and what came with it. */
async function curl(args: string[]): Promise<{ status: number; body: string }> {
  const { stdout } = await promisify(execFile)('curl', ['-sS', '-w', '\n%{http_code}', ...args], {
    maxBuffer: 1024 ** 2,
  })
  const split = stdout.lastIndexOf('\n')
  return { status: Number(stdout.slice(split + 1)), body: stdout.slice(0, split) }
}

describe('one client refused early, with its body still arriving, through nginx', () => {
  it(
    'gets the service’s own JSON refusal, many at once, and everyone else is served meanwhile and after',
    { timeout: 120_000 },
    async () => {
      const big = join(prefix, '30MB.bin')
      await writeFile(big, bytes(30 * 1024 * 1024))
      const UPLOAD =
        'mutation ($file: File!, $speed: SafeInt) { uploadFile(file: $file, speed: $speed) { id } }'
      const tus = await Promise.all([1, 2].map(() => tusCreate(url, 30 * 1024 * 1024)))
      const refused = Promise.all([
        // A typo in the speed, as in the report: refused before a byte of the body is read.
        ...[1, 2, 3, 4].map(() => curl(['-F', `file=@${big}`, `${url}/api/upload?speed=1M`])),
        // The same mistake over GraphQL multipart, refused when `map` arrives, before the file part.
        ...[1, 2].map(() =>
          curl([
            '-F',
            `operations=${JSON.stringify({ query: UPLOAD, variables: { file: null, speed: '1M' } })}`,
            '-F',
            'map={"0":["variables.file"]}',
            '-F',
            `0=@${big}`,
            `${url}/graphql`,
          ]),
        ),
        // A tus PATCH at the wrong offset: 409 before its bytes are read.
        ...tus.map(({ location }) =>
          curl([
            '-X',
            'PATCH',
            '-H',
            'tus-resumable: 1.0.0',
            '-H',
            'upload-offset: 5',
            '-H',
            'content-type: application/offset+octet-stream',
            '--data-binary',
            `@${big}`,
            new URL(location, url).href,
          ]),
        ),
      ])
      // Someone else, at the same moment: a whole upload and some reads, all answered.
      const others = Promise.all([
        restUploadThrough(url, bytes(1024 ** 2)),
        ...Array.from({ length: 10 }, () => fetch(`${url}/api/uploads`).then((r) => r.status)),
      ])
      const answers = await refused
      for (const answer of answers.slice(0, 4)) {
        expect(answer.status, answer.body).toBe(422)
        expect(JSON.parse(answer.body)).toEqual({
          detail: expect.stringMatching(/^speed must be a whole number/),
        })
      }
      for (const answer of answers.slice(4, 6)) {
        expect(answer.status, answer.body).toBeGreaterThanOrEqual(400)
        expect(answer.status, answer.body).toBeLessThan(500)
        expect(JSON.parse(answer.body)).toMatchObject({
          errors: [{ extensions: { code: 'BAD_USER_INPUT' } }],
        })
      }
      for (const answer of answers.slice(6)) expect(answer.status, answer.body).toBe(409)
      const [upload, ...reads] = await others
      expect(upload.status, upload.text).toBe(200)
      expect(reads.every((status) => status === 200)).toBe(true)
      // No instance was taken out of rotation: the next requests, one per instance and more, all get through.
      const after = await Promise.all(
        Array.from({ length: 12 }, () => fetch(`${url}/api/uploads`).then((r) => r.status)),
      )
      expect(after.every((status) => status === 200)).toBe(true)
      await waitForStatus(url, upload.id, 'completed')
    },
  )
})

describe('one client’s broken requests, through nginx', () => {
  it(
    'take no instance out of rotation: clients who stall mid-body until the instances cut them off leave everyone else served',
    { timeout: 60_000 },
    async () => {
      // One stalled upload per instance (least_conn spreads them), each cut off by its instance after IDLE_MS
      // of silence: nginx counts "upstream prematurely closed" against that instance.
      const stalled = [1, 2, 3, 4].map(() => {
        const request = openRequest(url, multipartHead('/api/upload?speed=0', 1024 ** 2))
        request.write(partHead('file', 'stalled.bin'))
        request.write(bytes(1000))
        return request
      })
      const cutOff = await Promise.all(stalled.map((request) => request.answer))
      for (const request of stalled) request.end()
      // They got nginx's 502: their instance had hung up on them. (Only them.)
      expect(cutOff.map((answer) => answer.status)).toEqual([502, 502, 502, 502])
      expect(nginxLog).toMatch(/upstream prematurely closed connection/)
      // Everyone after them is served, at once: no instance was marked down for it.
      const after = await Promise.all(
        Array.from({ length: 8 }, () => fetch(`${url}/api/uploads`).then((r) => r.status)),
      )
      expect(after).toEqual(Array.from({ length: 8 }, () => 200))
      expect(nginxLog).not.toMatch(/no live upstreams/)
    },
  )
})

async function restUploadThrough(url: string, content: Buffer<ArrayBuffer>) {
  const form = new FormData()
  form.append('file', new Blob([content]), 'someone-else.bin')
  const response = await fetch(`${url}/api/upload?speed=0`, { method: 'POST', body: form })
  const text = await response.text()
  return {
    status: response.status,
    text,
    id: response.ok ? (JSON.parse(text) as { upload_id: string }).upload_id : '',
  }
}
