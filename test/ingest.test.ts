import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  api,
  bytes,
  gqlUpload,
  multipart,
  rawRequest,
  statusOf,
  waitFor,
  waitForStatus,
} from './support/clients.js'
import { listStorage, startServer, type TestServer } from './support/server.js'

let root: string
let server: TestServer
beforeAll(async () => {
  // The storage folder sits alone inside `root`, so anything written beside it would show.
  root = await mkdtemp(join(tmpdir(), 'uploads-ingest-'))
  server = await startServer({ MAX_UPLOAD_SIZE: String(64 * 1024) }, join(root, 'storage'))
})
afterAll(async () => {
  await server.stop()
  await rm(root, { recursive: true, force: true })
})

async function uploadNamed(filename: string, content: Buffer) {
  const { body, contentType } = multipart([{ name: 'file', filename, content }])
  return rawRequest(server.url, '/api/upload?speed=0', { headers: { 'content-type': contentType }, body })
}

describe('hostile filenames', () => {
  it.each([
    ['../../escape.txt', 'escape.txt'],
    ['/etc/passwd', 'passwd'],
    ['..\\..\\windows.ini', 'windows.ini'],
    ['..', 'file'],
    ['.hidden', 'hidden'],
    ['uploads.json', 'uploads.json'],
    ['.uploads.json', 'uploads.json'],
    ['caf\u0065\u0301.txt', 'caf\u00e9.txt'],
  ])('%j is stored inside the folder as {id}_%s, and shown as sent', async (filename, safe) => {
    const content = bytes(100)
    const { status, body } = await uploadNamed(filename, content)
    expect(status).toBe(200)
    const id = String(body.upload_id)
    const done = await waitForStatus(server.url, id, 'completed')
    expect(done.filename).toBe(filename)
    expect((await readFile(join(server.dir, `${id}_${safe}`))).equals(content)).toBe(true)
    expect(await readdir(root)).toEqual(['storage'])
  })

  it('control characters (sent the valid way, RFC 5987 filename*) are stripped from the stored name', async () => {
    const { body, contentType } = multipart([{ name: 'file', filename: '', content: bytes(10) }])
    const encoded = body
      .toString('latin1')
      .replace('filename=""', "filename*=utf-8''a%01b%7Fc%E2%80%AEtxt.exe")
    const response = await rawRequest(server.url, '/api/upload?speed=0', {
      headers: { 'content-type': contentType },
      body: Buffer.from(encoded, 'latin1'),
    })
    expect(response.status).toBe(200)
    const id = String(response.body.upload_id)
    const done = await waitForStatus(server.url, id, 'completed')
    expect(done.filename).toBe('a\u0001b\u007fc\u202etxt.exe')
    expect((await readdir(server.dir)).filter((name) => name.startsWith(id))).toEqual([`${id}_abctxt.exe`])
  })

  it('an empty filename (a form sent with no file chosen) → 422', async () => {
    const { status, body } = await uploadNamed('', bytes(0))
    expect(status).toBe(422)
    expect(body.detail).toMatch(/file/)
  })

  it('a name longer than the file system allows is cut to fit, keeping its extension', async () => {
    const { body } = await uploadNamed(`${'é'.repeat(300)}.tar.gz`, bytes(10))
    const id = String(body.upload_id)
    await waitForStatus(server.url, id, 'completed')
    const [stored] = (await readdir(server.dir)).filter((name) => name.startsWith(id))
    expect(Buffer.byteLength(stored!)).toBeLessThanOrEqual(255 - '.part'.length)
    expect(stored).toMatch(/é\.gz$/)
  })

  it('two uploads of the same name never share a path', async () => {
    const a = await uploadNamed('same.txt', Buffer.from('first'))
    const b = await uploadNamed('same.txt', Buffer.from('second'))
    await waitForStatus(server.url, String(a.body.upload_id), 'completed')
    await waitForStatus(server.url, String(b.body.upload_id), 'completed')
    expect(await readFile(join(server.dir, `${a.body.upload_id}_same.txt`), 'utf8')).toBe('first')
    expect(await readFile(join(server.dir, `${b.body.upload_id}_same.txt`), 'utf8')).toBe('second')
  })
})

