import { randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { hostname } from 'node:os'
import { constants } from 'node:fs'
import { access, mkdir } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { bearerToken, downloadSignatureValid, signedDownloadPath, tokenMatches } from './access.js'
import { asset, isAsset } from './assets.js'
import { assignRequestId, requestIdOf } from './request-id.js'
import { ConfigError, type Config } from './config.js'
import type { Cluster } from './cluster.js'
import type { Context } from './graphql/context.js'
import { closeInStages } from './linger.js'
import { log, setLogFields } from './log.js'
import { observe, observeRequest, registry } from './metrics.js'
import { applyCors, listensOnLoopback, refusal, type OriginPolicy } from './origin.js'
import { publicLink } from './public-url.js'
import { TUS_PATH } from './tus/path.js'
import { jsonText, sendJson } from './http-json.js'
import { FolderLock } from './uploads/folder-lock.js'
import { stopHashWorker } from './uploads/hasher.js'
import type { IngestOptions } from './core/ingest/ingest.js'
import { LocalStore, StateFileError } from './uploads/local-store.js'
import { UploadService } from './uploads/service.js'
import { LocalStorage } from './seams/storage/local.js'

/** How long a shutdown waits for requests under way; the whole shutdown must fit in 5 s. */
const IN_FLIGHT_GRACE_MS = 3000

/** A reason the server cannot start that the operator must fix; said in one line, without a stack. */
export class StartupError extends Error {
  override readonly name = 'StartupError'
}

export interface App {
  /** e.g. http://127.0.0.1:8000; known once listening. */
  url: string
  port: number
  service: UploadService
  /** Listens, then recovers: nothing in the folder is swept or carried on before the port is ours. */
  listen(): Promise<void>
  /** Settles once start-up's sweep and recovery are done (/readyz says "ready" from then on). */
  recovered: Promise<void>
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

/** Said in the caller's protocol: a GraphQL error on /graphql, `{"detail"}` on every other route (/metrics too). */
function unauthorized(res: ServerResponse, graphql: boolean): void {
  res.setHeader('www-authenticate', 'Bearer')
  const message = 'Missing or wrong access token: send Authorization: Bearer <API_TOKEN>'
  if (!graphql) return sendJson(res, 401, { detail: message })
  sendJson(res, 401, { errors: [{ message, extensions: { code: 'UNAUTHENTICATED' } }] })
}

function forbidden(res: ServerResponse, graphql: boolean, message: string): void {
  if (!graphql) return sendJson(res, 403, { detail: message })
  sendJson(res, 403, { errors: [{ message, extensions: { code: 'FORBIDDEN' } }] })
}

/** Probes for orchestrators reveal nothing and change nothing: no origin, host or token check. */
const isProbe = (pathname: string) => pathname === '/healthz' || pathname === '/readyz'

/** The storage folder must exist and take writes, or nothing else can work: said as a configuration error. */
async function usableFolder(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true })
    await access(dir, constants.W_OK | constants.X_OK)
  } catch (error) {
    const reason =
      (error as NodeJS.ErrnoException).code === 'EACCES'
        ? 'this user may not write to it'
        : (error as Error).message
    throw new ConfigError(`UPLOAD_DIR ${dir} is not a usable folder: ${reason}`)
  }
}

function listenError(error: NodeJS.ErrnoException, config: Config): Error {
  if (error.code === 'EADDRINUSE')
    return new StartupError(`Port ${config.port} is in use: stop the other server or set PORT`)
  if (error.code === 'EADDRNOTAVAIL' || error.code === 'ENOTFOUND' || error.code === 'EAI_AGAIN')
    return new StartupError(
      `HOST ${config.host} is not an address of this machine: set HOST to one (127.0.0.1 by default, 0.0.0.0 for all)`,
    )
  if (error.code === 'EACCES')
    return new StartupError(`Port ${config.port} needs privileges this user lacks: set PORT above 1023`)
  return error
}

