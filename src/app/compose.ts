import { constants } from 'node:fs'
import { access, mkdir } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { dirname } from 'node:path'
import type { Duplex } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { ConfigError, type Config } from '../config.js'
import { grantFor, signLink } from '../auth/links.js'
import { createAuthenticator, type Authenticator } from '../auth/verify.js'
import { OwnedService } from '../core/owned.js'
import type { ContextFor } from '../graphql/context.js'
import { stopHashWorker } from '../core/transfer/hasher.js'
import type { IngestOptions } from '../core/ingest/ingest.js'
import { UploadService } from '../core/service.js'
import { allowInPlace, onLocalDisks } from '../in-place-fs.js'
import { openSeams, type Seams } from '../seams/index.js'
import type { Leftover } from '../seams/storage/index.js'
import { bearerToken, signedDownloadPath, tokenMatches } from './access.js'
import { log } from '../log.js'
import { wants } from '../hooks/config.js'
import { createHookFileHandler } from './hook-file.js'
import { closeInStages } from './linger.js'
import { observe, registry } from '../metrics.js'
import { listensOnLoopback } from './origin.js'
import { publicLink } from './public-url.js'
import { createRouter } from './router.js'
import { Deliverer } from '../hooks/deliver.js'
import { hookMetrics } from '../hooks/metrics.js'
import type { HooksConfig } from '../hooks/config.js'
import { attemptBody, notifier, type DownloadLink } from '../hooks/notify.js'

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
  // Quick file calls on the event loop only where a local disk answers them (see in-place-fs.ts).
  allowInPlace(await onLocalDisks([config.uploadDir, dirname(config.stateFile)]))
  const seams = await openSeams(config)
  try {
    // Among several, every series says which instance it is from.
    if (seams.mode === 'shared') registry.setDefaultLabels({ service_instance: seams.instance })
    await seams.storage.prepare()
    // Decided now, before anyone is served: afterwards a file may belong to a request under way.
    const orphans = await seams.storage.leftovers(await seams.records.unfinished())
    // The one door: API_TOKEN is the operator, AUTH_* users are who their tokens say; neither, everyone is the operator.
    const authenticator = await createAuthenticator({ auth: config.auth, apiToken: config.apiToken })
    return assemble(config, seams, orphans, authenticator)
  } catch (error) {
    await seams.close()
    throw error
  }
}

/** createApp, then listen: a running server. */
export async function startApp(config: Config): Promise<App> {
  const app = await createApp(config)
  try {
    await app.listen()
  } catch (error) {
    // What stopped it is the error to report, not one met while closing what was half open.
    await app.close().catch(() => undefined)
    throw error
  }
  return app
}

/** Everything that answers GraphQL and REST, loaded once, after the port opens (see assemble). */
async function loadApi(contextFor: ContextFor, limits: IngestOptions, authenticator: Authenticator) {
  const [{ schema }, { createGraphQL }, { createGraphQLHandler }, { createRestHandler }] = await Promise.all([
    import('../graphql/schema.js'),
    import('../graphql/yoga.js'),
    import('../graphql/direct.js'),
    import('../rest/handler.js'),
  ])
  const yoga = createGraphQL(contextFor, limits)
  return {
    // Plain queries are answered by the executor REST shares, the rest by yoga (see direct.ts).
    yoga: createGraphQLHandler(yoga, schema, contextFor),
    ws: lazySockets(() => import('../graphql/ws.js').then((m) => m.createGraphQLWs(yoga, authenticator))),
    rest: createRestHandler(schema, contextFor, limits),
  }
}

/**
 * graphql-ws (with ws) loaded by the first WebSocket upgrade: a server nobody subscribes to over a socket
 * never holds it in memory. Until then it has no groups and no members.
 */
