import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { mkdir } from 'node:fs/promises'
import { bearerToken, downloadSignatureValid, signedDownloadPath, tokenMatches } from './access.js'
import { ConfigError, type Config } from './config.js'
import { applyCors, listensOnLoopback, refusal, type OriginPolicy } from './origin.js'
import { buildDashboard } from './dashboard.js'
import { buildApiDocs } from './rest/docs.js'
import { observe, observeRequest, registry } from './metrics.js'
import type { Context } from './graphql/context.js'
import { createGraphQL } from './graphql/yoga.js'
import { schema } from './graphql/schema.js'
import { createGraphQLWs } from './graphql/ws.js'
import { createRestHandler, sendJson } from './rest/handler.js'
import type { IngestLimits } from './uploads/ingest.js'
import { UploadService } from './uploads/service.js'
import { Store } from './uploads/store.js'

/** How long a shutdown waits for requests under way; the whole shutdown must fit in 5 s. */
const IN_FLIGHT_GRACE_MS = 3000

export interface App {
  /** e.g. http://127.0.0.1:8000 */
  url: string
  port: number
  service: UploadService
  /** Stops taking work, checkpoints every transfer and closes every socket. Running uploads stay IN_PROGRESS. */
  close(): Promise<void>
}

/** GraphiQL's page holds no data; it is served without a token, and asks for one in its headers pane. */
const isGraphiQLPage = (req: IncomingMessage) =>
  req.method === 'GET' && /text\/html/.test(req.headers.accept ?? '')

/** A GET or HEAD of a download link that carries a valid signature instead of a bearer header. */
function isSignedDownload(req: IncomingMessage, url: URL, token: string): boolean {
  const id = /^\/api\/files\/([^/]+)\/download$/.exec(url.pathname)?.[1]
  if (id === undefined || (req.method !== 'GET' && req.method !== 'HEAD')) return false
  try {
    return downloadSignatureValid(decodeURIComponent(id), url.searchParams, token)
  } catch {
    return false // a malformed escape in the id
  }
}

function forbidden(res: ServerResponse, graphql: boolean, message: string): void {
  if (!graphql) return sendJson(res, 403, { detail: message })
  sendJson(res, 403, { errors: [{ message, extensions: { code: 'FORBIDDEN' } }] })
}

/** Probes for orchestrators reveal nothing and change nothing: no origin, host or token check. */
const isProbe = (pathname: string) => pathname === '/healthz' || pathname === '/readyz'

function unauthorized(res: ServerResponse, rest: boolean): void {
  res.setHeader('www-authenticate', 'Bearer')
  const message = 'Missing or wrong access token: send Authorization: Bearer <API_TOKEN>'
  if (rest) return sendJson(res, 401, { detail: message })
  sendJson(res, 401, { errors: [{ message, extensions: { code: 'UNAUTHENTICATED' } }] })
}

