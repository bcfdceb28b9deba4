import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { execute, getOperationAST, GraphQLError, type ExecutionArgs, type ExecutionResult } from 'graphql'
import type { ErrorCode } from '../errors.js'
import { maskError } from './errors.js'
import { logServerErrors } from './use-server-error-log.js'
import { useServer } from 'graphql-ws/use/ws'
import { WebSocketServer, type WebSocket } from 'ws'
import { Fanout, groupKey } from './fanout.js'
import type { Authenticator } from '../auth/verify.js'
import { OPERATOR, type Principal } from '../auth/principal.js'
import { ServiceError } from '../errors.js'
import { log } from '../log.js'
import { requestIdOf } from '../app/request-id.js'
import type { GraphQLApp } from './yoga.js'

/** Pings every 12 s (graphql-ws's default) so proxies do not drop idle subscription sockets. */
const KEEP_ALIVE_MS = 12_000
/** A message larger than this closes the socket (1009); ws's own default is 100 MiB. */
const MAX_MESSAGE_BYTES = 64 * 1024
/** Subscriptions one socket may hold at once. */
const MAX_SUBSCRIPTIONS_PER_SOCKET = 100
/** A socket that has not sent connection_init by then is closed (4408). */
const CONNECTION_INIT_TIMEOUT_MS = 3000

/** How long a shutdown waits for clients to answer the close handshake before cutting them off. */
const CLOSE_HANDSHAKE_MS = 1000

type Result =
  Promise<ExecutionResult | AsyncIterable<ExecutionResult>> | ExecutionResult | AsyncIterable<ExecutionResult>

interface EnvelopedRoot {
  execute: (args: ExecutionArgs) => Result
  subscribe: (args: ExecutionArgs) => Result
  /** For a subscription: the group it shares with every subscriber that asked the same (see fanout.ts). */
  fanout?: { key: string; socket: WebSocket; id: string }
}

/** Errors in a shared event's result as clients see them everywhere, the server's own logged with their id. */
function masked(result: ExecutionResult, args: ExecutionArgs): ExecutionResult {
  if (!result.errors?.length) return result
  logServerErrors(result.errors, args.contextValue)
  return {
    ...result,
    errors: result.errors.map((error) => maskError(error, 'Internal Server Error') as GraphQLError),
  }
}

/** Who opened a socket, found at its connection_init (see onConnect). */
const principals = new WeakMap<object, Principal>()

/**
 * Subscribers share a group only when they would see the same states: an admin sees everyone's uploads, a
 * user only their own, so whose they are and what their token lets them do are part of the key.
 */
const whose = (p: Principal) => JSON.stringify([p.sub, p.scopes.admin, p.scopes.read])

/**
 * graphql-ws on the same port and path as HTTP GraphQL. Each operation runs through yoga's envelop, so
 * WebSocket clients get the same schema, context, plugins and error masking as HTTP ones. The http server
 * decides which upgrades reach it (path, origin, host) and hands them over with `handleUpgrade`.
 */
