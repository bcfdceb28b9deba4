import { randomUUID } from 'node:crypto'
import { mkdtemp, readdir, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { api, bytes, gql, restUpload, waitForStatus, wsClient } from './support/clients.js'
import { startServer, type TestServer } from './support/server.js'

let server: TestServer
const completed: string[] = []
let running: string
let canceled: string
beforeAll(async () => {
  server = await startServer()
  for (let i = 0; i < 7; i++) {
    const { body } = await restUpload(server.url, bytes(100 + i), { speed: 0, filename: `done-${i}.bin` })
    completed.push(body.upload_id)
  }
  for (const id of completed) await waitForStatus(server.url, id, 'completed')
  running = (await restUpload(server.url, bytes(100_000), { speed: 1000, filename: 'running.bin' })).body
    .upload_id
  canceled = (await restUpload(server.url, bytes(100_000), { speed: 1000, filename: 'canceled.bin' })).body
    .upload_id
  await api(server.url, 'POST', `/api/upload/${canceled}/cancel`)
})
afterAll(() => server.stop())

interface Listed {
  id: string
  filename: string
  status: string
  cursor: string
}
const PAGE = `query ($first: Int, $after: String, $status: [UploadStatus!]) {
  uploads(first: $first, after: $after, status: $status) { id filename status cursor }
}`

async function page(variables: Record<string, unknown>) {
  const result = await gql<{ uploads: Listed[] }>(server.url, PAGE, variables)
  if (result.errors) throw new Error(JSON.stringify(result.errors))
  return result.data!.uploads
}

describe('uploads: pages, oldest first', () => {
  it('without arguments lists every upload, oldest first', async () => {
    const all = await page({})
    expect(all.map((u) => u.id)).toEqual([...completed, running, canceled])
  })

  it('pages of `first`, each starting after the last cursor, cover the list once, in order', async () => {
    const seen: string[] = []
    let after: string | undefined
    for (let i = 0; i < 10; i++) {
      const uploads = await page({ first: 3, after })
      seen.push(...uploads.map((u) => u.id))
      if (uploads.length < 3) break
      after = uploads.at(-1)!.cursor
    }
    expect(seen).toEqual([...completed, running, canceled])
  })

  it('`status` keeps only those states, and pages within them', async () => {
    const firstTwo = await page({ status: ['COMPLETED'], first: 2 })
    expect(firstTwo.map((u) => u.id)).toEqual(completed.slice(0, 2))
    const rest = await page({ status: ['COMPLETED'], first: 100, after: firstTwo[1]!.cursor })
    expect(rest.map((u) => u.id)).toEqual(completed.slice(2))
    const active = await page({ status: ['IN_PROGRESS', 'PAUSED'] })
    expect(active.map((u) => u.id)).toEqual([running])
  })

  it('uploadCounts counts each state', async () => {
    const { data } = await gql<{ uploadCounts: Record<string, number> }>(
      server.url,
      '{ uploadCounts { total inProgress paused completed canceled failed } }',
    )
    expect(data?.uploadCounts).toEqual({
      total: 9,
      inProgress: 1,
      paused: 0,
      completed: 7,
      canceled: 1,
      failed: 0,
    })
  })

  it.each([
    [{ first: 0 }, /first must be from 1 to 1000/],
    [{ first: 1001 }, /first must be from 1 to 1000/],
    [{ first: 5, after: 'not-a-cursor' }, /after must be the cursor of an upload/],
  ])('%j → BAD_USER_INPUT', async (variables, message) => {
    const result = await gql(server.url, PAGE, variables)
    expect(result.errors?.[0]).toMatchObject({
      message: expect.stringMatching(message),
      extensions: { code: 'BAD_USER_INPUT' },
    })
  })
})

describe('deleting ended uploads', () => {
  it('deleteFile with keepFile forgets the record and leaves the completed file in the folder', async () => {
    const id = completed.shift()!
    const result = await gql(server.url, `mutation { deleteFile(id: "${id}", keepFile: true) { id } }`)
    expect(result.errors).toBeUndefined()
    expect((await api(server.url, 'GET', `/api/upload/${id}/status`)).status).toBe(404)
    expect(await readdir(server.dir)).toContain(`${id}_done-0.bin`)
  })

  it('the live feed says when one leaves the record, so a live list can drop it without asking again', async () => {
    const id = completed.shift()!
    const client = wsClient(server.url)
    let subscribed = () => {}
    const first = new Promise<void>((resolve) => (subscribed = resolve))
    try {
      const heard = (async () => {
        for await (const result of client.iterate<{ uploadProgress: Listed & { removed: boolean } }>({
          query: 'subscription { uploadProgress { id status removed } }',
        })) {
          // The feed opens with the unfinished uploads (here, the running one): from then on it hears all.
          subscribed()
          const event = result.data?.uploadProgress
          if (event?.id === id) return event
        }
        return undefined
      })()
      await first
      await gql(server.url, `mutation { deleteFile(id: "${id}") { id } }`)
      expect(await heard).toEqual({ id, status: 'COMPLETED', removed: true })
      const asked = await gql<{ uploads: { removed: boolean }[] }>(server.url, '{ uploads { removed } }')
      expect(asked.data?.uploads.every((upload) => !upload.removed)).toBe(true)
    } finally {
      await client.dispose()
    }
  })

  it('clearUploads removes every ended one (files too, unless kept), and never a running one', async () => {
    const refused = await gql(server.url, 'mutation { clearUploads(status: [IN_PROGRESS]) }')
    expect(refused.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT')
    const kept = await gql<{ clearUploads: number }>(
      server.url,
      'mutation { clearUploads(status: [CANCELED], keepFiles: true) }',
    )
    expect(kept.data?.clearUploads).toBe(1)
    const cleared = await gql<{ clearUploads: number }>(server.url, 'mutation { clearUploads }')
    expect(cleared.data?.clearUploads).toBe(completed.length)
    expect((await page({})).map((u) => u.id)).toEqual([running])
    const names = await readdir(server.dir)
    for (const id of completed) expect(names.some((name) => name.startsWith(id))).toBe(false)
  })
})

describe('the REST lists at a size that takes more than one page to read', () => {
  it('GET /api/uploads and /api/files still answer every upload, oldest first, in one JSON document', async () => {
    // 1,234 ended records on file (2.5 of the pages the answer is streamed in), none with a file on disk.
    const count = 1234
    const dir = await mkdtemp(join(tmpdir(), 'uploads-many-'))
    const base = Date.parse('2026-01-01T00:00:00.000Z')
    const uploads: Record<string, unknown> = {}
    const ids: string[] = []
    for (let i = 0; i < count; i++) {
      const id = randomUUID()
      const at = new Date(base + i * 1000).toISOString()
      ids.push(id)
      uploads[id] = {
        id,
        filename: `f${i}.bin`,
        storedName: `${id}_f${i}.bin`,
        status: i % 2 === 0 ? 'COMPLETED' : 'CANCELED',
        receivedSize: 10,
        source: 'multipart',
        expiresAt: null,
        receivedAt: at,
        uploadedSize: i % 2 === 0 ? 10 : 4,
        totalSize: 10,
        targetSpeed: 0,
        sha256: 'a'.repeat(64),
        error: null,
        createdAt: at,
        updatedAt: at,
        completedAt: i % 2 === 0 ? at : null,
      }
    }
    await writeFile(join(dir, '.uploads.json'), JSON.stringify({ version: 2, seq: 0, uploads }))
    const many = await startServer({}, dir)
    try {
      const listed = await api<{ uploads: { upload_id: string; status: string }[] }>(
        many.url,
        'GET',
        '/api/uploads',
      )
      expect(listed.status).toBe(200)
      expect(listed.body.uploads.map((upload) => upload.upload_id)).toEqual(ids)
      const files = await api<{ files: { upload_id: string }[] }>(many.url, 'GET', '/api/files')
      expect(files.body.files.map((file) => file.upload_id)).toEqual(ids.filter((_, i) => i % 2 === 0))
    } finally {
      await many.stop()
    }
  })
})
