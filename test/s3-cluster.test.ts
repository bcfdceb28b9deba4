import { createHash } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { listParts, listUploads } from '../src/seams/storage/s3-bucket.js'
import { S3Storage } from '../src/seams/storage/s3.js'
import { api, bytes, gql, restUpload, statusOf, waitFor, waitForStatus, wsClient } from './support/clients.js'
import { spawnServer, type ChildServer } from './support/child.js'
import { motoForTests } from './support/moto.js'
import { startRedis, type TestRedis } from './support/redis.js'

/**
 * Three real instances that share nothing but one redis-server and one S3 (moto): each has its own
 * UPLOAD_DIR, so every byte another instance needs (staging, parts) must come from the bucket.
 */
const MiB = 1024 * 1024
const PREFIX = 'gw/'
const LEASE_MS = 5000
const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex')

// Child instances, a redis-server and moto on two busy cores: start-ups, leases and restarts take several
// times as long as on a quiet machine.
vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 })

const moto = motoForTests()
let redis: TestRedis
let instances: ChildServer[] = []
let dirs: string[] = []
beforeAll(async () => {
  redis = await startRedis()
}, 60_000)
afterAll(async () => {
  await redis?.stop()
})
afterEach(async () => {
  for (const instance of instances) {
    instance.child.kill('SIGCONT')
    instance.child.kill('SIGKILL')
  }
  await Promise.all(instances.map((instance) => instance.exited))
  instances = []
  await redis.client().flushall()
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })))
  dirs = []
})

async function cluster(env: Record<string, string> = {}): Promise<{ nodes: ChildServer[]; look: S3Storage }> {
  const bucket = await moto().createBucket()
  instances = await Promise.all(
    ['a', 'b', 'c'].map(async (name) => {
      const dir = await mkdtemp(join(tmpdir(), `uploads-s3-${name}-`))
      dirs.push(dir)
      return spawnServer(dir, {
        REDIS_URL: redis.url,
        INSTANCE_ID: `node-${name}`,
        ...moto().env(bucket, PREFIX),
        ...env,
      })
    }),
  )
  const look = moto().storage(bucket, PREFIX)
  return { nodes: instances, look }
}

/** Waits until the upload has ended, whatever the end (a FAILED one is not waited on until a timeout). */
const ended = (url: string, id: string, timeoutMs: number) =>
  waitFor(async () => {
    const { status, body } = await statusOf(url, id)
    // A 503 (Redis away) says nothing either way: asked again.
    if (status !== 200) return undefined
    return ['completed', 'failed', 'canceled'].includes(body.status) ? body : undefined
  }, timeoutMs)

const downloaded = async (url: string, id: string) => {
  const answer = await fetch(`${url}/api/files/${id}/download`)
  expect(answer.status).toBe(200)
  return sha256(new Uint8Array(await answer.arrayBuffer()))
}

