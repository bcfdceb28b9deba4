import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bytes, restUpload, wsClient } from './support/clients.js'
import { startServer, type TestServer } from './support/server.js'

/**
 * The schema promises about ten progress events a second while bytes move. Measured here at three speeds
 * over both transports, as arrival times at the client, in the steady middle of each transfer.
 */
let server: TestServer
beforeAll(async () => {
  server = await startServer()
})
afterAll(() => server.stop())

const QUERY = 'subscription ($id: ID) { uploadProgress(id: $id) { status uploadedSize } }'

/** Gaps between events whose byte count moved, from the second event to the last before completion. */
function gapsOf(times: number[]): number[] {
  return times.slice(1).map((t, i) => t - times[i]!)
}
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!

async function overWs(id: string): Promise<number[]> {
  const client = wsClient(server.url)
  const times: number[] = []
  try {
    for await (const result of client.iterate<{ uploadProgress: { status: string } }>({
      query: QUERY,
      variables: { id },
    })) {
      if (result.data?.uploadProgress.status !== 'IN_PROGRESS') continue
      times.push(performance.now())
    }
  } finally {
    await client.dispose()
  }
  return times
}

async function overSse(id: string): Promise<number[]> {
  const response = await fetch(`${server.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify({ query: QUERY, variables: { id } }),
  })
  const times: number[] = []
  const decoder = new TextDecoder()
  const reader = response.body!.getReader()
  for (;;) {
    const { done, value } = await reader.read()
    if (done) return times
    const text = decoder.decode(value)
    for (const match of text.matchAll(/"status":"IN_PROGRESS"/g)) if (match) times.push(performance.now())
  }
}

describe('progress events arrive about ten times a second while bytes move', () => {
  it.each([
    ['20 KiB/s', 20 * 1024],
    ['100 KiB/s', 100 * 1024],
    ['1 MiB/s', 1024 * 1024],
  ])('at %s, over graphql-ws and SSE', async (_, speed) => {
    // Three seconds' worth: the first event is the snapshot, the last ones the flush before completion.
    const { body } = await restUpload(server.url, bytes(speed * 3), { speed })
    const [ws, sse] = await Promise.all([overWs(body.upload_id), overSse(body.upload_id)])
    for (const times of [ws, sse]) {
      const gaps = gapsOf(times.slice(1, -1))
      const perSecond = (times.length - 1) / ((times.at(-1)! - times[0]!) / 1000)
      // The median gap is the figure the machine's load barely moves; the mean rate may lose a tick or two
      // when timers run late on a busy machine (a throttled flow then makes up in fewer, larger writes), but a
      // rate under five or over thirteen a second is a defect.
      expect(perSecond).toBeGreaterThan(5)
      expect(perSecond).toBeLessThan(13)
      expect(median(gaps)).toBeGreaterThan(85)
      expect(median(gaps)).toBeLessThan(120)
    }
  })
})