/**
 * One Node http server: /graphql (yoga over HTTP and SSE, graphql-ws on upgrade), /api (the REST shim) and
 * the dashboard. Built in this order, so a second server on the same folder, or a state file that cannot
 * be trusted, stops before anything is touched: the folder's lock, then the state (read only), then
 * everything else. `listen` binds the port and only then sweeps and recovers.
 */
export async function createApp(config: Config): Promise<App> {
  await usableFolder(config.uploadDir)
  const shared = config.mode.kind === 'shared'
  const instance = config.instanceId ?? (shared ? instanceName() : 'local')
  if (shared) setLogFields({ instance })
  // Alone on its folder, or one of the instances that share it (and their state, over Redis).
  const lock = await FolderLock.acquire(config.uploadDir, shared ? 'shared' : 'exclusive')
  try {
    return await build(config, lock, instance)
  } catch (error) {
    await lock.release()
    throw error
  }
}

async function build(config: Config, lock: FolderLock, instance: string): Promise<App> {
  // Redis and its client are loaded only by instances that share state over it.
  const cluster =
    config.mode.kind === 'embedded'
      ? undefined
      : await (await import('./cluster.js')).joinCluster(config.mode.redisUrl, instance)
  if (cluster) registry.setDefaultLabels({ service_instance: instance })
  try {
    return await serve(config, lock, instance, cluster)
  } catch (error) {
    await cluster?.close()
    throw error
  }
}

