import type { Server } from 'node:http'
import type { ExecutionArgs, ExecutionResult } from 'graphql'
import { useServer } from 'graphql-ws/use/ws'
import { WebSocketServer } from 'ws'
import type { GraphQLApp } from './yoga.js'

/** Pings every 12 s (graphql-ws's default) so proxies do not drop idle subscription sockets. */
const KEEP_ALIVE_MS = 12_000

/** RFC 6455: the endpoint is going away (a server shutting down). */
const GOING_AWAY = 1001

type Result =
  Promise<ExecutionResult | AsyncIterable<ExecutionResult>> | ExecutionResult | AsyncIterable<ExecutionResult>

interface EnvelopedRoot {
  execute: (args: ExecutionArgs) => Result
  subscribe: (args: ExecutionArgs) => Result
}

/**
 * graphql-ws on the same port and path as HTTP GraphQL. Each operation runs through yoga's envelop, so
 * WebSocket clients get the same schema, context, plugins and error masking as HTTP ones.
 */
export function attachGraphQLWs(server: Server, yoga: GraphQLApp, path = '/graphql') {
  const wss = new WebSocketServer({ server, path })
  const graphqlWs = useServer(
    {
      execute: (args) => (args.rootValue as EnvelopedRoot).execute(args),
      subscribe: (args) => (args.rootValue as EnvelopedRoot).subscribe(args),
      onSubscribe: async (ctx, _id, params) => {
        const { schema, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({
          ...ctx,
          req: ctx.extra.request,
          socket: ctx.extra.socket,
          params,
        })
        let document
        try {
          document = parse(params.query)
        } catch (error) {
          return [error as never]
        }
        const errors = validate(schema, document)
        if (errors.length > 0) return errors
        return {
          schema,
          document,
          operationName: params.operationName,
          variableValues: params.variables,
          contextValue: await contextFactory(),
          rootValue: { execute, subscribe } satisfies EnvelopedRoot,
        }
      },
    },
    wss,
    KEEP_ALIVE_MS,
  )

  return {
    /** Closes every socket with 1001 Going Away, as a restarting server should. */
    async close(): Promise<void> {
      for (const client of wss.clients) client.close(GOING_AWAY, 'Server is shutting down')
      await graphqlWs.dispose()
      await new Promise<void>((resolve) => wss.close(() => resolve()))
    },
  }
}
