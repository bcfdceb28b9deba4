import { readFile, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { api, bytes, restUpload, statusOf, waitFor, waitForStatus } from './support/clients.js'
import { listStorage, startServer, transferFile, type TestServer } from './support/server.js'
import { readState } from './support/state.js'

let server: TestServer | undefined
afterEach(async () => {
  await server?.stop()
  server = undefined
})

describe('state in the lowdb JSON file', () => {
  it('is written to disk before a change of state is acknowledged', async () => {
    server = await startServer()
    const { body } = await restUpload(server.url, bytes(10_000), { speed: 1000, filename: 'x.txt' })
    expect((await readState(server.dir)).uploads[body.upload_id]).toMatchObject({
      status: 'IN_PROGRESS',
      storedName: `${body.upload_id}_x.txt`,
      sha256: expect.stringMatching(/^[0-9a-f]{64}$/),
    })
    await api(server.url, 'POST', `/api/upload/${body.upload_id}/pause`)
    expect((await readState(server.dir)).uploads[body.upload_id]?.status).toBe('PAUSED')
  })

  it('checkpoints a running upload’s progress about once a second', async () => {
    server = await startServer()
    const { body } = await restUpload(server.url, bytes(100_000), { speed: 20_000 })
    const dir = server.dir
    // Watch the count on disk change: three checkpoints, two intervals.
    const saved: number[] = []
    await waitFor(async () => {
      const now = (await readState(dir)).uploads[body.upload_id]?.uploadedSize ?? 0
      if (now !== (saved.at(-1) ?? 0)) saved.push(now)
      return saved.length >= 3
    }, 5000)
    // The transfer's own pace is the clock: what moved between two checkpoints says how far apart they were
    // taken, whatever a busy disk did to when each reached it. About 20 kB, neither a 1 kB chunk nor several
    // seconds' worth.
    for (let i = 1; i < saved.length; i++) {
      expect(saved[i]! - saved[i - 1]!).toBeGreaterThan(0.6 * 20_000)
      expect(saved[i]! - saved[i - 1]!).toBeLessThan(1.6 * 20_000)
    }
    await api(server.url, 'POST', `/api/upload/${body.upload_id}/cancel`)
  })
})

describe('a restart of the server', () => {
  it('keeps every upload and every file, and carries on what was running from its bytes on disk', async () => {
    server = await startServer()
    const url = server.url
    const completed = await restUpload(url, bytes(1000), { speed: 0, filename: 'done.txt' })
    await waitForStatus(url, completed.body.upload_id, 'completed')
    const canceled = await restUpload(url, bytes(50_000), { speed: 1000 })
    await api(url, 'POST', `/api/upload/${canceled.body.upload_id}/cancel`)
    const pausedContent = bytes(60_000)
    const paused = await restUpload(url, pausedContent, { speed: 20_000 })
    const runningContent = bytes(80_000)
    const running = await restUpload(url, runningContent, { speed: 40_000 })
    await waitFor(async () => (await statusOf(url, running.body.upload_id)).body.uploaded_size > 8000)
    await api(url, 'POST', `/api/upload/${paused.body.upload_id}/pause`)
    const before = (
      await api<{ uploads: { upload_id: string; status: string }[] }>(url, 'GET', '/api/uploads')
    ).body
    const reached = (await statusOf(url, running.body.upload_id)).body.uploaded_size

    server = await server.restart()
    const after = (
      await api<{ uploads: { upload_id: string; status: string }[] }>(server.url, 'GET', '/api/uploads')
    ).body
    expect(after.uploads.map((u) => [u.upload_id, u.status])).toEqual(
      before.uploads.map((u) => [u.upload_id, u.status]),
    )
    const files = await api<{ files: { upload_id: string }[] }>(server.url, 'GET', '/api/files')
    expect(files.body.files.map((f) => f.upload_id)).toEqual([completed.body.upload_id])

    // The running one did not start over: it has at least the bytes it had reached (starting over at
    // 40 kB/s would take 200 ms to get back there), and it completes byte for byte.
    const runningNow = await statusOf(server.url, running.body.upload_id)
    expect(runningNow.body.status).toBe('in_progress')
    expect(runningNow.body.uploaded_size).toBeGreaterThanOrEqual(reached)
    await waitForStatus(server.url, running.body.upload_id, 'completed')
    const runningStored = await readFile(join(server.dir, `${running.body.upload_id}_data.bin`))
    expect(runningStored.equals(runningContent)).toBe(true)

    // The paused one stays paused, resumes on request, and completes byte for byte.
    expect((await statusOf(server.url, paused.body.upload_id)).body.status).toBe('paused')
    await api(server.url, 'POST', `/api/upload/${paused.body.upload_id}/resume?speed=0`)
    await waitForStatus(server.url, paused.body.upload_id, 'completed')
    const pausedStored = await readFile(join(server.dir, `${paused.body.upload_id}_data.bin`))
    expect(pausedStored.equals(pausedContent)).toBe(true)
  })

  it('removes staging and transfer files that no record owns, and nothing in the folder itself', async () => {
    server = await startServer()
    const dir = server.dir
    await server.app.close()
    const orphanTransfer = transferFile(dir, '0b0e0b8c-5b8a-4a57-9c62-5a2f3e0e7b11')
    // The stored file of an upload deleted with keepFile looks like this, record gone: not ours to remove.
    const keptFile = join(dir, '1c1f1c9d-6c9b-4b68-8d73-6b3f4f1f8c22_backup.part')
    const userFile = join(dir, 'notes.part')
    await writeFile(orphanTransfer, 'x')
    await writeFile(keptFile, 'a file someone kept')
    await writeFile(userFile, 'not ours to touch')
    await writeFile(join(dir, '.staging', 'abc.incoming'), 'half a body')
    server = await startServer({}, dir)
    await expect(stat(orphanTransfer)).rejects.toThrow(/ENOENT/)
    expect(await readFile(keptFile, 'utf8')).toBe('a file someone kept')
    expect(await readFile(userFile, 'utf8')).toBe('not ours to touch')
    expect((await listStorage(dir)).staging).toEqual([])
  })

  it('marks an upload whose received bytes are gone as failed, with a reason', async () => {
    server = await startServer()
    const { body } = await restUpload(server.url, bytes(50_000), { speed: 1000 })
    await api(server.url, 'POST', `/api/upload/${body.upload_id}/pause`)
    const dir = server.dir
    await server.app.close()
    await rm(join(dir, '.staging', body.upload_id))
    server = await startServer({}, dir)
    await waitForStatus(server.url, body.upload_id, 'failed')
    expect((await readState(dir)).uploads[body.upload_id]?.error).toMatch(/staging/)
  })
})