describe('bodies that do not arrive whole', () => {
  it('a client that disconnects mid-body leaves no record and no staging file', async () => {
    const before = await api<{ uploads: unknown[] }>(server.url, 'GET', '/api/uploads')
    const { port } = new URL(server.url)
    const socket = connect(Number(port), '127.0.0.1')
    await new Promise((resolve) => socket.once('connect', resolve))
    const head = '--b\r\nContent-Disposition: form-data; name="file"; filename="cut.bin"\r\n\r\n'
    socket.write(
      'POST /api/upload?speed=0 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n' +
        `Content-Length: ${1_000_000}\r\n\r\n${head}`,
    )
    socket.write(bytes(30_000))
    await waitFor(async () =>
      (await listStorage(server.dir)).staging.some((name) => name.endsWith('.incoming')),
    )
    socket.destroy()
    await waitFor(async () =>
      (await listStorage(server.dir)).staging.every((name) => !name.endsWith('.incoming')),
    )
    expect(await api(server.url, 'GET', '/api/uploads')).toEqual({ status: 200, body: before.body })
  })

  it('a body cut off mid-part is a 422 and leaves nothing', async () => {
    const { body, contentType } = multipart([{ name: 'file', filename: 'x.bin', content: bytes(1000) }])
    const cut = body.subarray(0, body.length - 20)
    const response = await rawRequest(server.url, '/api/upload', {
      headers: { 'content-type': contentType },
      body: cut,
    })
    expect(response.status).toBe(422)
    expect(response.body.detail).toMatch(/multipart/i)
    await waitFor(async () =>
      (await listStorage(server.dir)).staging.every((name) => !name.endsWith('.incoming')),
    )
  })

  it('a file over MAX_UPLOAD_SIZE is refused with 413 before the rest of the body is read', async () => {
    const response = await rawRequest(server.url, '/api/upload', {
      ...(() => {
        const { body, contentType } = multipart([
          { name: 'file', filename: 'big.bin', content: bytes(200 * 1024) },
        ])
        return { headers: { 'content-type': contentType }, body }
      })(),
    }).catch((error: Error) => ({ status: 0, body: { detail: error.message } }))
    // The server answers and closes mid-body; a client may see the answer or the reset, never a stored file.
    if (response.status !== 0)
      expect(response).toEqual({ status: 413, body: { detail: expect.stringMatching(/limit/) } })
    await waitFor(async () =>
      (await listStorage(server.dir)).staging.every((name) => !name.endsWith('.incoming')),
    )
    const { body } = await api<{ uploads: { filename: string }[] }>(server.url, 'GET', '/api/uploads')
    expect(body.uploads.map((u) => u.filename)).not.toContain('big.bin')
  })

  it('GraphQL uploadFile over the limit → 413 with PAYLOAD_TOO_LARGE', async () => {
    const { status, body } = await gqlUpload(
      server.url,
      'mutation ($file: File!) { uploadFile(file: $file) { id } }',
      {},
      bytes(100 * 1024),
    )
    expect(status).toBe(413)
    expect(body.errors?.[0]?.extensions?.code).toBe('PAYLOAD_TOO_LARGE')
  })

  it('a slow but steady body is not cut off', async () => {
    const { port } = new URL(server.url)
    const socket = connect(Number(port), '127.0.0.1')
    const { body, contentType } = multipart([{ name: 'file', filename: 'slow.bin', content: bytes(4000) }])
    socket.write(
      `POST /api/upload?speed=0 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: ${contentType}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`,
    )
    for (let i = 0; i < body.length; i += 1000) {
      socket.write(body.subarray(i, i + 1000))
      await sleep(50)
    }
    const answer = await new Promise<string>((resolve) => {
      let text = ''
      socket.on('data', (chunk: Buffer) => (text += chunk.toString()))
      socket.on('end', () => resolve(text))
    })
    expect(answer).toMatch(/^HTTP\/1.1 200/)
    const id = /"upload_id":"([^"]+)"/.exec(answer)?.[1]
    expect((await statusOf(server.url, id!)).body.filename).toBe('slow.bin')
    expect(basename(server.dir)).toBe('storage')
  })
})
