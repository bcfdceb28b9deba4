import { createHash, randomUUID } from 'node:crypto'
import { CreateMultipartUploadCommand, PutObjectCommand } from '@aws-sdk/client-s3'
import { Upload } from 'tus-js-client'
import { afterAll, describe, expect, it } from 'vitest'
import { listKeys, listUploads } from '../src/seams/storage/s3-bucket.js'
import { S3Storage } from '../src/seams/storage/s3.js'
import { api, bytes, gql, restUpload, statusOf, waitFor, waitForStatus, wsClient } from './support/clients.js'
import { motoForTests } from './support/moto.js'
import { restartableServer } from './support/restartable.js'
import { s3Gate, type S3Gate } from './support/s3-gate.js'
import { startServer, type TestServer } from './support/server.js'
import { tusHead, type Sent } from './support/tus.js'

/**
 * The whole server storing into S3 (moto on loopback), through its real transports: every byte goes into the
 * bucket and comes back out of it. moto does not check checksums: the tests hash what they read back.
 */
const MiB = 1024 * 1024
const PREFIX = 'gw/'
const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex')

const moto = motoForTests()
const servers: TestServer[] = []
const gates: S3Gate[] = []
afterAll(async () => {
  for (const server of servers) await server.stop().catch(() => undefined)
  for (const gate of gates) await gate.close()
})

async function serverOnS3(
  env: Record<string, string> = {},
): Promise<{ server: TestServer; bucket: string; look: S3Storage }> {
  const bucket = await moto().createBucket()
  const server = await startServer({ ...moto().env(bucket, PREFIX), ...env })
  servers.push(server)
  const look = moto().storage(bucket, PREFIX)
  return { server, bucket, look }
}

const download = (server: TestServer, id: string, headers: Record<string, string> = {}) =>
  fetch(`${server.url}/api/files/${id}/download`, { headers })

/**
 * A server whose S3 requests pass through a gate (S3_TIMEOUT 1s), with one upload of more than a part
 * completed (so it went through staging and a multipart upload) and its object in place at `key`.
 */
