import { readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { api, bytes, gql, restUpload, seededRandom } from './support/clients.js'
import { startServer, type TestServer } from './support/server.js'
import { readState } from './support/state.js'

let server: TestServer
beforeAll(async () => {
  server = await startServer()
})
afterAll(() => server.stop())

interface Listed {
  upload_id: string
  status: string
  uploaded_size: number
  total_size: number
}

const ACTIONS = ['pause', 'resume', 'resume?speed=0', 'cancel', 'delete', 'status'] as const
const MUTATION = {
  pause: 'pauseUpload(id: $id) { id }',
  resume: 'resumeUpload(id: $id) { id }',
  'resume?speed=0': 'resumeUpload(id: $id, speed: 0) { id }',
  cancel: 'cancelUpload(id: $id) { id }',
  delete: 'deleteFile(id: $id) { id }',
} as const

// Seeded: the same storm of calls every run (their interleaving still varies with timing).
const random = seededRandom()

/** One random call, over REST or GraphQL; returns the HTTP status or the GraphQL error code. */
async function randomCall(ids: string[]): Promise<string> {
  const id = ids[Math.floor(random() * ids.length)]!
  const action = ACTIONS[Math.floor(random() * ACTIONS.length)]!
  if (action === 'status') return String((await api(server.url, 'GET', `/api/upload/${id}/status`)).status)
  if (random() < 0.5) {
    const [verb, query = ''] = action.split('?')
    const path =
      verb === 'delete' ? `/api/files/${id}` : `/api/upload/${id}/${verb}${query ? `?${query}` : ''}`
    return String((await api(server.url, verb === 'delete' ? 'DELETE' : 'POST', path)).status)
  }
  const response = await gql(server.url, `mutation ($id: ID!) { ${MUTATION[action]} }`, { id })
  return response.errors?.[0]?.extensions?.code ?? 'OK'
}

describe('a storm of concurrent calls on the same uploads', () => {
  it('answers every call with a client status, and leaves the API, the state file and the disk agreeing', async () => {
    const ids: string[] = []
    for (let i = 0; i < 8; i++)
      ids.push((await restUpload(server.url, bytes(40_000), { speed: 20_000 })).body.upload_id)

    const clients = Array.from({ length: 5 }, async () => {
      const answers: string[] = []
      for (let i = 0; i < 80; i++) answers.push(await randomCall(ids))
      return answers
    })
    const answers = (await Promise.all(clients)).flat()
    expect(answers).toHaveLength(400)
    const expected = ['200', '400', '404', 'OK', 'INVALID_STATE', 'NOT_FOUND']
    expect([...new Set(answers)].filter((answer) => !expected.includes(answer))).toEqual([])

    // Hold everything still, then compare the three views.
    for (const id of ids) await api(server.url, 'POST', `/api/upload/${id}/pause`)
    const listed = (await api<{ uploads: Listed[] }>(server.url, 'GET', '/api/uploads')).body.uploads.filter(
      (u) => ids.includes(u.upload_id),
    )
    const state = await readState(server.dir)
    const names = await readdir(server.dir)
    const staging = await readdir(join(server.dir, '.staging'))
    const transfers = await readdir(join(server.dir, '.transfers'))
    expect(listed.filter((u) => u.status === 'failed')).toEqual([])

    for (const id of ids) {
      const api = listed.find((u) => u.upload_id === id)
      const saved = state.uploads[id]
      const files = names.filter((name) => name.startsWith(id)).sort()
      if (!api) {
        expect(saved).toBeUndefined()
        expect(files).toEqual([])
        expect(staging).not.toContain(id)
        expect(transfers).not.toContain(id)
        continue
      }
      expect(saved?.status.toLowerCase()).toBe(api.status)
      expect(saved?.uploadedSize).toBe(api.uploaded_size)
      if (api.status === 'completed') {
        expect(files).toEqual([saved!.storedName])
        expect((await stat(join(server.dir, saved!.storedName))).size).toBe(api.total_size)
        expect(staging).not.toContain(id)
        expect(transfers).not.toContain(id)
      } else if (api.status === 'paused') {
        expect(files).toEqual([])
        expect(transfers).toContain(id)
        expect((await stat(join(server.dir, '.transfers', id))).size).toBe(api.uploaded_size)
        expect(staging).toContain(id)
      } else {
        expect(api.status).toBe('canceled')
        expect(files).toEqual([])
        expect(staging).not.toContain(id)
        expect(transfers).not.toContain(id)
      }
    }
  })
})
