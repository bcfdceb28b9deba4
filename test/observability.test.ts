import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { routeOf } from '../src/metrics.js'
import { spawnServer, type ChildServer } from './support/child.js'
import { api, bytes, restUpload, waitForStatus } from './support/clients.js'

let dir: string
let server: ChildServer
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'uploads-observability-'))
  server = await spawnServer(dir)
})
afterAll(async () => {
  server.child.kill('SIGKILL')
  await rm(dir, { recursive: true, force: true })
})

const metric = (text: string, line: RegExp) =>
  Number(new RegExp(`^${line.source} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN)

describe('/metrics (Prometheus)', () => {
  it('counts bytes received and stored, uploads by status, transfers, subscriptions and request durations', async () => {
    const before = await (await fetch(`${server.url}/metrics`)).text()
    const { body } = await restUpload(server.url, bytes(50_000), { speed: 0 })
    await waitForStatus(server.url, body.upload_id, 'completed')
    const response = await fetch(`${server.url}/metrics`)
    expect(response.headers.get('content-type')).toMatch(/text\/plain/)
    const after = await response.text()
    expect(
      metric(after, /upload_bytes_received_total/) - (metric(before, /upload_bytes_received_total/) || 0),
    ).toBe(50_000)
    expect(
      metric(after, /upload_bytes_stored_total/) - (metric(before, /upload_bytes_stored_total/) || 0),
    ).toBe(50_000)
    expect(metric(after, /uploads\{status="COMPLETED"\}/)).toBeGreaterThanOrEqual(1)
    expect(after).toMatch(/^upload_active_transfers \d+$/m)
    expect(after).toMatch(/^graphql_subscriptions \d+$/m)
    expect(after).toMatch(
      /^http_request_duration_seconds_count\{method="POST",route="\/api\/upload",status="200"\} \d+$/m,
    )
    expect(after).toMatch(/^process_resident_memory_bytes \d+/m)
  })

  it('labels routes without ids, so the label set stays small', () => {
    expect(routeOf('/api/upload/0b0e0b8c-5b8a-4a57-9c62-5a2f3e0e7b11/pause')).toBe('/api/upload/:id/pause')
    expect(routeOf('/api/files/abc/download')).toBe('/api/files/:id/download')
    expect(routeOf('/api/files/abc')).toBe('/api/files/:id')
    expect(routeOf('/graphql')).toBe('/graphql')
    expect(routeOf('/wp-admin/../../etc')).toBe('other')
  })
})

describe('structured logs', () => {
  it('writes one JSON object per line: start-up, and each step of an upload’s life', async () => {
    const { body } = await restUpload(server.url, bytes(20_000), { speed: 10_000, filename: 'logged.txt' })
    await api(server.url, 'POST', `/api/upload/${body.upload_id}/pause`)
    await api(server.url, 'POST', `/api/upload/${body.upload_id}/resume?speed=0`)
    await waitForStatus(server.url, body.upload_id, 'completed')
    const lines = server
      .output()
      .split('\n')
      .filter(Boolean)
      .map(
        (line) =>
          JSON.parse(line) as { time: string; level: string; event: string; id?: string; filename?: string },
      )
    expect(lines[0]).toMatchObject({ level: 'info', event: 'server.started', url: server.url })
    const mine = lines.filter((line) => line.id === body.upload_id).map((line) => line.event)
    expect(mine).toEqual(['upload.started', 'upload.paused', 'upload.resumed', 'upload.completed'])
    for (const line of lines) expect(Date.parse(line.time)).not.toBeNaN()
  })
})
