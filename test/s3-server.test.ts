import { createHash } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { listKeys, listUploads } from '../src/seams/storage/s3-bucket.js'
import { S3Storage } from '../src/seams/storage/s3.js'
import { api, bytes, restUpload, statusOf, waitFor, waitForStatus } from './support/clients.js'
import { MOTO_CREDENTIALS, MOTO_REGION, startMoto, type TestMoto } from './support/moto.js'
import { startServer, type TestServer } from './support/server.js'

/**
 * The whole server storing into S3 (moto on loopback), through its real transports: every byte goes into the
 * bucket and comes back out of it. moto does not check checksums: the tests hash what they read back.
 */
const MiB = 1024 * 1024
const PREFIX = 'gw/'
const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex')

let moto: TestMoto
const servers: TestServer[] = []
beforeAll(async () => {
  // The SDK's default chain reads these from the environment, as it would in production.
  process.env.AWS_ACCESS_KEY_ID = MOTO_CREDENTIALS.accessKeyId
  process.env.AWS_SECRET_ACCESS_KEY = MOTO_CREDENTIALS.secretAccessKey
  moto = await startMoto()
}, 30_000)
afterAll(async () => {
  for (const server of servers) await server.stop().catch(() => undefined)
  await moto?.stop()
})

async function serverOnS3(
  env: Record<string, string> = {},
): Promise<{ server: TestServer; bucket: string; look: S3Storage }> {
  const bucket = await moto.createBucket()
  const server = await startServer({ ...moto.env(bucket, PREFIX), ...env })
  servers.push(server)
  const look = new S3Storage({
    bucket,
    endpoint: moto.endpoint,
    region: MOTO_REGION,
    prefix: PREFIX,
    forcePathStyle: true,
    timeoutMs: 10_000,
    presignMs: undefined,
  })
  return { server, bucket, look }
}

const download = (server: TestServer, id: string, headers: Record<string, string> = {}) =>
  fetch(`${server.url}/api/files/${id}/download`, { headers })

describe('the server on S3 (moto)', () => {
  it('stores a REST upload at {prefix}{id}/{name}, serves it byte-identical with ranges, and keeps nothing else', async () => {
    const { server, look } = await serverOnS3()
    const content = bytes(12 * MiB + 321)
    const { body } = await restUpload(server.url, content, { filename: 'clip final.mp4', speed: 0 })
    const id = body.upload_id
    await waitForStatus(server.url, id, 'completed', 60_000)
    // Staging goes once COMPLETED is recorded (a crash before that finds it still there).
    await waitFor(async () => (await listKeys(look.access, PREFIX)).length === 1, 20_000)
    expect(await listKeys(look.access, PREFIX)).toEqual([`${PREFIX}${id}/clip final.mp4`])
    expect(await listUploads(look.access, PREFIX)).toEqual([])

    const whole = await download(server, id)
    expect(whole.status).toBe(200)
    const etag = whole.headers.get('etag')!
    expect(etag).toBe(`"${sha256(content)}"`)
    expect(sha256(new Uint8Array(await whole.arrayBuffer()))).toBe(sha256(content))
    const ranged = await download(server, id, { range: `bytes=${5 * MiB - 10}-${5 * MiB + 9}` })
    expect(ranged.status).toBe(206)
    expect(Buffer.from(await ranged.arrayBuffer()).equals(content.subarray(5 * MiB - 10, 5 * MiB + 10))).toBe(
      true,
    )
    expect((await download(server, id, { 'if-none-match': etag })).status).toBe(304)

    // Deleting the file deletes its object.
    expect((await api(server.url, 'DELETE', `/api/files/${id}`)).status).toBeLessThan(300)
    await waitFor(async () => (await listKeys(look.access, PREFIX)).length === 0, 20_000)
  }, 120_000)

  it('cancel aborts the multipart upload: nothing of the upload is left in the bucket', async () => {
    const { server, look } = await serverOnS3()
    const content = bytes(12 * MiB)
    const { body } = await restUpload(server.url, content, { speed: 2 * MiB })
    const id = body.upload_id
    await waitFor(async () => (await statusOf(server.url, id)).body.uploaded_size > 0, 30_000)
    expect((await api(server.url, 'POST', `/api/upload/${id}/cancel`)).status).toBe(200)
    expect(await listUploads(look.access, PREFIX)).toEqual([])
    expect((await listKeys(look.access, PREFIX)).filter((key) => key.includes(id))).toEqual([])
  }, 120_000)

  it('a throttled transfer waits out a frozen S3 and completes byte-identical; /metrics counts the retries', async () => {
    const { server } = await serverOnS3({ S3_TIMEOUT: '1s' })
    const content = bytes(11 * MiB)
    const { body } = await restUpload(server.url, content, { speed: 2 * MiB })
    const id = body.upload_id
    await waitFor(async () => (await statusOf(server.url, id)).body.uploaded_size > 1 * MiB, 30_000)
    moto.freeze()
    try {
      await new Promise((resolve) => setTimeout(resolve, 4000))
    } finally {
      moto.thaw()
    }
    await waitForStatus(server.url, id, 'completed', 90_000)
    expect(sha256(new Uint8Array(await (await download(server, id)).arrayBuffer()))).toBe(sha256(content))
    const metrics = await (await fetch(`${server.url}/metrics`)).text()
    const retried = /upload_storage_outcomes_total\{outcome="retried"\} (\d+)/.exec(metrics)
    expect(Number(retried?.[1])).toBeGreaterThan(0)
  }, 150_000)

  it('refuses to start, in one line, on a bucket that does not exist', async () => {
    await expect(startServer(moto.env('no-such-bucket', PREFIX))).rejects.toThrow(
      /^S3_BUCKET no-such-bucket does not exist at http:\/\/127\.0\.0\.1:\d+: create it, or name one that does$/,
    )
  }, 60_000)
})