async function completedBehindGate(filename: string) {
  const bucket = await moto().createBucket()
  const gate = await s3Gate(moto().endpoint)
  gates.push(gate)
  const server = await startServer({
    ...moto().env(bucket, PREFIX),
    S3_ENDPOINT: gate.endpoint,
    S3_TIMEOUT: '1s',
  })
  servers.push(server)
  const look = moto().storage(bucket, PREFIX)
  const { body } = await restUpload(server.url, bytes(6 * MiB + 5), { filename, speed: 0 })
  const id = body.upload_id
  const key = `${PREFIX}${id}/${filename}`
  await waitForStatus(server.url, id, 'completed', 60_000)
  // Its staging goes once COMPLETED is recorded: gone too, so that nothing of the upload is still under way.
  await waitFor(async () => (await listKeys(look.access, PREFIX)).join() === key, 20_000)
  return { server, id, key, look, gate }
}

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

  it('a small upload nothing paces is one object, in place as its answer comes: no staging, no multipart upload', async () => {
    const { server, look } = await serverOnS3()
    const content = bytes(16)
    const { body } = await restUpload(server.url, content, { filename: 'tiny.txt', speed: 0 })
    expect((await statusOf(server.url, body.upload_id)).body.status).toBe('completed')
    expect(await listKeys(look.access, PREFIX)).toEqual([`${PREFIX}${body.upload_id}/tiny.txt`])
    expect(await listUploads(look.access, PREFIX)).toEqual([])
    const whole = await download(server, body.upload_id)
    expect(whole.headers.get('etag')).toBe(`"${sha256(content)}"`)
    expect(Buffer.from(await whole.arrayBuffer())).toEqual(content)
  }, 60_000)

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
    moto().freeze()
    try {
      await new Promise((resolve) => setTimeout(resolve, 4000))
    } finally {
      moto().thaw()
    }
    await waitForStatus(server.url, id, 'completed', 90_000)
    expect(sha256(new Uint8Array(await (await download(server, id)).arrayBuffer()))).toBe(sha256(content))
    const metrics = await (await fetch(`${server.url}/metrics`)).text()
    const retried = /upload_storage_outcomes_total\{outcome="retried"\} (\d+)/.exec(metrics)
    expect(Number(retried?.[1])).toBeGreaterThan(0)
  }, 150_000)

  it('progress says what S3 acknowledged: whole parts, behind the bytes sent, never back over a pause, all of them at COMPLETED', async () => {
    const { server } = await serverOnS3()
    const PART = 5 * MiB
    const size = 12 * MiB + 4321
    const content = bytes(size)
    const { body } = await restUpload(server.url, content, { speed: 2 * MiB })
    const id = body.upload_id
    const client = wsClient(server.url)
    type Figures = { status: string; uploadedSize: number; acknowledgedSize: number }
    const events: Figures[] = []
    let paused: Figures | undefined
    try {
      for await (const result of client.iterate<{ uploadProgress: Figures }>({
        query: `subscription ($id: ID!) { uploadProgress(id: $id) { status uploadedSize acknowledgedSize } }`,
        variables: { id },
      })) {
        if (result.errors) throw new Error(JSON.stringify(result.errors))
        const event = result.data!.uploadProgress
        events.push(event)
        // Mid-way through the second part, with the first one acknowledged: pause there.
        if (paused === undefined && event.status === 'IN_PROGRESS' && event.uploadedSize > PART + MiB) {
          await gql(server.url, `mutation ($id: ID!) { pauseUpload(id: $id) { id } }`, { id })
          const { data } = await gql<{ upload: Figures }>(
            server.url,
            `query ($id: ID!) { upload(id: $id) { status uploadedSize acknowledgedSize } }`,
            { id },
          )
          paused = data!.upload
          await gql(server.url, `mutation ($id: ID!) { resumeUpload(id: $id, speed: 0) { id } }`, { id })
        }
      }
    } finally {
      await client.dispose()
    }
    // Paused in the second part or, on a slow machine, the third: whole parts acknowledged, no more.
    expect(paused?.status).toBe('PAUSED')
    expect([PART, 2 * PART]).toContain(paused!.acknowledgedSize)
    expect(paused!.acknowledgedSize).toBeLessThanOrEqual(paused!.uploadedSize)
    let before = 0
    for (const event of events) {
      expect(event.acknowledgedSize).toBeLessThanOrEqual(event.uploadedSize)
      if (event.acknowledgedSize !== size) expect(event.acknowledgedSize % PART).toBe(0)
      expect(event.acknowledgedSize).toBeGreaterThanOrEqual(before)
      before = event.acknowledgedSize
    }
    // Bytes were sent into a part S3 had not answered for yet, and the figures said so.
    expect(events.some((event) => event.acknowledgedSize < event.uploadedSize)).toBe(true)
    expect(events.at(-1)).toEqual({ status: 'COMPLETED', uploadedSize: size, acknowledgedSize: size })
    expect(sha256(new Uint8Array(await (await download(server, id)).arrayBuffer()))).toBe(sha256(content))
  }, 120_000)

  it('sweeps abandoned multipart uploads and staging from the bucket while it runs, never a running upload', async () => {
    const { server, bucket, look } = await serverOnS3({ S3_SWEEP_INTERVAL: '1s' })
    const { keys } = look.access
    const s3 = moto().client()
    // What an instance that died (nobody restarted it), or an upload whose record went, leaves behind.
    const [gone, arriving, staged] = [randomUUID(), randomUUID(), randomUUID()]
    await s3.send(
      new CreateMultipartUploadCommand({
        Bucket: bucket,
        Key: keys.stored({ id: gone, storedName: `${gone}_clip.mp4` }),
      }),
    )
    await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: keys.staging({ id: gone }) }))
    await s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: keys.arriving({ id: arriving }, 'dead-node'), Body: '' }),
    )
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: keys.staging({ id: staged }), Body: 'abc' }))
    // A running upload's multipart upload and staging are owned: they stay.
    const content = bytes(11 * MiB)
    const { body } = await restUpload(server.url, content, { speed: 1 * MiB })
    const id = body.upload_id
    const ours = (key: string) => key.includes(id)
    await waitFor(async () => {
      const left = [
        ...(await listUploads(look.access, PREFIX)).map((open) => open.key),
        ...(await listKeys(look.access, PREFIX)),
      ]
      return left.every(ours) && left.length > 0
    }, 30_000)
    await waitForStatus(server.url, id, 'completed', 60_000)
    expect(sha256(new Uint8Array(await (await download(server, id)).arrayBuffer()))).toBe(sha256(content))
  }, 120_000)

  it('S3_PRESIGN_DOWNLOADS: a completed download answers 302 to a short-lived presigned GET that serves the same bytes', async () => {
    const { server } = await serverOnS3({ S3_PRESIGN_DOWNLOADS: '60s' })
    const content = bytes(6 * MiB + 77)
    const { body } = await restUpload(server.url, content, { filename: 'report final.pdf', speed: 0 })
    const id = body.upload_id
    // Not complete yet: answered here, as without the setting.
    const slow = (await restUpload(server.url, bytes(6 * MiB), { speed: 64 * 1024 })).body.upload_id
    expect((await download(server, slow)).status).toBe(404)
    await waitForStatus(server.url, id, 'completed', 60_000)

    const answer = await fetch(`${server.url}/api/files/${id}/download`, { redirect: 'manual' })
    expect(answer.status).toBe(302)
    const location = new URL(answer.headers.get('location')!)
    expect(location.origin).toBe(moto().endpoint)
    expect(location.searchParams.get('X-Amz-Expires')).toBe('60')
    // A real client follows it to S3 and gets the file itself.
    const followed = await download(server, id)
    expect(followed.status).toBe(200)
    expect(followed.redirected).toBe(true)
    expect(new URL(followed.url).origin).toBe(moto().endpoint)
    expect(sha256(new Uint8Array(await followed.arrayBuffer()))).toBe(sha256(content))
    // HEAD is answered here (a presigned URL is good for GET alone).
    const head = await fetch(`${server.url}/api/files/${id}/download`, { method: 'HEAD', redirect: 'manual' })
    expect(head.status).toBe(200)
    expect(head.headers.get('etag')).toBe(`"${sha256(content)}"`)
  }, 120_000)

  it('an upload recovered at start-up while S3 does not answer for it waits and retries, then completes byte-identical', async () => {
    const bucket = await moto().createBucket()
    // S3 answers start-up's checks and sweep, but nothing of this upload (every key of it holds its id).
    const gate = await s3Gate(moto().endpoint)
    const server = await restartableServer({
      ...moto().env(bucket, PREFIX),
      S3_ENDPOINT: gate.endpoint,
      S3_TIMEOUT: '1s',
    })
    try {
      const content = bytes(11 * MiB)
      const { body } = await restUpload(server.url, content, { speed: 2 * MiB })
      const id = body.upload_id
      await waitFor(async () => (await statusOf(server.url, id)).body.uploaded_size > 6 * MiB, 90_000)
      await server.kill('SIGKILL')
      gate.hold(id)
      await server.start()
      // Recovery asked S3 about it over and over (each try gives up after S3_TIMEOUT), or gave up on it.
      const outcome = await waitFor(async () => {
        const { status } = (await statusOf(server.url, id)).body
        return status === 'failed' ? status : gate.held() >= 12 ? 'waiting' : undefined
      }, 90_000)
      expect(outcome).toBe('waiting')
      expect((await statusOf(server.url, id)).body.status).toBe('in_progress')
      gate.open()
      await waitForStatus(server.url, id, 'completed', 90_000)
      const answer = await fetch(`${server.url}/api/files/${id}/download`)
      expect(sha256(new Uint8Array(await answer.arrayBuffer()))).toBe(sha256(content))
    } finally {
      await server.stop()
      await gate.close()
    }
  }, 240_000)

  it('a delete while S3 does not answer is 503 and changes nothing; once S3 answers, the record and its object go', async () => {
    const { server, id, key, look, gate } = await completedBehindGate('deleted.bin')
    gate.hold(id)
    const refused = await api(server.url, 'DELETE', `/api/files/${id}`)
    expect(refused).toEqual({
      status: 503,
      body: { detail: expect.stringMatching(/^Storage did not answer .*; try again$/) },
    })
    const asked = await gql(server.url, 'mutation($id: ID!) { deleteFile(id: $id) { id } }', { id })
    expect(asked.errors?.[0]?.extensions?.code).toBe('UNAVAILABLE')
    // The record and the object are both still there (the tests' own look goes to moto past the gate).
    expect((await statusOf(server.url, id)).body.status).toBe('completed')
    expect(await listKeys(look.access, PREFIX)).toEqual([key])
    // Once S3 answers, the same call deletes both.
    gate.open()
    expect((await api(server.url, 'DELETE', `/api/files/${id}`)).status).toBe(200)
    expect((await statusOf(server.url, id)).status).toBe(404)
    expect(await listKeys(look.access, PREFIX)).toEqual([])
  }, 120_000)

  it('a download while S3 does not answer is 503 "try again" (GET, HEAD, the tus URL), not a 500', async () => {
    const { server, id, gate } = await completedBehindGate('download.bin')
    gate.hold(id)
    for (const [method, url] of [
      ['GET', `${server.url}/api/files/${id}/download`],
      ['HEAD', `${server.url}/api/files/${id}/download`],
      ['GET', `${server.url}/files/${id}`],
    ] as const) {
      const answer = await fetch(url, { method })
      expect({ method, url, status: answer.status }).toEqual({ method, url, status: 503 })
      if (method === 'GET')
        expect(await answer.json()).toEqual({
          detail: expect.stringMatching(/^Storage did not answer .*; try again$/),
        })
    }
    gate.open()
    const served = await download(server, id)
    expect(served.status).toBe(200)
    expect((await served.arrayBuffer()).byteLength).toBe(6 * MiB + 5)
  }, 120_000)

  it('refuses to start, in one line, on a bucket that does not exist', async () => {
    await expect(startServer(moto().env('no-such-bucket', PREFIX))).rejects.toThrow(
      /^S3_BUCKET no-such-bucket does not exist at http:\/\/127\.0\.0\.1:\d+: create it, or name one that does$/,
    )
  }, 60_000)
})