/** One Node http server: /graphql (yoga over HTTP and SSE, graphql-ws on upgrade) and /api (the REST shim). */
export async function startApp(config: Config): Promise<App> {
  await mkdir(config.uploadDir, { recursive: true }).catch((error: Error) => {
    throw new ConfigError(`UPLOAD_DIR ${config.uploadDir} is not a usable folder: ${error.message}`)
  })
  const store = await Store.open(config.stateFile)
  const service = await UploadService.open({
    uploadDir: config.uploadDir,
    store,
    defaultSpeed: config.defaultSpeed,
  })
  const limits: IngestLimits = {
    stagingDir: service.stagingDir,
    maxFileSize: config.maxUploadSize,
  }
  const context: Context = {
    service,
    downloadPath: (id) =>
      config.apiToken === undefined
        ? `/api/files/${encodeURIComponent(id)}/download`
        : signedDownloadPath(id, config.apiToken),
  }
  const yoga = createGraphQL(context, limits)
  // Static pages and their files, held in memory: the dashboard, the REST docs and their OpenAPI description.
  const assets = new Map([...(await buildDashboard()), ...(await buildApiDocs())])
  const rest = createRestHandler(schema, context, limits, config.uploadDir)

  const policy: OriginPolicy = {
    corsOrigins: config.corsOrigins,
    allowedHosts: config.allowedHosts,
    loopback: listensOnLoopback(config.host),
  }
  const inFlight = new Set<ServerResponse>()
  const server = createServer(
    // Enforce headersTimeout every second (Node checks every 30 s by default, which lets trickling headers linger).
    { connectionsCheckingInterval: 1000, headersTimeout: config.headersTimeoutMs, requestTimeout: 0 },
    (req: IncomingMessage, res: ServerResponse) => {
      const started = performance.now()
      const url = new URL(req.url ?? '/', 'http://localhost')
      const { pathname } = url
      inFlight.add(res)
      // One listener per response does both jobs: this runs on every request.
      res.once('close', () => {
        inFlight.delete(res)
        observeRequest(req.method ?? 'GET', pathname, res.statusCode, started)
      })
      const refused = isProbe(pathname) ? undefined : refusal(req, policy)
      if (refused !== undefined) {
        if (!req.complete) res.setHeader('connection', 'close')
        return forbidden(res, pathname === '/graphql', refused)
      }
      if (applyCors(req, res, config.corsOrigins)) return
      if (pathname === '/healthz') return sendJson(res, 200, { status: 'ok' })
      if (pathname === '/readyz') {
        return void service
          .notReady()
          .then((reason) =>
            sendJson(
              res,
              reason ? 503 : 200,
              reason ? { status: 'unavailable', detail: reason } : { status: 'ready' },
            ),
          )
      }
      // Pages and their files hold no data: served without a token (the pages ask for one where needed).
      const asset = assets.get(pathname)
      if (asset && (req.method === 'GET' || req.method === 'HEAD')) {
        res.writeHead(200, {
          'content-type': asset.type,
          'content-length': Buffer.byteLength(asset.body),
          // Everything the page needs comes from here: no inline script, no third party.
          'content-security-policy':
            asset.csp ?? "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:",
          'x-content-type-options': 'nosniff',
        })
        return void res.end(req.method === 'HEAD' ? undefined : asset.body)
      }
      const isApi = pathname === '/api' || pathname.startsWith('/api/')
      if (isApi || pathname === '/metrics' || (pathname === '/graphql' && !isGraphiQLPage(req))) {
        const token = config.apiToken
        if (token !== undefined && !tokenMatches(bearerToken(req.headers.authorization), token)) {
          if (!isSignedDownload(req, url, token)) return unauthorized(res, isApi)
        }
      }
      if (pathname === '/metrics') {
        return void registry.metrics().then((text) => {
          res.writeHead(200, { 'content-type': registry.contentType }).end(text)
        })
      }
      if (isApi) return void rest(req, res, url)
      if (pathname === '/graphql') return void yoga(req, res)

      sendJson(res, 404, { detail: 'Not Found' })
    },
  )
  // A large file on a slow link can take hours: no limit on a whole request (requestTimeout 0), only on a
  // connection that sends nothing (SSE and WebSocket ping every 12 s, so they never look idle).
  server.timeout = config.bodyIdleTimeoutMs
  const ws = createGraphQLWs(yoga, config.apiToken)
  // WebSocket handshakes get the same origin and host checks as every request (browsers send no preflight
  // for them, and CORS does not apply): a refused one gets a plain 403 and never reaches graphql-ws.
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const pathname = (req.url ?? '/').split('?')[0]
    const refused = pathname === '/graphql' ? refusal(req, policy) : 'Not Found'
    if (refused === undefined) return ws.handleUpgrade(req, socket, head)
    const status = refused === 'Not Found' ? '404 Not Found' : '403 Forbidden'
    const body = JSON.stringify({ detail: refused })
    socket.end(
      `HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    )
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(config.port, config.host, () => resolve())
  })
  observe(service.liveState)
  const { port } = server.address() as AddressInfo
  const host = config.host.includes(':') ? `[${config.host}]` : config.host

  let closing: Promise<void> | undefined
  return {
    url: `http://${host}:${port}`,
    port,
    service,
    close: () =>
      (closing ??= (async () => {
        // New connections are refused from here on; idle keep-alive ones are closed.
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()))
        server.closeIdleConnections()
        // Subscriptions never end by themselves: end them (SSE streams finish, sockets get 1001).
        service.feed.close()
        await ws.close()
        // Requests under way (an upload body still arriving, a mutation) get a moment to finish.
        const deadline = Date.now() + IN_FLIGHT_GRACE_MS
        while (inFlight.size > 0 && Date.now() < deadline) await sleep(20)
        await service.close()
        server.closeAllConnections()
        await stopped
      })()),
  }
}
