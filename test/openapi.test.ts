import { Ajv2020 } from 'ajv/dist/2020.js'
import { existsSync } from 'node:fs'
import { chromium } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openApiPath, schemas, tusOperations } from '../src/rest/openapi.js'
import { routes } from '../src/rest/routes.js'
import { api, bytes, restUpload, waitForStatus } from './support/clients.js'
import { startServer, type TestServer } from './support/server.js'

let server: TestServer
beforeAll(async () => {
  server = await startServer()
})
afterAll(() => server.stop())

const ajv = new Ajv2020({ strict: false })
function expectMatches(schema: string, body: unknown) {
  const validate = ajv.compile(schemas[schema]!)
  expect(validate(body), `${schema}: ${JSON.stringify(validate.errors)} for ${JSON.stringify(body)}`).toBe(
    true,
  )
}

interface Spec {
  openapi: string
  paths: Record<
    string,
    Record<string, { operationId: string; tags?: string[]; responses: Record<string, unknown> }>
  >
}

describe('/api/openapi.json', () => {
  it('documents exactly the routes the server has, as OpenAPI 3.1', async () => {
    const spec = (await (await fetch(`${server.url}/api/openapi.json`)).json()) as Spec
    expect(spec.openapi).toBe('3.1.0')
    const documented = Object.entries(spec.paths).flatMap(([path, ops]) =>
      Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`),
    )
    const tus = Object.entries(tusOperations).flatMap(([path, ops]) =>
      Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`),
    )
    expect(tus.sort()).toEqual([
      'DELETE /files/{id}',
      'GET /files/{id}',
      'HEAD /files/{id}',
      'OPTIONS /files/',
      'PATCH /files/{id}',
      'POST /files/',
    ])
    expect(documented.sort()).toEqual([...routes.map((r) => `${r.method} ${openApiPath(r)}`), ...tus].sort())
  })

  it("documents the admin's ?owner= filter on the list routes, and on no other", async () => {
    const spec = (await (await fetch(`${server.url}/api/openapi.json`)).json()) as {
      paths: Record<string, Record<string, { parameters?: { name: string; in: string }[] }>>
    }
    const withOwner = Object.entries(spec.paths).flatMap(([path, ops]) =>
      Object.entries(ops)
        .filter(([, op]) => op.parameters?.some((p) => p.name === 'owner' && p.in === 'query'))
        .map(([method]) => `${method.toUpperCase()} ${path}`),
    )
    expect(withOwner.sort()).toEqual(['GET /api/files', 'GET /api/uploads'])
  })

  it('groups every operation under one of uploads, files, limits and resumable (none under "default")', async () => {
    const spec = (await (await fetch(`${server.url}/api/openapi.json`)).json()) as Spec & {
      tags: { name: string }[]
    }
    expect(spec.tags.map((tag) => tag.name)).toEqual(['uploads', 'files', 'limits', 'resumable'])
    const grouped = Object.entries(spec.paths).flatMap(([path, ops]) =>
      Object.entries(ops).map(([method, op]) => `${op.tags?.join(',')} ${method.toUpperCase()} ${path}`),
    )
    expect(grouped.sort()).toEqual([
      'files DELETE /api/files/{upload_id}',
      'files GET /api/files',
      'files GET /api/files/{upload_id}/download',
      'limits GET /api/limits',
      'limits POST /api/limits/total-speed',
      'resumable DELETE /files/{id}',
      'resumable GET /files/{id}',
      'resumable HEAD /files/{id}',
      'resumable OPTIONS /files/',
      'resumable PATCH /files/{id}',
      'resumable POST /files/',
      'uploads GET /api/upload/{upload_id}/status',
      'uploads GET /api/uploads',
      'uploads POST /api/upload',
      'uploads POST /api/upload/{upload_id}/cancel',
      'uploads POST /api/upload/{upload_id}/pause',
      'uploads POST /api/upload/{upload_id}/resume',
      'uploads POST /api/upload/{upload_id}/speed',
    ])
  })

  it('every answer matches its documented schema, errors included', async () => {
    const { status, body: started } = await restUpload(server.url, bytes(20_000), { speed: 1000 })
    expect(status).toBe(200)
    expectMatches('Started', started)
    const id = started.upload_id
    expectMatches('Status', (await api(server.url, 'GET', `/api/upload/${id}/status`)).body)
    expectMatches('Uploads', (await api(server.url, 'GET', '/api/uploads')).body)
    expectMatches('Paused', (await api(server.url, 'POST', `/api/upload/${id}/pause`)).body)
    expectMatches('Resumed', (await api(server.url, 'POST', `/api/upload/${id}/resume?speed=0`)).body)
    await waitForStatus(server.url, id, 'completed')
    expectMatches('Files', (await api(server.url, 'GET', '/api/files')).body)
    const download = await fetch(`${server.url}/api/files/${id}/download`)
    expect(download.status).toBe(200)
    expect(download.headers.get('content-type')).toBe('application/octet-stream')
    expectMatches('Deleted', (await api(server.url, 'DELETE', `/api/files/${id}`)).body)

    const other = await restUpload(server.url, bytes(20_000), { speed: 1000 })
    expectMatches(
      'SpeedSet',
      (await api(server.url, 'POST', `/api/upload/${other.body.upload_id}/speed?speed=2000`)).body,
    )
    expectMatches(
      'Canceled',
      (await api(server.url, 'POST', `/api/upload/${other.body.upload_id}/cancel`)).body,
    )
    for (const [method, path] of [
      ['GET', '/api/upload/missing/status'],
      ['POST', `/api/upload/${other.body.upload_id}/pause`],
      ['POST', `/api/upload/${other.body.upload_id}/resume?speed=-1`],
    ] as const) {
      const response = await api(server.url, method, path)
      expect([400, 404, 422]).toContain(response.status)
      expectMatches('Error', response.body)
    }
  })
})

describe.skipIf(!existsSync('/usr/bin/chromium'))('/api/docs', () => {
  it('renders every operation in a browser, from this server alone', async () => {
    const browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-gpu'],
    })
    try {
      const page = await browser.newPage()
      const offsite: string[] = []
      page.on('request', (request) => {
        if (!request.url().startsWith(server.url)) offsite.push(request.url())
      })
      await page.goto(`${server.url}/api/docs`)
      for (const route of routes) await page.getByText(route.doc.summary, { exact: true }).first().waitFor()
      expect(offsite).toEqual([])
    } finally {
      await browser.close()
    }
  }, 60_000)
})
