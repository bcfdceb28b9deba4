import { createHash } from 'node:crypto'
import { rm, writeFile } from 'node:fs/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { contentDisposition, parseRange } from '../src/rest/download.js'
import { api, bytes, gql, restUpload, socketRequest, waitFor, waitForStatus } from './support/clients.js'
import { LocalStorage } from '../src/seams/storage/local.js'
import { captureLogLines } from './support/log-lines.js'
import { startServer, type TestServer } from './support/server.js'

let server: TestServer
let id: string
const content = bytes(100_000)
const NAME = 'résumé "final".pdf'

beforeAll(async () => {
  server = await startServer()
  const { body } = await restUpload(server.url, content, { filename: NAME, speed: 0 })
  id = body.upload_id
  await waitForStatus(server.url, id, 'completed')
})
afterAll(() => server.stop())
const log = captureLogLines()

const download = (headers: Record<string, string> = {}, method = 'GET') =>
  fetch(`${server.url}/api/files/${id}/download`, { method, headers })

describe('GET /api/files/{id}/download', () => {
  it('streams the stored file byte for byte, with its length, a strong ETag and a safe Content-Disposition', async () => {
    const response = await download()
    expect(response.status).toBe(200)
    expect(Buffer.from(await response.arrayBuffer()).equals(content)).toBe(true)
    expect(response.headers.get('content-length')).toBe('100000')
    expect(response.headers.get('etag')).toBe(`"${createHash('sha256').update(content).digest('hex')}"`)
    expect(response.headers.get('accept-ranges')).toBe('bytes')
    expect(response.headers.get('content-disposition')).toBe(
      `attachment; filename="r_sum_ _final_.pdf"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.pdf`,
    )
  })

  it('serves a range with 206 and Content-Range, so an interrupted download resumes', async () => {
    const response = await download({ range: 'bytes=1000-1999' })
    expect(response.status).toBe(206)
    expect(response.headers.get('content-range')).toBe('bytes 1000-1999/100000')
    expect(response.headers.get('content-length')).toBe('1000')
    expect(Buffer.from(await response.arrayBuffer()).equals(content.subarray(1000, 2000))).toBe(true)

    const rest = await download({ range: 'bytes=99000-' })
    expect(Buffer.from(await rest.arrayBuffer()).equals(content.subarray(99_000))).toBe(true)
    const suffix = await download({ range: 'bytes=-10' })
    expect(Buffer.from(await suffix.arrayBuffer()).equals(content.subarray(-10))).toBe(true)
  })

  it('answers 416 with the size for a range beyond the end', async () => {
    const response = await download({ range: 'bytes=200000-' })
    expect(response.status).toBe(416)
    expect(response.headers.get('content-range')).toBe('bytes */100000')
    expect(await response.json()).toEqual({ detail: expect.stringMatching(/Range/) })
  })

  it('honours If-None-Match (304) and If-Range (a stale ETag gets the whole file)', async () => {
    const etag = (await download({}, 'HEAD')).headers.get('etag')!
    expect((await download({ 'if-none-match': etag })).status).toBe(304)
    const stale = await download({ range: 'bytes=0-9', 'if-range': '"something-else"' })
    expect(stale.status).toBe(200)
    expect((await stale.arrayBuffer()).byteLength).toBe(100_000)
  })

  it('HEAD gives the headers without the body', async () => {
    const response = await download({}, 'HEAD')
    expect(response.status).toBe(200)
    expect(response.headers.get('content-length')).toBe('100000')
    expect(response.headers.get('etag')).toBe((await download()).headers.get('etag'))
    // fetch drops whatever follows a HEAD's headers; on the wire, nothing may.
    const { closed } = socketRequest(
      server.url,
      `HEAD /api/files/${id}/download HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`,
    )
    const raw = await closed
    expect(raw.status).toBe(200)
    expect(raw.body).toBe('')
  })

  it('an upload without a complete file, or an unknown id → 404 {"detail"}', async () => {
    const { body } = await restUpload(server.url, bytes(10_000), { speed: 1000 })
    const running = await api(server.url, 'GET', `/api/files/${body.upload_id}/download`)
    expect(running).toEqual({
      status: 404,
      body: { detail: expect.stringMatching(/no complete file \(it is in_progress\)/) },
    })
    expect((await api(server.url, 'GET', '/api/files/nope/download')).status).toBe(404)
    await api(server.url, 'POST', `/api/upload/${body.upload_id}/cancel`)
  })

  it('GraphQL exposes the download URL once the upload is completed, and not before', async () => {
    const { data } = await gql<{ files: { id: string; downloadUrl: string }[] }>(
      server.url,
      '{ files { id downloadUrl } }',
    )
    expect(data?.files).toContainEqual({ id, downloadUrl: `/api/files/${id}/download` })
    const { body } = await restUpload(server.url, bytes(10_000), { speed: 1000 })
    const running = await gql<{ upload: { status: string; downloadUrl: string | null } }>(
      server.url,
      'query ($id: ID!) { upload(id: $id) { status downloadUrl } }',
      { id: body.upload_id },
    )
    expect(running.data?.upload).toEqual({ status: 'IN_PROGRESS', downloadUrl: null })
    await api(server.url, 'POST', `/api/upload/${body.upload_id}/cancel`)
  })
})