export function createGraphQLWs(yoga: GraphQLApp, authenticator: Authenticator) {
  // No permessage-deflate (ws's default, kept on purpose): fanout.ts writes whole frames to the socket itself,
  // which is only in order while ws never queues a compressed frame of its own.
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES, perMessageDeflate: false })
  const fanout = new Fanout()
  // The handshake's answer carries the request id too: every log line about this socket's operations names it.
  wss.on('headers', (headers, req) => headers.push(`X-Request-Id: ${requestIdOf(req) ?? ''}`))
  const graphqlWs = useServer(
    {
      connectionInitWaitTimeout: CONNECTION_INIT_TIMEOUT_MS,
      // With API_TOKEN or AUTH_* set, connection_init must carry a token: { "authorization": "Bearer <token>" }
      // (or "token"). A refusal closes the socket with 4403 Forbidden and says why in the close reason.
      onConnect: async (ctx) => {
        if (!authenticator.required) return true
        const params = ctx.connectionParams ?? {}
        const presented =
          typeof params.token === 'string'
            ? `Bearer ${params.token}`
            : String(params.authorization ?? params.Authorization ?? '')
        try {
          principals.set(ctx.extra, await authenticator.authenticate(presented))
          return true
        } catch (error) {
          if (!(error instanceof ServiceError)) throw error
          // A close reason is at most 123 bytes.
          ctx.extra.socket.close(4403, Buffer.from(error.message).subarray(0, 120).toString())
          return false
        }
      },
      execute: (args) => (args.rootValue as EnvelopedRoot).execute(args),
      subscribe: (args) => {
        const root = args.rootValue as EnvelopedRoot
        if (!root.fanout) return root.subscribe(args)
        const { key, socket, id } = root.fanout
        return fanout.join(
          key,
          args,
          // The selection over one state, run by graphql-js itself (the envelop's executor would start a
          // new subscription for a subscription document), its errors masked as everywhere else.
          (each) => masked(execute(each) as ExecutionResult, each),
          (each) => root.subscribe(each),
          socket,
          id,
        ) as Promise<AsyncIterable<ExecutionResult>>
      },
      onSubscribe: async (ctx, id, params) => {
        // graphql-ws has already registered this one, so it counts itself.
        if (Object.keys(ctx.subscriptions).length > MAX_SUBSCRIPTIONS_PER_SOCKET) {
          return [
            new GraphQLError(`At most ${MAX_SUBSCRIPTIONS_PER_SOCKET} subscriptions per socket`, {
              extensions: { code: 'TOO_MANY_SUBSCRIPTIONS' satisfies ErrorCode },
            }),
          ]
        }
        const principal = principals.get(ctx.extra) ?? OPERATOR
        const { schema, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({
          ...ctx,
          req: ctx.extra.request,
          socket: ctx.extra.socket,
          params,
          principal,
        })
        let document
        try {
          document = parse(params.query)
        } catch (error) {
          return [error as never]
        }
        // GraphQL Armor's rules throw their refusals rather than report them: caught, they are this
        // operation's errors, and the socket with its other subscriptions stays open.
        let errors
        try {
          errors = validate(schema, document)
        } catch (error) {
          return [error as never]
        }
        if (errors.length > 0) return errors
        const operation = getOperationAST(document, params.operationName)?.operation
        return {
          schema,
          document,
          operationName: params.operationName,
          variableValues: params.variables,
          contextValue: await contextFactory(),
          rootValue: {
            execute,
            subscribe,
            fanout:
              operation === 'subscription'
                ? {
                    key: `${whose(principal)} ${groupKey(params.query, params.variables, params.operationName)}`,
                    socket: ctx.extra.socket,
                    id,
                  }
                : undefined,
          } satisfies EnvelopedRoot,
        }
      },
    },
    wss,
    KEEP_ALIVE_MS,
  )

  return {
    fanout,
    handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
      wss.handleUpgrade(req, socket, head, (client) => {
        fanout.adopt(client, socket)
        // A socket's errors are the client's doing (a message over the limit, bad framing), and ws has closed
        // the socket for each already. graphql-ws would print each one raw with console.error, which any
        // client could fill stderr with: it becomes one log line instead, and graphql-ws never hears of it.
        const emit = client.emit.bind(client)
        client.emit = ((event: string | symbol, ...args: unknown[]) => {
          if (event !== 'error') return emit(event, ...args)
          log('warn', 'ws.client_error', {
            requestId: requestIdOf(req),
            error: (args[0] as Error | undefined)?.message,
          })
          return true
        }) as typeof client.emit
        // A send that fails means the peer has gone (EPIPE, a reset): graphql-ws would print that raw too,
        // from inside its message handling. There is no one left to tell; the socket's close follows.
        const send = client.send.bind(client) as (data: unknown, ...rest: unknown[]) => void
        client.send = ((data: unknown, ...rest: unknown[]) => {
          const done = rest.at(-1)
          if (typeof done !== 'function') return send(data, ...rest)
          send(data, ...rest.slice(0, -1), (error?: Error) => {
            if (error) log('debug', 'ws.send_failed', { requestId: requestIdOf(req), error: error.message })
            ;(done as () => void)()
          })
        }) as typeof client.send
        wss.emit('connection', client, req)
      })
    },
    /**
     * Closes every socket as graphql-ws's own dispose does (1001 Going Away), and waits for them to be gone.
     * A client that does not answer the close handshake (one that has stopped reading) is cut off after a
     * moment, or the server would wait for it.
     */
    async close(): Promise<void> {
      const disposed = graphqlWs.dispose()
      const deadline = Date.now() + CLOSE_HANDSHAKE_MS
      while (wss.clients.size > 0 && Date.now() < deadline) await sleep(20)
      for (const client of wss.clients) client.terminate()
      await disposed
    },
  }
}
