import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  api,
  bytes,
  multipart,
  rawRequest,
  restUpload,
  statusOf,
  waitFor,
  waitForStatus,
  type UploadStatusBody,
} from './support/clients.js'
import { listStorage, startServer, type TestServer } from './support/server.js'

let server: TestServer
beforeAll(async () => {
  server = await startServer()
})
afterAll(() => server.stop())

const SLOW = 1000 // bytes per second: slow enough that nothing finishes during a test

describe('the /api contract of the older service', () => {
  it('POST /api/upload answers with the documented fields and stores the file byte for byte', async () => {
    const content = bytes(50_000)
    const { status, body } = await restUpload(server.url, content, { filename: 'report.pdf', speed: 0 })
    expect(status).toBe(200)
    expect(body).toEqual({ upload_id: expect.any(String), status: 'started', total_size: 50_000, speed: 0 })
    await waitForStatus(server.url, body.upload_id, 'completed')
    const stored = await readFile(join(server.dir, `${body.upload_id}_report.pdf`))
    expect(stored.equals(content)).toBe(true)
  })

  it('uses DEFAULT_UPLOAD_SPEED (1048576) when no speed is given', async () => {
    const { body } = await restUpload(server.url, bytes(10))
    expect(body.speed).toBe(1_048_576)
  })

  it('GET /api/upload/{id}/status has exactly the documented keys', async () => {
    const { body: started } = await restUpload(server.url, bytes(10_000), { filename: 'a.txt', speed: SLOW })
    const { status, body } = await statusOf(server.url, started.upload_id)
    expect(status).toBe(200)
    expect(Object.keys(body).sort()).toEqual(
      ['current_speed', 'filename', 'status', 'target_speed', 'total_size', 'uploaded_size'].sort(),
    )
    expect(body).toMatchObject({
      status: 'in_progress',
      filename: 'a.txt',
      total_size: 10_000,
      target_speed: SLOW,
    })
    expect(typeof body.uploaded_size).toBe('number')
    expect(typeof body.current_speed).toBe('number')
    await api(server.url, 'POST', `/api/upload/${started.upload_id}/cancel`)
  })

  it('pause, resume (keeping or changing the speed) and cancel answer as documented', async () => {
    const { body: started } = await restUpload(server.url, bytes(20_000), { speed: SLOW })
    const id = started.upload_id
    expect(await api(server.url, 'POST', `/api/upload/${id}/pause`)).toEqual({
      status: 200,
      body: { status: 'paused' },
    })
    expect((await statusOf(server.url, id)).body).toMatchObject({ status: 'paused', current_speed: 0 })
    expect(await api(server.url, 'POST', `/api/upload/${id}/resume`)).toEqual({
      status: 200,
      body: { status: 'resumed', speed: SLOW },
    })
    await api(server.url, 'POST', `/api/upload/${id}/pause`)
    expect(await api(server.url, 'POST', `/api/upload/${id}/resume?speed=2048`)).toEqual({
      status: 200,
      body: { status: 'resumed', speed: 2048 },
    })
    expect((await statusOf(server.url, id)).body).toMatchObject({ status: 'in_progress', target_speed: 2048 })
    expect(await api(server.url, 'POST', `/api/upload/${id}/cancel`)).toEqual({
      status: 200,
      body: { status: 'canceled' },
    })
    expect((await statusOf(server.url, id)).body.status).toBe('canceled')
  })

  it('GET /api/uploads lists every upload with upload_id added to the status fields', async () => {
    const { body: started } = await restUpload(server.url, bytes(100), {
      filename: 'listed.bin',
      speed: SLOW,
    })
    const { status, body } = await api<{ uploads: (UploadStatusBody & { upload_id: string })[] }>(
      server.url,
      'GET',
      '/api/uploads',
    )
    expect(status).toBe(200)
    const entry = body.uploads.find((upload) => upload.upload_id === started.upload_id)
    expect(entry).toEqual({
      upload_id: started.upload_id,
      filename: 'listed.bin',
      status: 'in_progress',
      uploaded_size: expect.any(Number),
      total_size: 100,
      current_speed: expect.any(Number),
      target_speed: SLOW,
    })
    await api(server.url, 'POST', `/api/upload/${started.upload_id}/cancel`)
  })

  it('GET /api/files lists stored files and DELETE /api/files/{id} removes one', async () => {
    const { body: started } = await restUpload(server.url, bytes(1000), { filename: 'keep.me', speed: 0 })
    const id = started.upload_id
    await waitForStatus(server.url, id, 'completed')
    const files = await api<{ files: unknown[] }>(server.url, 'GET', '/api/files')
    expect(files.status).toBe(200)
    expect(files.body.files).toContainEqual({ upload_id: id, filename: 'keep.me', status: 'completed' })

    expect(await api(server.url, 'DELETE', `/api/files/${id}`)).toEqual({
      status: 200,
      body: { status: 'deleted', upload_id: id, filename: 'keep.me' },
    })
    await expect(readFile(join(server.dir, `${id}_keep.me`))).rejects.toThrow(/ENOENT/)
    const after = await api<{ files: { upload_id: string }[] }>(server.url, 'GET', '/api/files')
    expect(after.body.files.map((f) => f.upload_id)).not.toContain(id)
    expect((await statusOf(server.url, id)).status).toBe(404)
  })

  it('files still listed in /api/files are complete: running uploads are not among them', async () => {
    const { body: done } = await restUpload(server.url, bytes(100), { speed: 0 })
    await waitForStatus(server.url, done.upload_id, 'completed')
    const { body: started } = await restUpload(server.url, bytes(5000), { speed: SLOW })
    expect((await statusOf(server.url, started.upload_id)).body.status).toBe('in_progress')
    const files = await api<{ files: { upload_id: string; status: string }[] }>(
      server.url,
      'GET',
      '/api/files',
    )
    const listed = files.body.files.map((f) => f.upload_id)
    expect(listed).toContain(done.upload_id)
    expect(listed).not.toContain(started.upload_id)
    expect(files.body.files.filter((f) => f.status !== 'completed')).toEqual([])
    await api(server.url, 'POST', `/api/upload/${started.upload_id}/cancel`)
  })
})

