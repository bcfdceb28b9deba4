import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { HOOK_FILE_PATH } from '../hooks/file-link.js'
import { TUS_PATH } from '../tus/path.js'
import { readLink } from '../auth/links.js'
import { linkBearer, setPrincipal, type Principal } from '../auth/principal.js'
import type { Authenticator } from '../auth/verify.js'
import { ServiceError } from '../errors.js'
import { downloadSignatureValid } from './access.js'
import {
  methodNotAllowed,
  notFound,
  redirectTo,
  refuse,
  refuseUpgrade,
  sendAsset,
  sendCoded,
  sendDetail,
  sendHealthy,
  sendInternalError,
  sendReadiness,
} from './answers.js'
import { asset, isAsset } from './assets.js'
import { observeRequest, registry } from '../metrics.js'
import { applyCors, refusal, type OriginPolicy } from './origin.js'
import { withRequestId } from '../request-context.js'
import { assignRequestId } from './request-id.js'

/** What answers GraphQL and REST, loaded after the port opens (see compose.ts). */
export interface Api {
  yoga: (req: IncomingMessage, res: ServerResponse) => unknown
  rest: (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void>
  ws: { handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void }
}

export interface Routes {
  policy: OriginPolicy
  /** CORS_ORIGINS. */
  corsOrigins: readonly string[]
  /** API_TOKEN: its signed download links (see access.ts) open a download without a header. */
  apiToken: string | undefined
  /**
   * The one door (auth/verify.ts): with API_TOKEN or AUTH_* set, every route but the probes and the pages
   * needs a bearer token, and who it is from rides with the request (auth/principal.ts's principalOf).
   */
  authenticator: Authenticator
  /** AUTH_LINK_SECRET's key: download links bound to their upload's owner (auth/links.ts); with AUTH_* only. */
  linkKey: Uint8Array | undefined
  /** Why the server cannot serve now (/readyz), or undefined. */
  notReady(): Promise<string | undefined>
  /** GraphQL and REST: loaded once, then at hand (a request that comes first waits for them). */
  api: { loaded(): Api | undefined; load(): Promise<Api> }
  /** tus (@tus/server), loaded on its first request: most servers never see one. */
  tus(): Promise<(req: IncomingMessage, res: ServerResponse) => Promise<void>>
  /** Responses not finished yet: a shutdown waits for them a moment. */
  inFlight: Set<ServerResponse>
  /** With HOOKS_URL: the files pre-finish hooks read, at /hooks/files/{id} (their links are signed). */
  hookFile?: (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void>
  /**
   * Whether the work a request starts carries its request id (request-context.ts), for the hook notifications
   * it causes: with HOOKS_URL only. On Node 20 an AsyncLocalStorage, once run, hooks every promise of the
   * process: it cost a status request 12-20 % of its CPU (bench/round3-profile.md).
   */
  carryRequestIds: boolean
}

/** GraphiQL's page holds no data; it is served without a token, and asks for one in its headers pane. */
const isGraphiQLPage = (req: IncomingMessage) =>
  req.method === 'GET' && /text\/html/.test(req.headers.accept ?? '')

/** Probes for orchestrators reveal nothing and change nothing: no origin, host or token check. */
const isProbe = (pathname: string) => pathname === '/healthz' || pathname === '/readyz'

const isRead = (req: IncomingMessage) => req.method === 'GET' || req.method === 'HEAD'

/** The upload id of a GET or HEAD of /api/files/{id}/download, if that is what `req` is. */
function downloadOf(req: IncomingMessage, url: URL): string | undefined {
  const id = /^\/api\/files\/([^/]+)\/download$/.exec(url.pathname)?.[1]
  if (id === undefined || !isRead(req)) return undefined
  try {
    return decodeURIComponent(id)
  } catch {
    return undefined // a malformed escape in the id
  }
}

/**
 * A request's target as a URL: a path (`/api/...`, the form every client sends) is read as a path, so `//x/y` is
 * the path `//x/y` and not the host `x`; a full URL (a proxy's form) as itself. Undefined for one that is
 * neither, which Node's parser lets through (`//%`, `http://[/`): the caller answers 400.
 */
function targetOf(target: string): URL | undefined {
  try {
    return target.startsWith('/') ? new URL(`http://localhost${target}`) : new URL(target, 'http://localhost')
  } catch {
    return undefined
  }
}

const TUS_METHODS = ['OPTIONS', 'POST', 'HEAD', 'PATCH', 'DELETE']

/**
 * Routes every request and every WebSocket upgrade of the one http server: the edge's checks first (origin
 * and host, CORS, the token), then /healthz, /readyz, the pages, tus at /files/, /metrics, /api and /graphql.
 */
export function createRouter(routes: Routes) {
  const { policy, api, inFlight } = routes

  const serveApi = (req: IncomingMessage, res: ServerResponse, target: URL, graphql: boolean) => {
    const serve = (loaded: Api) => (graphql ? loaded.yoga(req, res) : loaded.rest(req, res, target))
    const loaded = api.loaded()
    return void (loaded ? serve(loaded) : api.load().then(serve))
  }

  let tusHandler: ReturnType<Routes['tus']> | undefined
  function serveTus(req: IncomingMessage, res: ServerResponse, url: URL): void {
    // A GET of a tus upload's URL is that upload's download, answered by the REST download itself (the same
    // headers, ranges and refusals; one place that streams a stored file). @tus/server's own GET reads the
    // staging copy, which is gone once the file is stored. Served here rather than redirected: a tus client
    // or `curl` without -L gets the file, and a bearer token needs no signed link to follow.
    const upload =
      req.method === 'GET' ? /^[^/]+$/.exec(url.pathname.slice(TUS_PATH.length + 1))?.[0] : undefined
    if (upload !== undefined) return serveApi(req, res, new URL(`/api/files/${upload}/download`, url), false)
    // GET is no tus method (@tus/server would answer it in tus's plain text): whoever sends one is most
    // likely looking for the files, and is told, in JSON like every other answer, where they are.
    if (req.method === 'GET') {
      return methodNotAllowed(
        req,
        res,
        TUS_METHODS,
        `${TUS_PATH}/ is the tus endpoint for resumable uploads (POST, HEAD, PATCH, DELETE with Tus-Resumable: 1.0.0); the stored files are listed at GET /api/files, and each is downloaded from GET /api/files/{id}/download`,
      )
    }
    void (tusHandler ??= routes.tus())
      .then((handle) => handle(req, res))
      .catch((error: unknown) => sendInternalError(req, res, { event: 'tus.error', error }))
  }

  function serveMetrics(req: IncomingMessage, res: ServerResponse): void {
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (error: unknown) =>
        sendCoded(req, res, 'UNAVAILABLE', 'Metrics cannot be read now; try again', {
          event: 'metrics.failed',
          error,
        }),
    )
  }

