import { createServer, type Server } from 'node:http'
import { connect } from 'node:net'
import type { AddressInfo } from 'node:net'
import type { Browser } from 'playwright-core'
import WebSocket from 'ws'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { launchChromium } from './support/browser.js'
import { api, bytes, multipart, rawRequest, restUpload, statusOf } from './support/clients.js'
import { startServer, type TestServer } from './support/server.js'

const EVIL = 'https://evil.example'

/** A slow upload that a cross-site request would like to cancel. */
async function running(server: TestServer): Promise<string> {
  const { body } = await restUpload(server.url, bytes(200_000), { speed: 1000 })
  return body.upload_id
}

/** The status line of a raw WebSocket handshake, as a browser on `origin` would send it. */
function handshake(url: string, headers: Record<string, string>): Promise<string> {
  const { port } = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1')
    let answer = ''
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString()
      if (answer.includes('\r\n')) {
        socket.destroy()
        resolve(answer.slice(0, answer.indexOf('\r\n')))
      }
    })
    socket.on('error', reject)
    const lines = [
      'GET /graphql HTTP/1.1',
      `Host: 127.0.0.1:${port}`,
      'Upgrade: websocket',
      'Connection: Upgrade',
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
      'Sec-WebSocket-Version: 13',
      'Sec-WebSocket-Protocol: graphql-transport-ws',
      ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
    ]
    socket.write(`${lines.join('\r\n')}\r\n\r\n`)
  })
}

describe('requests from a page on another origin', () => {
  let server: TestServer
  beforeAll(async () => {
    server = await startServer()
  })
  afterAll(() => server.stop())

  it('a cross-site form POST to a REST route gets 403 before it runs', async () => {
    const id = await running(server)
    const response = await fetch(`${server.url}/api/upload/${id}/cancel`, {
      method: 'POST',
      headers: { origin: EVIL, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'x=1',
    })
    expect(response.status).toBe(403)
    expect(await response.json()).toEqual({ detail: expect.stringMatching(/origin.*CORS_ORIGINS/) })
    expect((await statusOf(server.url, id)).body.status).toBe('in_progress')
  })

  it('a cross-site multipart POST to /graphql gets 403 with FORBIDDEN, and the mutation never runs', async () => {
    const id = await running(server)
    const operations = JSON.stringify({ query: `mutation { cancelUpload(id: "${id}") { id } }` })
    const { body, contentType } = multipart([
      { name: 'operations', content: operations },
      { name: 'map', content: '{}' },
    ])
    const response = await rawRequest(server.url, '/graphql', {
      headers: { origin: EVIL, 'content-type': contentType },
      body,
    })
    expect(response.status).toBe(403)
    expect(response.body).toMatchObject({ errors: [{ extensions: { code: 'FORBIDDEN' } }] })
    expect((await statusOf(server.url, id)).body.status).toBe('in_progress')
  })

  it('an SSE subscription from another origin gets 403', async () => {
    const response = await fetch(
      `${server.url}/graphql?query=${encodeURIComponent('subscription { uploadProgress { id } }')}`,
      {
        headers: { origin: EVIL, accept: 'text/event-stream' },
      },
    )
    expect(response.status).toBe(403)
  })

  it('a WebSocket handshake from another origin gets 403 and never reaches graphql-ws', async () => {
    expect(await handshake(server.url, { Origin: EVIL })).toBe('HTTP/1.1 403 Forbidden')
    expect(await handshake(server.url, { Origin: 'null' })).toBe('HTTP/1.1 403 Forbidden')
    expect(await handshake(server.url, { Origin: server.url })).toBe('HTTP/1.1 101 Switching Protocols')
    expect(await handshake(server.url, {})).toBe('HTTP/1.1 101 Switching Protocols')
  })

  it('a WebSocket client on another origin cannot cancel an upload', async () => {
    const id = await running(server)
    const socket = new WebSocket(`${server.url.replace('http', 'ws')}/graphql`, 'graphql-transport-ws', {
      origin: EVIL,
    })
    socket.on('error', () => undefined) // the refused handshake is reported here too
    const status = await new Promise<number>((resolve) => {
      socket.on('unexpected-response', (req, res) => {
        resolve(res.statusCode ?? 0)
        req.destroy()
      })
      socket.on('open', () => {
        resolve(101)
        socket.close()
      })
    })
    expect(status).toBe(403)
    expect((await statusOf(server.url, id)).body.status).toBe('in_progress')
  })

  it('scripts (no Origin) and same-origin pages work exactly as before', async () => {
    const id = await running(server)
    expect((await api(server.url, 'GET', '/api/uploads')).status).toBe(200)
    const sameOrigin = await fetch(`${server.url}/api/upload/${id}/pause`, {
      method: 'POST',
      headers: { origin: server.url },
    })
    expect(sameOrigin.status).toBe(200)
    expect((await statusOf(server.url, id)).body.status).toBe('paused')
    const localhost = server.url.replace('127.0.0.1', 'localhost')
    const viaName = await rawRequest(server.url, `/api/upload/${id}/status`, {
      method: 'GET',
      headers: { origin: localhost, host: new URL(localhost).host },
    })
    expect(viaName.status).toBe(200)
  })

  it('a preflight from another origin is refused; its answer carries no permissions', async () => {
    const preflight = await fetch(`${server.url}/graphql`, {
      method: 'OPTIONS',
      headers: { origin: EVIL, 'access-control-request-method': 'POST' },
    })
    expect(preflight.status).toBe(403)
    expect(preflight.headers.get('access-control-allow-origin')).toBeNull()
  })
})

describe('DNS rebinding (a foreign Host on a loopback listener)', () => {
  let server: TestServer
  beforeAll(async () => {
    server = await startServer()
    await restUpload(server.url, bytes(10), { filename: 'secret-plans.txt', speed: 0 })
  })
  afterAll(() => server.stop())

  it('GET /api/uploads with Host: evil.example gets 403 and no file names', async () => {
    const { port } = new URL(server.url)
    const response = await rawRequest(server.url, '/api/uploads', {
      method: 'GET',
      headers: { host: `evil.example:${port}` },
    })
    expect(response.status).toBe(403)
    expect(JSON.stringify(response.body)).not.toMatch(/secret-plans/)
    expect(response.body).toEqual({ detail: expect.stringMatching(/ALLOWED_HOSTS/) })
  })

  it('the same page, same-origin with itself after the rebinding, is refused on GraphQL and WebSocket too', async () => {
    const { port } = new URL(server.url)
    const host = `evil.example:${port}`
    const graphql = await rawRequest(server.url, '/graphql', {
      headers: { host, origin: `http://${host}`, 'content-type': 'application/json' },
      body: Buffer.from(JSON.stringify({ query: '{ uploads { filename } }' })),
    })
    expect(graphql.status).toBe(403)
    expect(await handshake(server.url, { Host: host, Origin: `http://${host}` })).toBe(
      'HTTP/1.1 403 Forbidden',
    )
  })

  it('loopback names and addresses are served; probes answer whatever the Host', async () => {
    const { port } = new URL(server.url)
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `app.localhost:${port}`, `[::1]:${port}`]) {
      const response = await rawRequest(server.url, '/api/files', { method: 'GET', headers: { host } })
      expect(response.status, host).toBe(200)
    }
    const probe = await rawRequest(server.url, '/healthz', {
      method: 'GET',
      headers: { host: 'evil.example' },
    })
    expect(probe.status).toBe(200)
  })
})