describe('/api errors: status code and {"detail"}', () => {
  const unknown = '7d1f3a52-0000-4000-8000-000000000000'

  it.each([
    ['POST', `/api/upload/${unknown}/pause`],
    ['POST', `/api/upload/${unknown}/resume`],
    ['POST', `/api/upload/${unknown}/cancel`],
    ['GET', `/api/upload/${unknown}/status`],
    ['DELETE', `/api/files/${unknown}`],
  ])('%s %s with an unknown id → 404', async (method, path) => {
    const { status, body } = await api(server.url, method, path)
    expect(status).toBe(404)
    expect(body).toEqual({ detail: expect.stringContaining('not found') })
  })

  it('actions the state does not allow → 400', async () => {
    const { body: done } = await restUpload(server.url, bytes(10), { speed: 0 })
    await waitForStatus(server.url, done.upload_id, 'completed')
    const pauseCompleted = await api(server.url, 'POST', `/api/upload/${done.upload_id}/pause`)
    expect(pauseCompleted).toEqual({
      status: 400,
      body: { detail: expect.stringMatching(/cannot be paused/) },
    })

    const { body: running } = await restUpload(server.url, bytes(5000), { speed: SLOW })
    const resumeRunning = await api(server.url, 'POST', `/api/upload/${running.upload_id}/resume`)
    expect(resumeRunning).toEqual({
      status: 400,
      body: { detail: expect.stringMatching(/cannot be resumed/) },
    })
    const deleteRunning = await api(server.url, 'DELETE', `/api/files/${running.upload_id}`)
    expect(deleteRunning).toEqual({ status: 400, body: { detail: expect.stringMatching(/cancel it first/) } })

    await api(server.url, 'POST', `/api/upload/${running.upload_id}/cancel`)
    const cancelTwice = await api(server.url, 'POST', `/api/upload/${running.upload_id}/cancel`)
    expect(cancelTwice).toEqual({
      status: 400,
      body: { detail: expect.stringMatching(/cannot be canceled/) },
    })
  })

  it.each([['abc'], ['1.5'], ['-1'], [''], ['1e3'], ['99999999999999999999']])(
    'speed=%s → 422 and nothing is stored',
    async (speed) => {
      const ids = async () =>
        (await api<{ uploads: { upload_id: string }[] }>(server.url, 'GET', '/api/uploads')).body.uploads.map(
          (upload) => upload.upload_id,
        )
      const idsBefore = await ids()
      const storedBefore = (await listStorage(server.dir)).stored
      const { status, body } = await restUpload(server.url, bytes(100), { speed, filename: 'refused.bin' })
      expect(status).toBe(422)
      expect(body).toEqual({ detail: expect.stringMatching(/speed|SafeInt/) })
      // No record, no file, and nothing left in staging once the request is over.
      expect(await ids()).toEqual(idsBefore)
      expect((await listStorage(server.dir)).stored).toEqual(storedBefore)
      await waitFor(async () =>
        (await listStorage(server.dir)).staging.every((name) => !name.endsWith('.incoming')),
      )
    },
  )

  it('resume with a bad speed → 422 and the upload stays paused', async () => {
    const { body: started } = await restUpload(server.url, bytes(5000), { speed: SLOW })
    await api(server.url, 'POST', `/api/upload/${started.upload_id}/pause`)
    const { status, body } = await api(server.url, 'POST', `/api/upload/${started.upload_id}/resume?speed=-5`)
    expect(status).toBe(422)
    expect(body.detail).toMatch(/speed/)
    expect((await statusOf(server.url, started.upload_id)).body.status).toBe('paused')
    await api(server.url, 'POST', `/api/upload/${started.upload_id}/cancel`)
  })

  it('a multipart body without a `file` part → 422', async () => {
    const { body, contentType } = multipart([{ name: 'other', content: 'x' }])
    const response = await rawRequest(server.url, '/api/upload', {
      headers: { 'content-type': contentType },
      body,
    })
    expect(response.status).toBe(422)
    expect(response.body.detail).toMatch(/file/i)
  })

  it('a body that is not multipart → 422', async () => {
    const response = await rawRequest(server.url, '/api/upload', {
      headers: { 'content-type': 'application/json' },
      body: Buffer.from('{}'),
    })
    expect(response).toEqual({ status: 422, body: { detail: expect.stringMatching(/multipart/) } })
  })

  it('an unknown path → 404 and a known path with the wrong method → 405', async () => {
    expect(await api(server.url, 'GET', '/api/nothing-here')).toEqual({
      status: 404,
      body: { detail: 'Not Found' },
    })
    expect(await api(server.url, 'GET', '/api/upload')).toEqual({
      status: 405,
      body: { detail: 'Method Not Allowed' },
    })
  })
})

