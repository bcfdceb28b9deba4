import { EnvelopArmorPlugin } from '@escape.tech/graphql-armor'
import { renderGraphiQL } from '@graphql-yoga/render-graphiql'
import { createGraphQLError, createYoga, type Plugin } from 'graphql-yoga'
import { isMultipart, type IngestLimits } from '../uploads/ingest.js'
import type { Context } from './context.js'
import { maskError, serverErrorLogger } from './errors.js'
import { useStreamingUploads, type NodeServerContext } from './multipart.js'
import { schema } from './schema.js'

/** JSON and form bodies (not file uploads) larger than this are refused before they are read. */
const MAX_OPERATION_BYTES = 1024 * 1024

/** yoga's own body limit has to be off (see useStreamingUploads); this keeps one for everything else. */
function useOperationSizeLimit(): Plugin {
  return {
    onRequestParse({ request }) {
      if (isMultipart(request.headers.get('content-type'))) return
      const length = Number(request.headers.get('content-length') ?? 0)
      if (length > MAX_OPERATION_BYTES) {
        throw createGraphQLError(`Request body is larger than ${MAX_OPERATION_BYTES} bytes`, {
          extensions: { code: 'PAYLOAD_TOO_LARGE', http: { status: 413 } },
        })
      }
    },
  }
}

export function createGraphQL(context: Context, limits: IngestLimits) {
  return createYoga<NodeServerContext, Context>({
    schema,
    graphqlEndpoint: '/graphql',
    context,
    maskedErrors: { maskError },
    maxRequestBodySize: false,
    // Depth, aliases, cost, tokens and directives are bounded by GraphQL Armor's defaults (depth 6, 15
    // aliases, cost 5000, 1000 tokens, 50 directives); they apply to graphql-ws too, through the envelop.
    plugins: [useStreamingUploads(limits), useOperationSizeLimit(), EnvelopArmorPlugin()],
    // CORS is decided once for /api and /graphql alike, in the http server (src/cors.ts).
    cors: false,
    // GraphiQL's assets are bundled (no CDN) and its subscriptions use graphql-ws on this same path.
    renderGraphiQL,
    graphiql: { title: 'Upload service', subscriptionsProtocol: 'WS' },
    landingPage: false,
    logging: serverErrorLogger(),
  })
}

export type GraphQLApp = ReturnType<typeof createGraphQL>