/**
 * tus-js-client against `url`, PATCHes of `chunkSize`; `cutAt` aborts it once that many bytes of the current
 * PATCH are on the wire (the request is cut off mid-body, as a dropped connection would), resolving then.
 */
function tusSend(
  url: string,
  file: Buffer,
  { uploadUrl, cutAt, sent }: { uploadUrl?: string; cutAt?: number; sent: Sent[] },
): Promise<{ url: string; aborted: boolean }> {
  return new Promise((resolve, reject) => {
    let cutting = false
    const upload: Upload = new Upload(file, {
      endpoint: `${url}/files/`,
      uploadUrl,
      chunkSize: 3 * MiB,
      metadata: { filename: 'tus on s3.bin', speed: '0' },
      retryDelays: null,
      storeFingerprintForResuming: false,
      onBeforeRequest: (req) => {
        const offset = req.getHeader('Upload-Offset')
        sent.push({ method: req.getMethod(), offset: offset === undefined ? undefined : Number(offset) })
      },
      onProgress: (bytesSent) => {
        if (cutAt === undefined || cutting || bytesSent < cutAt) return
        cutting = true
        void upload.abort().then(() => resolve({ url: upload.url ?? '', aborted: true }))
      },
      onSuccess: () => resolve({ url: upload.url ?? '', aborted: false }),
      onError: reject,
    })
    upload.start()
  })
}

