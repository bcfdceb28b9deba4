import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ProgressFeed } from '../src/core/transfer/progress.js'
import type { UploadView } from '../src/model/record.js'
import { api, bytes, collectWs, restUpload, waitForStatus, within, wsClient } from './support/clients.js'
import { startServer, type TestServer } from './support/server.js'

let server: TestServer
beforeAll(async () => {
  server = await startServer()
})
afterAll(() => server.stop())

interface Progress {
  uploadProgress: {
    id: string
    status: string
    uploadedSize: number
    totalSize: number
    currentSpeed: number
  }
}
const FOLLOW = `subscription ($id: ID) { uploadProgress(id: $id) { id status uploadedSize totalSize currentSpeed } }`

describe('uploadProgress over graphql-ws (WebSocket on /graphql)', () => {
  it('sends the current state first, progress about ten times a second, and completes with the upload', async () => {
    const { body } = await restUpload(server.url, bytes(100_000), { speed: 100_000 })
    const client = wsClient(server.url)
    try {
      const events = (await collectWs<Progress>(client, FOLLOW, { id: body.upload_id })).map(
        (e) => e.uploadProgress,
      )
      expect(events[0]?.status).toBe('IN_PROGRESS')
      expect(events.at(-1)).toMatchObject({ status: 'COMPLETED', uploadedSize: 100_000, currentSpeed: 0 })
      const sizes = events.map((e) => e.uploadedSize)
      expect(sizes).toEqual([...sizes].sort((a, b) => a - b))
      // About 1 s of transfer in 5000-byte chunks (20 a second): throttled to ~10 events, not one per chunk.
      expect(events.length).toBeGreaterThanOrEqual(5)
      expect(events.length).toBeLessThanOrEqual(15)
      expect(events.some((e) => e.status === 'IN_PROGRESS' && e.currentSpeed > 0)).toBe(true)
    } finally {
      await client.dispose()
    }
  })

  it('reports pause and cancel as they happen and ends on the final state', async () => {
    const { body } = await restUpload(server.url, bytes(50_000), { speed: 5000 })
    const client = wsClient(server.url)
    const events = client.iterate<Progress>({ query: FOLLOW, variables: { id: body.upload_id } })
    // Each status as it comes, until the one wanted: every step below follows the event before it.
    const statuses: string[] = []
    const until = (status: string) =>
      within(
        (async () => {
          for (;;) {
            const { value, done } = await events.next()
            if (done) throw new Error(`the subscription ended before ${status}: ${statuses.join(', ')}`)
            statuses.push(value.data!.uploadProgress.status)
            if (statuses.at(-1) === status) return
          }
        })(),
        5000,
        `${status} after ${statuses.join(', ')}`,
      )
    try {
      await until('IN_PROGRESS')
      await api(server.url, 'POST', `/api/upload/${body.upload_id}/pause`)
      await until('PAUSED')
      await api(server.url, 'POST', `/api/upload/${body.upload_id}/cancel`)
      await until('CANCELED')
      // The final state ends the subscription.
      expect(await events.next()).toEqual({ done: true, value: undefined })
      expect(statuses.filter((status) => status !== 'IN_PROGRESS')).toEqual(['PAUSED', 'CANCELED'])
    } finally {
      await events.return?.()
      await client.dispose()
    }
  })

  it('on an upload that has already ended: one event with its final state, then completes', async () => {
    const { body } = await restUpload(server.url, bytes(1000), { speed: 0 })
    await waitForStatus(server.url, body.upload_id, 'completed')
    const client = wsClient(server.url)
    try {
      const events = await collectWs<Progress>(client, FOLLOW, { id: body.upload_id })
      expect(events.map((e) => e.uploadProgress.status)).toEqual(['COMPLETED'])
    } finally {
      await client.dispose()
    }
  })

  it('an unknown id is an error with NOT_FOUND', async () => {
    const client = wsClient(server.url)
    try {
      await expect(collectWs(client, FOLLOW, { id: 'no-such-upload' })).rejects.toThrow(/NOT_FOUND/)
    } finally {
      await client.dispose()
    }
  })

  it('without an id it follows every upload, starting with the running and paused ones', async () => {
    const running = (await restUpload(server.url, bytes(100_000), { speed: 1000 })).body.upload_id
    const paused = (await restUpload(server.url, bytes(100_000), { speed: 1000 })).body.upload_id
    await api(server.url, 'POST', `/api/upload/${paused}/pause`)
    const client = wsClient(server.url)
    const seen = new Map<string, string[]>()
    const events = client.iterate<Progress>({ query: FOLLOW })
    const until = (done: () => boolean, what: string) =>
      within(
        (async () => {
          while (!done()) {
            const { value } = await events.next()
            const { id, status } = value!.data!.uploadProgress
            seen.set(id, [...(seen.get(id) ?? []), status])
          }
        })(),
        5000,
        what,
      )
    try {
      // The snapshot first: it is what says the subscription is live, so nothing after it can be missed.
      await until(() => seen.has(running) && seen.has(paused), 'the running and the paused upload')
      expect(seen.get(running)?.[0]).toBe('IN_PROGRESS')
      expect(seen.get(paused)?.[0]).toBe('PAUSED')
      const first = await restUpload(server.url, bytes(3000), { speed: 0 })
      const second = await restUpload(server.url, bytes(3000), { speed: 0 })
      const ids = [first.body.upload_id, second.body.upload_id]
      await until(() => ids.every((i) => seen.get(i)?.includes('COMPLETED')), 'both new uploads, completed')
      for (const id of ids) expect(seen.get(id)?.at(-1)).toBe('COMPLETED')
    } finally {
      await events.return?.()
      await client.dispose()
      for (const id of [running, paused]) await api(server.url, 'POST', `/api/upload/${id}/cancel`)
    }
  })
})