describe('the small points of the REST edge', () => {
  it('every JSON body ends with a newline (curl leaves the prompt on a line of its own)', async () => {
    const { body } = await restUpload(server.url, bytes(10), { speed: 0 })
    const id = String(body.upload_id)
    await waitForStatus(server.url, id, 'completed')
    const paths = [
      ['GET', `/api/upload/${id}/status`],
      ['GET', '/api/uploads'], // streamed a page at a time
      ['GET', '/api/files'],
      ['GET', '/api/limits'],
      ['GET', '/api/nothing-here'],
      ['POST', `/api/upload/${id}/pause`],
      ['GET', `/api/files/missing/download`],
      ['GET', '/api/openapi.json'],
      ['GET', '/healthz'],
      ['GET', '/files'],
    ]
    for (const [method, path] of paths) {
      const response = await fetch(`${server.url}${path}`, { method })
      expect(response.headers.get('content-type'), path).toMatch(/^application\/json/)
      const text = await response.text()
      expect(text.endsWith('}\n'), `${method} ${path}: ${JSON.stringify(text.slice(-20))}`).toBe(true)
      expect(() => JSON.parse(text) as unknown).not.toThrow()
    }
  })

  it('GET /files (the tus endpoint) answers 405 in JSON, pointing at /api/files; an upload URL no upload has is 404 JSON', async () => {
    const unknown = await fetch(`${server.url}/files/some-id`)
    expect(unknown.status).toBe(404)
    expect(await unknown.json()).toEqual({ detail: expect.stringContaining('not found') })
    for (const path of ['/files', '/files/']) {
      const response = await fetch(`${server.url}${path}`)
      expect(response.status).toBe(405)
      expect(response.headers.get('allow')).toBe('OPTIONS, POST, HEAD, PATCH, DELETE')
      expect(await response.json()).toEqual({
        detail: expect.stringMatching(/tus endpoint .* GET \/api\/files\b.*\/download/),
      })
    }
  })

  it('/api/docs/ (trailing slash) leads to the docs page', async () => {
    const redirect = await fetch(`${server.url}/api/docs/`, { redirect: 'manual' })
    expect(redirect.status).toBe(308)
    expect(redirect.headers.get('location')).toBe('/api/docs')
    const followed = await fetch(`${server.url}/api/docs/`)
    expect(followed.status).toBe(200)
    expect(await followed.text()).toMatch(/<div id="swagger-ui">/)
  })
})