function lazySockets(load: () => Promise<Sockets>) {
  let sockets: Sockets | undefined
  let loading: Promise<Sockets> | undefined
  return {
    get fanout(): Sockets['fanout'] | undefined {
      return sockets?.fanout
    },
    handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
      ;(loading ??= load().then((loaded) => (sockets = loaded))).then(
        (loaded) => loaded.handleUpgrade(req, socket, head),
        () => socket.destroy(),
      )
    },
    close: async () => (await loading?.catch(() => undefined))?.close(),
  }
}
type Sockets = ReturnType<typeof import('../graphql/ws.js').createGraphQLWs>
type LoadedApi = Awaited<ReturnType<typeof loadApi>>

/** A request's declared body length, if it declares one. */
function bodyLengthOf(req: IncomingMessage | undefined): number | undefined {
  const length = Number(req?.headers['content-length'] ?? NaN)
  return Number.isSafeInteger(length) && length >= 0 ? length : undefined
}

/**
 * A download link's path, signed now. A plain link (a browser's download, curl -O, a hook's receiver) carries
 * no header: where a token is needed, the link is signed (AUTH_*: bound to the upload's owner; else API_TOKEN).
 */
function downloadPathOf(config: Config) {
  const linkKey = config.auth?.linkKey
  return (upload: { id: string; owner?: string | null }): string => {
    if (linkKey !== undefined) {
      const link = signLink(grantFor(upload.id, upload.owner ?? null), linkKey)
      return `/api/files/${encodeURIComponent(upload.id)}/download?link=${link}`
    }
    return config.apiToken === undefined
      ? `/api/files/${encodeURIComponent(upload.id)}/download`
      : signedDownloadPath(upload.id, config.apiToken)
  }
}

/** The service over the state, the http server over the service, and the app that starts and stops them. */
function assemble(
  config: Config,
  seams: Seams,
  orphans: readonly Leftover[],
  authenticator: Authenticator,
): App {
  const { storage } = seams
  const hooks = config.hooks && startHooks(config, config.hooks, seams, () => app.url)
  const service = new UploadService({
    seams,
    defaultSpeed: config.defaultSpeed,
    maxTotalSpeed: config.maxTotalSpeed,
    resumableExpiryMs: config.resumableExpiryMs,
    ...(hooks ? { notifier: hooks.notifier } : {}),
    ...(config.hooks
      ? {
          hooks: {
            config: config.hooks,
            // A hook on another machine needs PUBLIC_URL to reach the file it is asked about.
            publicUrl: (path: string) => `${config.publicUrl ?? app.url}${path}`,
            // A user's own token (a JWT under AUTH_*) goes to the backend; the operator's secret never does.
            forwards: (authorization: string) =>
              config.apiToken === undefined || !tokenMatches(bearerToken(authorization), config.apiToken),
          },
        }
      : {}),
    // Only a bucket is swept while running; a folder is swept at start-up, as before.
    sweepEveryMs: config.storage.kind === 's3' ? config.storage.sweepMs : undefined,
  })
  const limits: IngestOptions = {
    storage,
    maxRequestFileBytes: config.maxUploadSize,
    approveFirst: wants(config.hooks, 'pre-create'),
  }
  const linkKey = config.auth?.linkKey
  const downloadPath = downloadPathOf(config)
  const contextFor: ContextFor = (principal, req, bodyLength) => ({
    service: new OwnedService(service, principal, bodyLength ?? bodyLengthOf(req)),
    principal,
    req,
    downloadUrl: (upload, linkReq) => publicLink(config, downloadPath(upload), linkReq),
    ...(hooks ? { hooks: { outbox: seams.outbox, kick: () => hooks.deliverer.kick() } } : {}),
  })
  // GraphQL (yoga, graphql-ws) and the REST shim are most of what the process loads: they load right after
  // the port opens, so /readyz answers at once; a request that comes first waits for them.
  let loaded: LoadedApi | undefined
  let loading: Promise<LoadedApi> | undefined
  const load = () => (loading ??= loadApi(contextFor, limits, authenticator).then((api) => (loaded = api)))
  const inFlight = new Set<ServerResponse>()
  const router = createRouter({
    policy: {
      corsOrigins: config.corsOrigins,
      allowedHosts: config.allowedHosts,
      loopback: listensOnLoopback(config.host),
    },
    corsOrigins: config.corsOrigins,
    apiToken: config.apiToken,
    authenticator,
    linkKey,
    notReady: async () => (await service.notReady()) ?? (await seams.unhealthy()),
    api: { loaded: () => loaded, load },
    tus: async () =>
      (await import('../tus/server.js')).createTusHandler({
        service,
        storage,
        maxSize: config.maxUploadSize,
        expiryMs: config.resumableExpiryMs,
        corsAllows: (origin) => config.corsOrigins.includes('*') || config.corsOrigins.includes(origin),
        locker: await seams.tusLocker(),
      }),
    inFlight,
    ...(config.hooks ? { hookFile: createHookFileHandler(service, storage, config.hooks.secret) } : {}),
    carryRequestIds: hooks !== undefined,
  })
  const server = createServer(
    // Enforce headersTimeout every second (Node checks every 30 s by default, which lets trickling headers linger).
    { connectionsCheckingInterval: 1000, headersTimeout: config.headersTimeoutMs, requestTimeout: 0 },
    router.request,
  )
  // An answer before its body arrived reaches the client, even through a proxy still sending that body.
  closeInStages(server)
  // A large file on a slow link can take hours: no limit on a whole request (requestTimeout 0), only on a
  // connection that sends nothing (SSE and WebSocket ping every 12 s, so they never look idle).
  server.timeout = config.bodyIdleTimeoutMs
  server.on('upgrade', router.upgrade)

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
          (loaded?.ws.fanout?.groupCount ?? 0) +
          (loaded?.ws.fanout?.members ?? 0),
        slowConsumersClosed: () => loaded?.ws.fanout?.slowClosed ?? 0,
        storageOutcomes: () => storage.outcomes?.(),
      })
      app.recovered = service.recover(orphans)
      // What an earlier run left pending goes out now (each event was written with its state change).
      hooks?.deliverer.start()
      void load()
    },
    close: () =>
      (closing ??= (async () => {
        if (listening) await stopServing(server, inFlight, async () => loaded?.ws.close(), service)
        await service.close()
        await hooks?.stop()
        await stopHashWorker()
        await seams.close()
      })()),
  }
  return app
}