  function servePage(req: IncomingMessage, res: ServerResponse, pathname: string): void {
    asset(pathname).then(
      (found) => sendAsset(req, res, found),
      (error: unknown) =>
        sendCoded(req, res, 'UNAVAILABLE', `${pathname} is not built: run npm run build`, {
          event: 'asset.missing',
          error,
        }),
    )
  }

  /**
   * Who sent the request, by its signed download link or its bearer token; undefined once it has been
   * refused (401 with what is wrong with the token, 503 when the keys that check it cannot be fetched).
   */
  async function principal(
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
  ): Promise<Principal | undefined> {
    const download = downloadOf(req, url)
    if (download !== undefined && routes.linkKey !== undefined && url.searchParams.has('link')) {
      const grant = readLink(url.searchParams.get('link'), routes.linkKey)
      if (grant !== undefined && grant.id === download) return linkBearer(grant)
    }
    if (download !== undefined && routes.apiToken !== undefined) {
      if (downloadSignatureValid(download, url.searchParams, routes.apiToken))
        return routes.authenticator.authenticate(`Bearer ${routes.apiToken}`)
    }
    try {
      return await routes.authenticator.authenticate(req.headers.authorization)
    } catch (error) {
      if (!(error instanceof ServiceError)) throw error
      const graphql = url.pathname === '/graphql'
      if (error.code !== 'UNAUTHENTICATED') sendCoded(req, res, error.code, error.message)
      // API_TOKEN alone says what it always said; with AUTH_* the answer names what is wrong with the token.
      else refuse(req, res, 'UNAUTHENTICATED', graphql, routes.linkKey ? error.message : undefined)
      return undefined
    }
  }