async function serve(
  config: Config,
  lock: FolderLock,
  instance: string,
  cluster: Cluster | undefined,
): Promise<App> {
  const storage = new LocalStorage(config.uploadDir, instance)
  if (!cluster && !(await LocalStore.exists(config.stateFile)) && (await storage.holdsTransfers())) {
    throw new StateFileError(
      `state file ${config.stateFile} is missing, but ${config.uploadDir} holds unfinished uploads' bytes (in .transfers or .staging): restore the state file (or STATE_FILE), or remove those files to start afresh`,
    )
  }
  const store = cluster?.store ?? (await LocalStore.open(config.stateFile))
  await storage.prepare()
  // Decided now, before anyone is served: afterwards a file may belong to a request under way.
  const orphans = await storage.leftovers(await store.unfinished())
  const service = new UploadService({
    store,
    storage,
    defaultSpeed: config.defaultSpeed,
    maxTotalSpeed: config.maxTotalSpeed,
    shared: cluster,
    resumableExpiryMs: config.resumableExpiryMs,
  })
  const limits: IngestOptions = { storage, maxRequestFileBytes: config.maxUploadSize }
  const context: Context = {
    service,
    downloadUrl: (id, req) =>
      publicLink(
        config,
        config.apiToken === undefined
          ? `/api/files/${encodeURIComponent(id)}/download`
          : signedDownloadPath(id, config.apiToken),
        req,
      ),
  }
  // GraphQL (yoga, graphql-ws) and the REST shim are most of what the process loads: they load right after
  // the port opens, so /readyz answers at once; a request that comes first waits for them.
  let apiLoaded: Awaited<ReturnType<typeof loadApi>> | undefined
  const loadingApi = (): Promise<Awaited<ReturnType<typeof loadApi>>> =>
    (apiPromise ??= loadApi(context, limits, config.apiToken).then((loaded) => (apiLoaded = loaded)))
  let apiPromise: Promise<Awaited<ReturnType<typeof loadApi>>> | undefined
  // tus (@tus/server) loads on its first request: most servers never see one.
  let tusHandler: Promise<(req: IncomingMessage, res: ServerResponse) => Promise<void>> | undefined
  const loadTus = async () =>
    (await import('./tus/server.js')).createTusHandler({
      service,
      storage,
      maxSize: config.maxUploadSize,
      expiryMs: config.resumableExpiryMs,
      corsAllows: (origin) => config.corsOrigins.includes('*') || config.corsOrigins.includes(origin),
      locker: cluster?.locker,
    })
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
      res.setHeader('x-request-id', assignRequestId(req))
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
          .then(async (reason) => reason ?? (await cluster?.unhealthy()))
          .then((reason) =>
            sendJson(
              res,
              reason ? 503 : 200,
              reason ? { status: 'unavailable', detail: reason } : { status: 'ready' },
            ),
          )
      }
      // A page's address with a trailing slash (/api/docs/) is the same page: sent to its one address.
      if (
        pathname.endsWith('/') &&
        isAsset(pathname.slice(0, -1)) &&
        (req.method === 'GET' || req.method === 'HEAD')
      ) {
        return void res.writeHead(308, { location: `${pathname.slice(0, -1)}${url.search}` }).end()
      }
      // Pages and their files hold no data: served without a token (the pages ask for one where needed).
      if (isAsset(pathname) && (req.method === 'GET' || req.method === 'HEAD')) {
        return void asset(pathname).then(
          (found) => {
            res.writeHead(200, {
              'content-type': found.type,
              'content-length': Buffer.byteLength(found.body),
              // Everything the page needs comes from here: no inline script, no third party.
              'content-security-policy':
                found.csp ?? "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:",
              'x-content-type-options': 'nosniff',
            })
            res.end(req.method === 'HEAD' ? undefined : found.body)
          },
          (error: unknown) => {
            log('error', 'asset.missing', { requestId: requestIdOf(req), pathname, error })
            sendJson(res, 503, { detail: `${pathname} is not built: run npm run build` })
          },
        )
      }
      const isApi = pathname === '/api' || pathname.startsWith('/api/')
      const isTus = pathname === TUS_PATH || pathname.startsWith(`${TUS_PATH}/`)
      if (isApi || isTus || pathname === '/metrics' || (pathname === '/graphql' && !isGraphiQLPage(req))) {
        const token = config.apiToken
        if (token !== undefined && !tokenMatches(bearerToken(req.headers.authorization), token)) {
          if (!isSignedDownload(req, url, token)) return unauthorized(res, pathname === '/graphql')
        }
      }
      const serveApi = (target: URL, graphql = false) => {
        const serve = (api: Awaited<ReturnType<typeof loadApi>>) =>
          graphql ? api.yoga(req, res) : api.rest(req, res, target)
        return void (apiLoaded ? serve(apiLoaded) : loadingApi().then(serve))
      }
      // A GET of a tus upload's URL is that upload's download, answered by the REST download itself (the same
      // headers, ranges and refusals; one place that streams a stored file). @tus/server's own GET reads the
      // staging copy, which is gone once the file is stored. Served here rather than redirected: a tus client
      // or `curl` without -L gets the file, and a bearer token needs no signed link to follow.
      const tusUpload =
        isTus && req.method === 'GET' ? /^[^/]+$/.exec(pathname.slice(TUS_PATH.length + 1))?.[0] : undefined
      if (tusUpload !== undefined) return serveApi(new URL(`/api/files/${tusUpload}/download`, url))
      if (isTus) {
        // GET is no tus method (@tus/server would answer it in tus's plain text): whoever sends one is most
        // likely looking for the files, and is told, in JSON like every other answer, where they are.
        if (req.method === 'GET') {
          res.setHeader('allow', 'OPTIONS, POST, HEAD, PATCH, DELETE')
          return sendJson(res, 405, {
            detail: `${TUS_PATH}/ is the tus endpoint for resumable uploads (POST, HEAD, PATCH, DELETE with Tus-Resumable: 1.0.0); the stored files are listed at GET /api/files, and each is downloaded from GET /api/files/{id}/download`,
          })
        }
        return void (tusHandler ??= loadTus())
          .then((handle) => handle(req, res))
          .catch((error: unknown) => {
            log('error', 'tus.error', { requestId: requestIdOf(req), error })
            if (!res.headersSent) sendJson(res, 500, { detail: 'Internal Server Error' })
            else res.destroy()
          })
      }
      if (pathname === '/metrics') {
        return void registry.metrics().then(
          (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
          (error: unknown) => {
            log('error', 'metrics.failed', { error })
            sendJson(res, 503, { detail: 'Metrics cannot be read now; try again' })
          },
        )
      }
      if (isApi || pathname === '/graphql') return serveApi(url, !isApi)

      sendJson(res, 404, { detail: 'Not Found' })
    },
  )
  // An answer before its body arrived reaches the client, even through a proxy still sending that body.
  closeInStages(server)
  // A large file on a slow link can take hours: no limit on a whole request (requestTimeout 0), only on a
  // connection that sends nothing (SSE and WebSocket ping every 12 s, so they never look idle).
  server.timeout = config.bodyIdleTimeoutMs
  // WebSocket handshakes get the same origin and host checks as every request (browsers send no preflight
  // for them, and CORS does not apply): a refused one gets a plain 403 and never reaches graphql-ws.
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    assignRequestId(req)
    const pathname = (req.url ?? '/').split('?')[0]
    const refused = pathname === '/graphql' ? refusal(req, policy) : 'Not Found'
    if (refused === undefined) return void loadingApi().then((api) => api.ws.handleUpgrade(req, socket, head))
    const status = refused === 'Not Found' ? '404 Not Found' : '403 Forbidden'
    const body = jsonText({ detail: refused })
    socket.end(
      `HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    )
  })

  let listening = false
  let closing: Promise<void> | undefined
  const app: App = {
    url: '',
    port: 0,
    service,
    recovered: Promise.resolve(),
    async listen() {
      await new Promise<void>((resolve, reject) => {
        server.once('error', (error: NodeJS.ErrnoException) => reject(listenError(error, config)))
        server.listen(config.port, config.host, () => resolve())
      })
      listening = true
      const { port } = server.address() as AddressInfo
      const host = config.host.includes(':') ? `[${config.host}]` : config.host
      app.port = port
      app.url = `http://${host}:${port}`
      // A graphql-ws group is one listener on the feed for all of its members.
      observe({
        ...service.liveState,
        subscriptions: () =>
          service.feed.subscriberCount -
          (apiLoaded?.ws.fanout.groupCount ?? 0) +
          (apiLoaded?.ws.fanout.members ?? 0),
        slowConsumersClosed: () => apiLoaded?.ws.fanout.slowClosed ?? 0,
      })
      app.recovered = service.recover(orphans)
      void loadingApi()
    },
    close: () =>
      (closing ??= (async () => {
        if (listening) await stopServing(server, inFlight, async () => apiLoaded?.ws.close(), service)
        await service.close()
        await store.close()
        await cluster?.close()
        await stopHashWorker()
        await lock.release()
      })()),
  }
  return app
}