describe('a completed upload whose stored file has vanished', () => {
  it('answers 410 {"detail"} to GET, HEAD and a conditional GET, never an empty reply, and logs it with the request id', async () => {
    const { body } = await restUpload(server.url, bytes(5000), { filename: 'gone.bin', speed: 0 })
    const lost = body.upload_id
    await waitForStatus(server.url, lost, 'completed')
    const { data } = await gql<{ upload: { storedName: string; sha256: string } }>(
      server.url,
      `{ upload(id: "${lost}") { storedName sha256 } }`,
    )
    const { storedName, sha256 } = data!.upload
    // Someone removes it by hand: the record still says completed.
    await rm(new LocalStorage(server.dir).storedPath({ id: lost, storedName }))
    log.clear()

    const url = `${server.url}/api/files/${lost}/download`
    const got = await fetch(url)
    expect(got.status).toBe(410)
    expect(got.headers.get('etag')).toBeNull()
    expect(await got.json()).toEqual({
      detail: expect.stringMatching(
        /recorded as completed, but its stored file is missing.*upload the file again/,
      ),
    })
    const others: RequestInit[] = [
      { method: 'HEAD' },
      { headers: { 'if-none-match': `"${sha256}"` } },
      { headers: { range: 'bytes=0-9' } },
    ]
    for (const init of others) expect((await fetch(url, init)).status, JSON.stringify(init)).toBe(410)
    const requestId = got.headers.get('x-request-id')
    expect(log.lines().filter((line) => line.requestId === requestId)).toEqual([
      expect.objectContaining({ level: 'error', event: 'download.file_missing', id: lost }),
    ])
  })
})