  /** Routes behind the door: served once the caller is known, as that caller. */
  function serveGuarded(req: IncomingMessage, res: ServerResponse, url: URL, serve: () => void): void {
    if (!routes.authenticator.required) return serve()
    principal(req, res, url).then(
      (found) => {
        if (found === undefined) return
        setPrincipal(req, found)
        // Metrics count everyone's uploads: an admin's to read.
        if (url.pathname === '/metrics' && !found.scopes.admin)
          return refuse(req, res, 'FORBIDDEN', false, 'This token lacks the uploads:admin scope')
        serve()
      },
      (error: unknown) => sendInternalError(req, res, { event: 'auth.error', error }),
    )
  }

  function route(req: IncomingMessage, res: ServerResponse, url: URL): void {
    const { pathname } = url
    const refused = isProbe(pathname) ? undefined : refusal(req, policy)
    if (refused !== undefined) return refuse(req, res, 'FORBIDDEN', pathname === '/graphql', refused)
    if (applyCors(req, res, routes.corsOrigins)) return
    if (pathname === '/healthz') return sendHealthy(res)
    if (pathname === '/readyz') return void routes.notReady().then((reason) => sendReadiness(res, reason))
    // A page's address with a trailing slash (/api/docs/) is the same page: sent to its one address.
    if (pathname.endsWith('/') && isAsset(pathname.slice(0, -1)) && isRead(req))
      return redirectTo(res, `${pathname.slice(0, -1)}${url.search}`)
    // Pages and their files hold no data: served without a token (the pages ask for one where needed).
    if (isAsset(pathname) && isRead(req)) return servePage(req, res, pathname)
    const isApi = pathname === '/api' || pathname.startsWith('/api/')
    const isTus = pathname === TUS_PATH || pathname.startsWith(`${TUS_PATH}/`)
    const isGraphQL = pathname === '/graphql'
    const guarded = isApi || isTus || pathname === '/metrics' || (isGraphQL && !isGraphiQLPage(req))
    // Its link carries its own signature (HOOKS_SECRET's), in place of the token.
    if (pathname.startsWith(`${HOOK_FILE_PATH}/`) && routes.hookFile)
      return void routes
        .hookFile(req, res, url)
        .catch((error: unknown) => sendInternalError(req, res, { event: 'hook_file.error', error }))
    if (!guarded) return isGraphQL ? serveApi(req, res, url, true) : notFound(req, res)
    serveGuarded(req, res, url, () => {
      if (isTus) return serveTus(req, res, url)
      if (pathname === '/metrics') return serveMetrics(req, res)
      serveApi(req, res, url, isGraphQL)
    })
  }

  return {
    request(req: IncomingMessage, res: ServerResponse): void {
      const started = performance.now()
      const requestId = assignRequestId(req)
      res.setHeader('x-request-id', requestId)
      const url = targetOf(req.url ?? '/')
      inFlight.add(res)
      // One listener per response does both jobs: this runs on every request.
      res.once('close', () => {
        inFlight.delete(res)
        observeRequest(req.method ?? 'GET', url?.pathname ?? '', res.statusCode, started)
      })
      if (url === undefined) return sendDetail(req, res, 400, 'The request target is not a valid path')
      if (routes.carryRequestIds) withRequestId(requestId, () => route(req, res, url))
      else route(req, res, url)
    },

    /**
     * WebSocket handshakes get the same origin and host checks as every request (browsers send no preflight
     * for them, and CORS does not apply): a refused one gets a plain 403 and never reaches graphql-ws.
     */
    upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
      assignRequestId(req)
      const pathname = (req.url ?? '/').split('?')[0]
      if (pathname !== '/graphql') return refuseUpgrade(socket, 404, 'Not Found')
      const refused = refusal(req, policy)
      if (refused !== undefined) return refuseUpgrade(socket, 403, refused)
      void api.load().then((loaded) => loaded.ws.handleUpgrade(req, socket, head))
    },
  }
}