async function stopServing(
  server: Server,
  inFlight: Set<ServerResponse>,
  closeSockets: () => Promise<void>,
  service: UploadService,
): Promise<void> {
  // New connections are refused from here on; idle keep-alive ones are closed.
  const stopped = new Promise<void>((resolve) => server.close(() => resolve()))
  server.closeIdleConnections()
  // Subscriptions never end by themselves: end them (SSE streams finish, sockets get 1001).
  service.feed.close()
  await closeSockets()
  // Requests under way (an upload body still arriving, a mutation) get a moment to finish.
  const deadline = Date.now() + IN_FLIGHT_GRACE_MS
  while (inFlight.size > 0 && Date.now() < deadline) await sleep(20)
  server.closeAllConnections()
  await stopped
}

/** Everything that answers GraphQL and REST, loaded once, after the port opens (see serve()). */
async function loadApi(context: Context, limits: IngestOptions, apiToken: string | undefined) {
  const [{ schema }, { createGraphQL }, { createGraphQLWs }, { createRestHandler }] = await Promise.all([
    import('./graphql/schema.js'),
    import('./graphql/yoga.js'),
    import('./graphql/ws.js'),
    import('./rest/handler.js'),
  ])
  const yoga = createGraphQL(context, limits)
  return { yoga, ws: createGraphQLWs(yoga, apiToken), rest: createRestHandler(schema, context, limits) }
}

/** A name for an instance that was given none: the host's, and a few random characters, unique per start. */
function instanceName(): string {
  return `${hostname()
    .replace(/[^\w.-]/g, '-')
    .slice(0, 40)}-${randomBytes(3).toString('hex')}`
}

/** createApp, then listen: a running server. */
export async function startApp(config: Config): Promise<App> {
  const app = await createApp(config)
  try {
    await app.listen()
  } catch (error) {
    await app.close()
    throw error
  }
  return app
}
