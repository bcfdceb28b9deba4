import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { api, bytes, gql, restUpload, statusOf, waitFor, waitForStatus } from './support/clients.js'
import { startServer, transferFile, type TestServer } from './support/server.js'
import { MAX_THROTTLED_CHUNK } from '../src/core/transfer/throttle.js'

let server: TestServer
beforeAll(async () => {
  server = await startServer()
})
afterAll(() => server.stop())

const partSize = (id: string) =>
  stat(transferFile(server.dir, id)).then(
    (s) => s.size,
    () => 0,
  )

/** Bytes written over `ms`, read from the transfer's file on disk (not from what the server says). */
async function rateOnDisk(id: string, ms: number): Promise<number> {
  const a = await partSize(id)
  const t = performance.now()
  await new Promise((resolve) => setTimeout(resolve, ms))
  return ((await partSize(id)) - a) / ((performance.now() - t) / 1000)
}

describe('setSpeed on a running upload', () => {
  it('takes the new speed at once, with no pause in between (REST)', async () => {
    const { body } = await restUpload(server.url, bytes(2_000_000), { speed: 20_000 })
    const id = body.upload_id
    await waitFor(async () => (await partSize(id)) > 4000)
    const slow = await rateOnDisk(id, 500)
    expect(slow).toBeLessThan(30_000)

    const answer = await api(server.url, 'POST', `/api/upload/${id}/speed?speed=400000`)
    expect(answer).toEqual({ status: 200, body: { status: 'in_progress', speed: 400_000 } })
    // Within one chunk of the old speed (1 KB at 20 kB/s is 50 ms), bytes move twenty times faster.
    const fast = await rateOnDisk(id, 500)
    expect(fast).toBeGreaterThan(200_000)
    const status = (await statusOf(server.url, id)).body
    expect(status).toMatchObject({ status: 'in_progress', target_speed: 400_000 })
    // Whole bytes per second, not 1028811.809266605.
    expect(Number.isInteger(status.current_speed)).toBe(true)
    expect(status.current_speed).toBeGreaterThan(0)
    await api(server.url, 'POST', `/api/upload/${id}/cancel`)
  })

  it('slows a fast one down just as promptly (GraphQL), and to unlimited with 0, storing it byte for byte', async () => {
    const content = bytes(3_000_000)
    const { body } = await restUpload(server.url, content, { speed: 500_000 })
    const id = body.upload_id
    await waitFor(async () => (await partSize(id)) > 50_000)
    const result = await gql<{ setSpeed: { status: string; targetSpeed: number } }>(
      server.url,
      'mutation ($id: ID!) { setSpeed(id: $id, speed: 10000) { status targetSpeed } }',
      { id },
    )
    expect(result.data?.setSpeed).toEqual({ status: 'IN_PROGRESS', targetSpeed: 10_000 })
    // At most one chunk requested at the old speed lands after the answer (a flow making up a stall asks
    // for up to MAX_THROTTLED_CHUNK), then 10 kB/s: far below the 250 kB the old speed moves in 0.5 s.
    expect((await rateOnDisk(id, 500)) * 0.5).toBeLessThan(MAX_THROTTLED_CHUNK + 10_000 * 0.5 + 2_000)
    await gql(server.url, 'mutation ($id: ID!) { setSpeed(id: $id, speed: 0) { id } }', { id })
    await waitForStatus(server.url, id, 'completed', 5000)
    // Its chunks went from 25 kB to 500 B to 1 MiB, each change meeting a chunk read ahead at the old size.
    expect((await readFile(join(server.dir, `${id}_data.bin`))).equals(content)).toBe(true)
  })
})

describe('setSpeed on a paused upload', () => {
  it('keeps the speed for its resume, and does not start it', async () => {
    const { body } = await restUpload(server.url, bytes(200_000), { speed: 10_000 })
    const id = body.upload_id
    await api(server.url, 'POST', `/api/upload/${id}/pause`)
    const at = (await statusOf(server.url, id)).body.uploaded_size
    expect(await api(server.url, 'POST', `/api/upload/${id}/speed?speed=300000`)).toEqual({
      status: 200,
      body: { status: 'paused', speed: 300_000 },
    })
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect((await statusOf(server.url, id)).body).toMatchObject({ status: 'paused', uploaded_size: at })
    expect(await api(server.url, 'POST', `/api/upload/${id}/resume`)).toMatchObject({
      body: { status: 'resumed', speed: 300_000 },
    })
    await waitForStatus(server.url, id, 'completed', 5000)
  })
})

describe('setSpeed refuses as resume does', () => {
  it.each(['abc', '1M', '-1', '1.5', ''])('?speed=%j → 422 in REST words', async (speed) => {
    const { body } = await restUpload(server.url, bytes(100_000), { speed: 1000 })
    const answer = await api(
      server.url,
      'POST',
      `/api/upload/${body.upload_id}/speed?speed=${encodeURIComponent(speed)}`,
    )
    expect(answer.status).toBe(422)
    expect(answer.body).toEqual({
      detail: expect.stringMatching(/^speed must be a whole number of bytes per second/),
    })
    await api(server.url, 'POST', `/api/upload/${body.upload_id}/cancel`)
  })

  it('no speed at all → 422 saying how to give one', async () => {
    const { body } = await restUpload(server.url, bytes(100_000), { speed: 1000 })
    const answer = await api(server.url, 'POST', `/api/upload/${body.upload_id}/speed`)
    expect(answer).toEqual({
      status: 422,
      body: { detail: expect.stringMatching(/speed is required.*\?speed=/) },
    })
    await api(server.url, 'POST', `/api/upload/${body.upload_id}/cancel`)
  })

  it('an ended upload → 400 / INVALID_STATE; an unknown one → 404 / NOT_FOUND', async () => {
    const { body } = await restUpload(server.url, bytes(10), { speed: 0 })
    await waitForStatus(server.url, body.upload_id, 'completed')
    expect((await api(server.url, 'POST', `/api/upload/${body.upload_id}/speed?speed=5`)).status).toBe(400)
    const graphql = await gql(server.url, `mutation { setSpeed(id: "${body.upload_id}", speed: 5) { id } }`)
    expect(graphql.errors?.[0]?.extensions?.code).toBe('INVALID_STATE')
    expect((await api(server.url, 'POST', '/api/upload/nope/speed?speed=5')).status).toBe(404)
    const negative = await gql(server.url, `mutation { setSpeed(id: "${body.upload_id}", speed: -5) { id } }`)
    expect(negative.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT')
  })
})