describe('ALLOWED_HOSTS and CORS_ORIGINS widen what is accepted', () => {
  let server: TestServer
  beforeAll(async () => {
    server = await startServer({
      ALLOWED_HOSTS: 'uploads.example.com,.corp.example',
      CORS_ORIGINS: 'https://app.example',
    })
  })
  afterAll(() => server.stop())

  it('a listed host, and a subdomain of a listed .domain, are served; others are not', async () => {
    const get = (host: string) => rawRequest(server.url, '/api/files', { method: 'GET', headers: { host } })
    expect((await get('uploads.example.com')).status).toBe(200)
    expect((await get('files.corp.example:8443')).status).toBe(200)
    expect((await get('example.com')).status).toBe(403)
  })

  it('a listed origin may call, with CORS headers; another may not', async () => {
    const allowed = await fetch(`${server.url}/api/files`, { headers: { origin: 'https://app.example' } })
    expect(allowed.status).toBe(200)
    expect(allowed.headers.get('access-control-allow-origin')).toBe('https://app.example')
    const other = await fetch(`${server.url}/api/files`, { headers: { origin: 'https://app.example.evil' } })
    expect(other.status).toBe(403)
  })
})

describe('in a real browser', () => {
  let server: TestServer
  let evil: Server
  let browser: Browser
  beforeAll(async () => {
    server = await startServer()
    browser = await launchChromium()
  }, 60_000)
  afterAll(async () => {
    await browser?.close()
    evil?.close()
    await server?.stop()
  })

  it('a page on another origin cannot cancel an upload by form POST, fetch or WebSocket', async () => {
    const id = await running(server)
    const target = server.url
    const page = `<!doctype html><body><form id="f" method="POST" action="${target}/api/upload/${id}/cancel"></form>
<script>
  window.results = {}
  fetch('${target}/api/upload/${id}/cancel', { method: 'POST', mode: 'no-cors' })
    .then(() => (results.fetch = 'sent'), (e) => (results.fetch = String(e)))
  const ws = new WebSocket('${target.replace('http', 'ws')}/graphql', 'graphql-transport-ws')
  ws.onopen = () => {
    ws.send(JSON.stringify({ type: 'connection_init' }))
    ws.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: 'mutation { cancelUpload(id: "${id}") { id } }' } }))
    results.ws = 'open'
  }
  ws.onerror = () => (results.ws = 'refused')
</script></body>`
    evil = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end(page))
    await new Promise<void>((resolve) => evil.listen(0, '127.0.0.1', resolve))
    const evilUrl = `http://127.0.0.1:${(evil.address() as AddressInfo).port}/`
    const tab = await browser.newPage()
    await tab.goto(evilUrl)
    await tab.waitForFunction(() => {
      const r = (window as unknown as { results: Record<string, string> }).results
      return r.fetch !== undefined && r.ws !== undefined
    })
    expect(await tab.evaluate(() => (window as unknown as { results: unknown }).results)).toEqual({
      fetch: 'sent',
      ws: 'refused',
    })
    // The classic CSRF: a form submitted from the other site's page, navigating to ours.
    await Promise.all([
      tab.waitForNavigation(),
      tab.evaluate(() => (document.getElementById('f') as HTMLFormElement).submit()),
    ])
    expect(await tab.content()).toMatch(/not allowed/)
    expect((await statusOf(server.url, id)).body.status).toBe('in_progress')
    await tab.close()
  })
})