describe('tus on S3 (moto)', () => {
  it('tus-js-client sends a file in several PATCHes, is cut off mid-PATCH, resumes from HEAD’s offset, and the stored object is byte-identical', async () => {
    const { server, look } = await serverOnS3()
    const content = bytes(13 * MiB + 99)
    const first: Sent[] = []
    // Cut inside the third PATCH (6..9 MiB): two whole PATCHes answered, the third's connection dropped.
    const cut = await tusSend(server.url, content, { cutAt: 7 * MiB + 12345, sent: first })
    expect(cut.aborted).toBe(true)
    expect(first.filter((request) => request.method === 'PATCH').length).toBe(3)
    const id = cut.url.split('/').pop() ?? ''
    const offset = await waitFor(async () => {
      const head = await tusHead(cut.url)
      return head.status === 200 ? Number(head.headers.get('upload-offset')) : undefined
    }, 20_000)
    expect(offset).toBeGreaterThanOrEqual(6 * MiB)
    expect(offset).toBeLessThan(content.length)

    const second: Sent[] = []
    expect(await tusSend(server.url, content, { uploadUrl: cut.url, sent: second })).toEqual({
      url: cut.url,
      aborted: false,
    })
    // It asked where to go on from and sent only the rest, in more than one PATCH.
    expect(second[0]).toEqual({ method: 'HEAD', offset: undefined })
    const patches = second.filter((request) => request.method === 'PATCH')
    expect(patches[0]?.offset).toBe(offset)
    expect(patches.length).toBeGreaterThan(1)

    await waitForStatus(server.url, id, 'completed', 60_000)
    const stored = await download(server, id)
    expect(stored.headers.get('etag')).toBe(`"${sha256(content)}"`)
    expect(sha256(new Uint8Array(await stored.arrayBuffer()))).toBe(sha256(content))
    await waitFor(async () => (await listKeys(look.access, PREFIX)).length === 1, 20_000)
    expect(await listKeys(look.access, PREFIX)).toEqual([`${PREFIX}${id}/tus on s3.bin`])
    expect(await listUploads(look.access, PREFIX)).toEqual([])
  }, 120_000)
})