describe('three instances sharing only Redis and S3', () => {
  it('upload via one, follow on another over graphql-ws, pause via the third, resume: byte-identical', async () => {
    const { nodes, look } = await cluster()
    const [a, b, c] = nodes
    const content = bytes(12 * MiB + 777)
    const { body } = await restUpload(a!.url, content, { speed: 2 * MiB })
    const id = body.upload_id

    const client = wsClient(b!.url)
    const events: { status: string; uploadedSize: number }[] = []
    const followed = (async () => {
      for await (const result of client.iterate<{ uploadProgress: { status: string; uploadedSize: number } }>(
        {
          query: 'subscription ($id: ID) { uploadProgress(id: $id) { status uploadedSize } }',
          variables: { id },
        },
      )) {
        events.push(result.data!.uploadProgress)
      }
    })()
    // Past the first part S3 acknowledged (5 MiB), so the pause has a part to go on from.
    await waitFor(() => events.some((e) => e.status === 'IN_PROGRESS' && e.uploadedSize > 6 * MiB), 60_000)

    expect(await api(c!.url, 'POST', `/api/upload/${id}/pause`)).toEqual({
      status: 200,
      body: { status: 'paused' },
    })
    const atPause = (await statusOf(b!.url, id)).body
    expect(atPause.status).toBe('paused')
    expect(atPause.uploaded_size).toBeLessThan(content.length)

    expect(await api(c!.url, 'POST', `/api/upload/${id}/resume?speed=0`)).toMatchObject({
      body: { status: 'resumed' },
    })
    await waitForStatus(b!.url, id, 'completed', 90_000)
    await followed
    await client.dispose()
    expect(events.map((e) => e.status)).toContain('PAUSED')
    // A pause keeps what S3 acknowledged (whole parts: the README's "a part counts as stored once S3 answers
    // for it"), and the resume goes on from there: nothing after it goes under it, so nothing S3 held was
    // sent again.
    const paused = events.findIndex((e) => e.status === 'PAUSED')
    const kept = events[paused]!.uploadedSize
    expect(kept).toBeGreaterThanOrEqual(5 * MiB)
    expect(kept % (5 * MiB)).toBe(0)
    const after = events.slice(paused).map((e) => e.uploadedSize)
    expect(after).toEqual([...after].sort((x, y) => x - y))
    expect(events.at(-1)).toEqual({ status: 'COMPLETED', uploadedSize: content.length })
    expect(await downloaded(c!.url, id)).toBe(sha256(content))
    expect(await downloaded(a!.url, id)).toBe(sha256(content))
    expect(await listUploads(look.access, PREFIX)).toEqual([])
  }, 180_000)

  it('SIGKILLed owner mid-transfer: another adopts it within lease + 5 s, from the parts S3 holds, byte-identical', async () => {
    const { nodes, look } = await cluster()
    const [a, b, c] = nodes
    const content = bytes(16 * MiB + 4321)
    const { body } = await restUpload(a!.url, content, { speed: 2 * MiB })
    const id = body.upload_id
    // Past the first acknowledged part (5 MiB), so the adopter has parts to keep.
    await waitFor(async () => (await statusOf(b!.url, id)).body.uploaded_size > 6 * MiB, 60_000)
    a!.child.kill('SIGKILL')
    await a!.exited
    const killedAt = performance.now()
    // What the others say S3 holds of it, from the record alone: whole parts, no more than S3 lists.
    const figures = async () =>
      (
        await gql<{ upload: { acknowledgedSize: number } }>(
          b!.url,
          `query ($id: ID!) { upload(id: $id) { acknowledgedSize } }`,
          { id },
        )
      ).data!.upload.acknowledgedSize
    const said = await figures()
    const open = (await listUploads(look.access, PREFIX)).find((u) => u.key.includes(`${id}/`))!
    const held = (await listParts(look.access, open.key, open.uploadId))!
    expect(said % (5 * MiB)).toBe(0)
    expect(said).toBeGreaterThanOrEqual(5 * MiB)
    expect(said).toBeLessThanOrEqual(held.reduce((sum, part) => sum + (part.Size ?? 0), 0))

    const adopter = await waitFor(
      () =>
        [b!, c!].find((node) =>
          node
            .output()
            .split('\n')
            .some((line) => line.includes('"event":"upload.adopted"') && line.includes(id)),
        ),
      LEASE_MS + 10_000,
    )
    expect(performance.now() - killedAt).toBeLessThan(LEASE_MS + 5000)
    // Carried on from the parts S3 acknowledged (at least the first), never from zero: what the adopter
    // reports, from its adoption to the end, never goes under them.
    let least = Infinity
    await waitFor(async () => {
      const { status, uploaded_size } = (await statusOf(adopter.url, id)).body
      least = Math.min(least, uploaded_size, await figures())
      return status === 'completed'
    }, 120_000)
    expect(least).toBeGreaterThanOrEqual(said)
    expect(await downloaded(b!.url, id)).toBe(sha256(content))
  }, 240_000)

  it('Redis restarts mid-transfer: every upload running then completes byte-identical, none FAILED, no multipart upload left', async () => {
    const { nodes, look } = await cluster()
    const [a, b, c] = nodes
    // Two transfers, on two owners, both mid-way when Redis goes.
    const contents = [bytes(7 * MiB + 123), bytes(6 * MiB + 4567)]
    const ids = [
      (await restUpload(a!.url, contents[0]!, { speed: 1 * MiB })).body.upload_id,
      (await restUpload(b!.url, contents[1]!, { speed: 1 * MiB })).body.upload_id,
    ]
    await waitFor(async () => {
      const sizes = await Promise.all(ids.map(async (id) => (await statusOf(c!.url, id)).body.uploaded_size))
      return sizes.every((size) => size > 1 * MiB)
    }, 60_000)
    await redis.restart(1500)
    for (const [i, id] of ids.entries()) {
      const end = await ended(c!.url, id, 120_000)
      expect(end.status).toBe('completed')
      expect(await downloaded(c!.url, id)).toBe(sha256(contents[i]!))
    }
    for (const node of nodes) expect(node.child.exitCode).toBeNull()
    expect(await listUploads(look.access, PREFIX)).toEqual([])
  }, 240_000)

  it('moto frozen mid-transfer for a few seconds: the transfer waits, then completes byte-identical; the others answer status meanwhile', async () => {
    // A request silent for 1 s is given up and tried again: the frozen seconds are retried through.
    const { nodes, look } = await cluster({ S3_TIMEOUT: '1s' })
    const [a, b, c] = nodes
    const content = bytes(9 * MiB + 321)
    const { body } = await restUpload(a!.url, content, { speed: 2 * MiB })
    const id = body.upload_id
    await waitFor(async () => (await statusOf(b!.url, id)).body.uploaded_size > 1 * MiB, 60_000)
    const answers: { status: number; ms: number; state: string }[] = []
    moto().freeze()
    try {
      // The scenario itself is "S3 silent for a few seconds": the others are asked throughout.
      const until = performance.now() + 4000
      while (performance.now() < until) {
        for (const node of [b!, c!]) {
          const asked = performance.now()
          const { status, body: said } = await statusOf(node.url, id)
          answers.push({ status, ms: performance.now() - asked, state: said.status })
        }
        await new Promise((resolve) => setTimeout(resolve, 200))
      }
    } finally {
      moto().thaw()
    }
    expect(answers.length).toBeGreaterThan(2)
    for (const answer of answers) {
      expect(answer.status).toBe(200)
      expect(answer.state).toBe('in_progress')
      // Generous: two busy cores; a status held behind S3 would take the whole freeze.
      expect(answer.ms).toBeLessThan(2000)
    }
    const end = await ended(c!.url, id, 120_000)
    expect(end.status).toBe('completed')
    expect(await downloaded(b!.url, id)).toBe(sha256(content))
    expect(await listUploads(look.access, PREFIX)).toEqual([])
    // It did wait: the owner logged its retries through the freeze.
    expect(a!.output()).toMatch(/"event":"s3\.part_retry"/)
  }, 240_000)
})
