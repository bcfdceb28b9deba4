import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { api, bytes, statusOf, waitFor, waitForStatus, wsClient } from './support/clients.js'
import { spawnServer, type ChildServer } from './support/child.js'
import { multipartHead, openRequest, partHead } from './support/raw.js'
import { freePort, startRedis, type TestRedis } from './support/redis.js'

/**
 * Debian's nginx, running the shipped deploy/nginx.conf (only its ports changed), in front of three real
 * instances over one real Redis: uploads stream through, subscriptions work over WebSocket and SSE, and
 * control reaches the transfer whichever instance nginx picks.
 */
const NGINX = '/usr/sbin/nginx'

let redis: TestRedis
let dir: string
let prefix: string
let instances: ChildServer[]
let nginx: ChildProcess
let url: string
beforeAll(async () => {
  if (!existsSync(NGINX)) throw new Error(`${NGINX} is missing: apt-get install -y nginx`)
  redis = await startRedis()
  dir = await mkdtemp(join(tmpdir(), 'uploads-nginx-'))
  instances = await Promise.all(
    ['a', 'b', 'c'].map((name) => spawnServer(dir, { REDIS_URL: redis.url, INSTANCE_ID: `nginx-${name}` })),
  )
  prefix = await mkdtemp(join(tmpdir(), 'nginx-'))
  await mkdir(join(prefix, 'logs'))
  const port = await freePort()
  const shipped = await readFile(new URL('../deploy/nginx.conf', import.meta.url), 'utf8')
  const ports = instances.map((instance) => new URL(instance.url).port)
  let config = shipped.replace('listen 8000;', `listen 127.0.0.1:${port};`)
  for (const [i, p] of ports.entries()) config = config.replace(`127.0.0.1:800${i + 1}`, `127.0.0.1:${p}`)
  expect(config).not.toMatch(/:800\d/)
  // Where this nginx may write: its own folder (the shipped file leaves that to the system's defaults).
  config = config.replace(
    'http {',
    `http {\n  access_log ${prefix}/logs/access.log;\n${['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${prefix}/${t};`).join('\n')}`,
  )
  await writeFile(join(prefix, 'nginx.conf'), config)
  nginx = spawn(
    NGINX,
    [
      '-p',
      prefix,
      '-c',
      join(prefix, 'nginx.conf'),
      '-g',
      `daemon off; pid ${prefix}/nginx.pid; error_log ${prefix}/logs/error.log; user root;`,
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  url = `http://127.0.0.1:${port}`
  await waitFor(async () => (await fetch(`${url}/healthz`).catch(() => undefined))?.status === 200, 10_000)
}, 60_000)
afterAll(async () => {
  nginx?.kill('SIGTERM')
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
    })
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