describe('uploadProgress over SSE', () => {
  it('streams events with `accept: text/event-stream` until the upload completes', async () => {
    const { body } = await restUpload(server.url, bytes(30_000), { speed: 60_000 })
    const response = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ query: FOLLOW, variables: { id: body.upload_id } }),
    })
    expect(response.headers.get('content-type')).toMatch(/text\/event-stream/)
    const text = await response.text() // the stream ends when the subscription completes
    const events = [...text.matchAll(/^event: next\ndata: (.*)$/gm)].map(
      (m) => (JSON.parse(m[1]!) as { data: Progress }).data.uploadProgress,
    )
    expect(events[0]?.status).toBe('IN_PROGRESS')
    expect(events.at(-1)).toMatchObject({ status: 'COMPLETED', uploadedSize: 30_000 })
    expect(text).toMatch(/^event: complete$/m)
  })
})

describe('a subscriber that does not read', () => {
  const view = (id: string, uploadedSize: number): UploadView => ({
    id,
    filename: 'f',
    storedName: `${id}_f`,
    status: 'IN_PROGRESS',
    receivedSize: 1_000_000,
    source: 'multipart',
    expiresAt: null,
    receivedAt: null,
    uploadedSize,
    totalSize: 1e9,
    targetSpeed: 0,
    currentSpeed: 0,
    sha256: '',
    error: null,
    createdAt: '',
    updatedAt: '',
    completedAt: null,
  })

  it('gets the latest state of each upload when it reads again, not a backlog (and nothing overflows)', async () => {
    const feed = new ProgressFeed()
    const events = feed.follow(undefined, async () => [])
    const firstRead = events.next() // attaches the listener, as a transport's first read does
    feed.publish(view('a', 0))
    await firstRead
    for (let i = 1; i <= 5000; i++) {
      feed.publish(view('a', i))
      feed.publish(view('b', i))
    }
    const a = await events.next()
    const b = await events.next()
    expect([a.value, b.value].map((v: UploadView) => [v.id, v.uploadedSize])).toEqual([
      ['a', 5000],
      ['b', 5000],
    ])
    await events.return?.()
    expect(feed.subscriberCount).toBe(0)
  })

  it('a reader that leaves while nothing happens (a paused upload) lets go at once', async () => {
    const feed = new ProgressFeed()
    const events = feed.follow('quiet', async () => [view('quiet', 1)])
    await events.next() // its snapshot; now it waits for a state that may never come
    const waiting = events.next()
    expect(feed.subscriberCount).toBe(1)
    await events.return?.()
    expect(feed.subscriberCount).toBe(0)
    expect(await waiting).toEqual({ done: true, value: undefined })
  })
})
