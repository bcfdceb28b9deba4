import { createYoga } from 'graphql-yoga'
import type { IngestOptions } from '../core/ingest/ingest.js'
import type { Principal } from '../auth/principal.js'
import { requestContext, type Context, type ContextFor, type NodeServerContext } from './context.js'
import { maskError, serverErrorLogger } from './errors.js'
import { schema } from './schema.js'
import { useExplainedRefusals } from './use-explained-refusals.js'
import { useJsonParams } from './use-json-params.js'
import { useOperationLimits } from './use-operation-limits.js'
import { useOperationSizeLimit } from './use-operation-size-limit.js'
import { useServerErrorLog } from './use-server-error-log.js'
import { useStreamingUploads } from './use-streaming-uploads.js'

/** GraphiQL's page is 9 MB of bundled assets: loaded the first time someone opens it, not at start-up. */
const renderGraphiQL = async (
  options: Parameters<typeof import('@graphql-yoga/render-graphiql').renderGraphiQL>[0],
) => (await import('@graphql-yoga/render-graphiql')).renderGraphiQL(options)

/**
 * What GraphiQL opens with (until the user's own tabs are stored): a query, the upload mutation and the live
 * subscription. GraphiQL cannot attach a file, so the mutation comes with the curl command that sends it.
 */
export const GRAPHIQL_DEFAULT_DOCUMENT = `# Upload service: a throttled, pausable file-upload gateway.
# Run an operation with the ▶ button (or Ctrl+Enter); Docs, on the left, describes every field.

# Every upload on record, oldest first: how far each is and how fast it goes.
query Uploads {
  uploads(first: 20) {
    id
    filename
    status
    uploadedSize
    totalSize
    currentSpeed
    targetSpeed
    downloadUrl
  }
}

# Upload a file at a speed in bytes per second (0 is unlimited). The file goes in a multipart request,
# which GraphiQL cannot make: send this mutation from a shell (with this server's address; with API_TOKEN,
# add -H "Authorization: Bearer $TOKEN"):
#   curl http://localhost:8000/graphql \\
#     -F operations='{"query":"mutation Upload($file: File!, $speed: SafeInt) { uploadFile(file: $file, speed: $speed) { id status } }","variables":{"file":null,"speed":1048576}}' \\
#     -F map='{"0":["variables.file"]}' -F 0=@/path/to/file.zip
mutation Upload($file: File!, $speed: SafeInt) {
  uploadFile(file: $file, speed: $speed) {
    id
    status
  }
}

# Live progress of every upload (give id: "…" for one); runs until you stop it.
subscription Progress {
  uploadProgress {
    id
    filename
    status
    uploadedSize
    totalSize
    currentSpeed
  }
}
`

export function createGraphQL(contextFor: ContextFor, limits: IngestOptions) {
  return createYoga<NodeServerContext, Context>({
    schema,
    graphqlEndpoint: '/graphql',
    // Over HTTP and SSE the router found who sent the request; graphql-ws passes who opened the socket.
    context: (initial) => requestContext(contextFor, initial as typeof initial & { principal?: Principal }),
    maskedErrors: { maskError },
    maxRequestBodySize: false,
    // Depth, aliases, tokens and directives are bounded by GraphQL Armor's defaults (depth 6, 15 aliases,
    // 1000 tokens, 50 directives), cost by our own rule (use-operation-limits.ts); they apply to graphql-ws too, through
    // the envelop.
    plugins: [
      useStreamingUploads({ limits }),
      useOperationSizeLimit(),
      // After the size limit, so that it wraps the parser that counts the bytes.
      useJsonParams(),
      ...useOperationLimits(),
      useServerErrorLog(),
      useExplainedRefusals(),
    ],
    // CORS and origins are decided once for every route, in the http server (src/origin.ts).
    cors: false,
    // GraphiQL's assets are bundled (no CDN) and its subscriptions use graphql-ws on this same path.
    renderGraphiQL,
    graphiql: {
      title: 'Upload service · GraphiQL',
      subscriptionsProtocol: 'WS',
      // Without it GraphiQL writes its own welcome, with the title pasted into its sentence.
      defaultQuery: GRAPHIQL_DEFAULT_DOCUMENT,
    },
    landingPage: false,
    logging: serverErrorLogger(),
  })
}

export type GraphQLApp = ReturnType<typeof createGraphQL>