/**
 * HOOKS_URL's notifications: built with each state change (the service writes them with it), sent by a
 * deliverer over the seams' outbox, counted in /metrics. A completed event's link is signed as every download
 * link is, at each attempt (so a late retry's still works), and absolute (PUBLIC_URL, else this server's
 * address), since a receiver elsewhere has no request to be relative to.
 */
function startHooks(config: Config, settings: HooksConfig, seams: Seams, url: () => string) {
  const target = new URL(settings.url)
  if (settings.forwardAuthorization && target.protocol === 'http:' && !listensOnLoopback(target.hostname))
    // Said once, at start: callers' tokens would cross the network in the clear to another host.
    log('warn', 'hook.forwards_auth_in_clear', {
      hooksUrl: `${target.protocol}//${target.host}`,
      advice:
        "HOOKS_URL is plain http to another host and HOOKS_FORWARD_AUTH is on: callers' tokens go to it unencrypted. Use https, or set HOOKS_FORWARD_AUTH=false",
    })
  const metrics = hookMetrics(registry, seams.outbox)
  const downloadPath = downloadPathOf(config)
  const link: DownloadLink = (upload) => `${config.publicUrl ?? url()}${downloadPath(upload)}`
  const deliverer = new Deliverer({
    outbox: seams.outbox,
    config: settings,
    metrics,
    bodyOf: (event) => attemptBody(event, link),
  })
  return {
    deliverer,
    notifier: notifier(settings, () => deliverer.kick()),
    async stop() {
      await deliverer.stop()
      metrics.remove()
    },
  }
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