describe('header helpers', () => {
  it.each([
    ['bytes=0-0', [0, 0]],
    ['bytes=5-', [5, 9]],
    ['bytes=-3', [7, 9]],
    ['bytes=-30', [0, 9]],
    ['bytes=8-100', [8, 9]],
    ['bytes=10-', 'unsatisfiable'],
    ['bytes=5-4', 'unsatisfiable'],
    ['bytes=0-1,4-5', undefined],
    ['items=0-1', undefined],
    ['bytes=-', undefined],
  ])('parseRange(%j) of 10 bytes → %j', (header, expected) => {
    expect(parseRange(header, 10)).toEqual(expected)
  })

  it('never lets a filename break out of the header', () => {
    for (const name of ['a"; filename="evil.exe', 'line\r\nX-Injected: 1', '日本語.txt', '100%.txt', '']) {
      const header = contentDisposition(name)
      expect(header).not.toMatch(/[\r\n]/)
      expect(header.match(/"/g)).toHaveLength(2)
    }
  })
})

describe('health and readiness', () => {
  it('/healthz says ok and /readyz ready, without a token even when one is required', async () => {
    const locked = await startServer({ API_TOKEN: 'probe-token-0123456789' })
    try {
      expect(await api(locked.url, 'GET', '/healthz')).toEqual({ status: 200, body: { status: 'ok' } })
      expect(await api(locked.url, 'GET', '/readyz')).toEqual({ status: 200, body: { status: 'ready' } })
    } finally {
      await locked.stop()
    }
  })

  it('/readyz is 503 with the reason when storage cannot be written', async () => {
    const broken = await startServer()
    try {
      await rm(`${broken.dir}/.staging`, { recursive: true })
      await writeFile(`${broken.dir}/.staging`, 'a file where the folder should be')
      const { status, body } = await api(broken.url, 'GET', '/readyz')
      expect(status).toBe(503)
      expect(body).toEqual({ status: 'unavailable', detail: expect.stringMatching(/not writable/) })
    } finally {
      await rm(`${broken.dir}/.staging`, { force: true })
      await broken.stop()
    }
  })
})

describe('download links when API_TOKEN is set', () => {
  const TOKEN = 'download-token-0123456789'
  let locked: TestServer
  let lockedId: string
  const data = bytes(30_000)
  const auth = { authorization: `Bearer ${TOKEN}` }
  beforeAll(async () => {
    locked = await startServer({ API_TOKEN: TOKEN })
    const form = new FormData()
    form.append('file', new Blob([data]), 'secret.bin')
    const started = (await (
      await fetch(`${locked.url}/api/upload?speed=0`, { method: 'POST', body: form, headers: auth })
    ).json()) as { upload_id: string }
    lockedId = started.upload_id
    await waitFor(async () => {
      const r = await fetch(`${locked.url}/api/upload/${lockedId}/status`, { headers: auth })
      return ((await r.json()) as { status: string }).status === 'completed' || undefined
    })
  })
  afterAll(() => locked.stop())

  const signedLink = async () => {
    const response = await fetch(`${locked.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth },
      body: JSON.stringify({ query: `{ upload(id: "${lockedId}") { downloadUrl } }` }),
    })
    return ((await response.json()) as { data: { upload: { downloadUrl: string } } }).data.upload.downloadUrl
  }

  it('downloadUrl is a signed, expiring link that works without a header (a browser link, curl -O)', async () => {
    const link = await signedLink()
    expect(link).toMatch(/^\/api\/files\/[^/]+\/download\?expires=\d+&signature=[\w-]+$/)
    const response = await fetch(`${locked.url}${link}`)
    expect(response.status).toBe(200)
    expect(Buffer.from(await response.arrayBuffer()).equals(data)).toBe(true)
  })

  it('refuses a link without a signature, a tampered or expired one, or one used for anything else', async () => {
    const link = new URL(await signedLink(), locked.url)
    const expect401 = async (url: string, method = 'GET') =>
      expect((await fetch(url, { method })).status, `${method} ${url}`).toBe(401)
    await expect401(`${locked.url}/api/files/${lockedId}/download`)
    const tampered = new URL(link)
    tampered.searchParams.set('signature', 'A' + (link.searchParams.get('signature') ?? '').slice(1))
    await expect401(tampered.href)
    const later = new URL(link)
    later.searchParams.set('expires', String(Number(link.searchParams.get('expires')) + 60))
    await expect401(later.href)
    const { signedDownloadPath } = await import('../src/app/access.js')
    await expect401(`${locked.url}${signedDownloadPath(lockedId, TOKEN, Date.now() - 2 * 3600 * 1000)}`)
    await expect401(`${locked.url}/api/files/another-id/download${link.search}`)
    await expect401(`${locked.url}/api/files/${lockedId}${link.search}`, 'DELETE')
    await expect401(`${locked.url}/api/uploads${link.search}`)
  })
})
