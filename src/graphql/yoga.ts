import type { IncomingMessage } from 'node:http'
import type { GraphQLError } from 'graphql'
import {
  createGraphQLError,
  createYoga,
  handleStreamOrSingleExecutionResult,
  type Plugin,
} from 'graphql-yoga'
import { httpStatusOf, type ErrorCode } from '../errors.js'
import { log } from '../log.js'
import { requestIdOf } from '../request-id.js'
import { isMultipart, type IngestOptions } from '../core/ingest/ingest.js'
import type { Context } from './context.js'
import { codeOf, maskError, serverErrorLogger } from './errors.js'
import { useOperationLimits } from './limits.js'
import { useStreamingUploads, type NodeServerContext } from './multipart.js'
import { schema } from './schema.js'

/** JSON and form bodies (not file uploads) larger than this are refused as they arrive. */
export const MAX_OPERATION_BYTES = 1024 * 1024

const tooLarge = () =>
  createGraphQLError(`Request body is larger than ${MAX_OPERATION_BYTES} bytes`, {
    extensions: { code: 'PAYLOAD_TOO_LARGE', http: { status: 413 } },
  })

/**
 * yoga's own body limit has to be off (it would also wrap multipart bodies, whose bytes busboy reads): this
 * one applies to every other body, and counts the bytes as they arrive, so a chunked body (no
 * Content-Length) is cut off at the limit too, never read whole into memory.
 */
function useOperationSizeLimit(): Plugin<Record<string, unknown>, NodeServerContext> {
  return {
    onRequestParse({ request, requestParser, setRequestParser, serverContext, fetchAPI }) {
      if (isMultipart(request.headers.get('content-type'))) return
      const refuse = () => {
        // The rest of the body is not wanted: the connection ends after the answer (closeInStages).
        serverContext?.res.setHeader('connection', 'close')
        return tooLarge()
      }
      const declared = request.headers.get('content-length')
      if (Number(declared ?? 0) > MAX_OPERATION_BYTES) throw refuse()
      // A declared length is all the body there can be (Node's parser holds the client to it): only a
      // chunked body needs counting. The counting stream would cost most requests a third of their time.
      if (declared !== null) return
      const body = request.body
      if (!requestParser || !body) return
      let bytes = 0
      // As yoga's own limit does: a native body needs the native TransformStream, a ponyfilled one its own.
      const Transform = body instanceof ReadableStream ? globalThis.TransformStream : fetchAPI.TransformStream
      const counted = body.pipeThrough(
        new Transform<Uint8Array, Uint8Array>({
          transform(chunk, controller) {
            bytes += chunk.byteLength
            if (bytes > MAX_OPERATION_BYTES) controller.error(refuse())
            else controller.enqueue(chunk)
          },
        }),
      )
      const limited = new fetchAPI.Request(request.url, {
        method: request.method,
        headers: request.headers,
        body: counted,
        // @ts-expect-error Node's fetch needs `duplex` for a streamed body; lib.dom's RequestInit lacks it.
        duplex: 'half',
      })
      setRequestParser(() => requestParser(limited))
    },
  }
}

/**
 * yoga refuses a body it cannot read (415) and an Accept it cannot meet (406) with an empty body. Every
 * refusal says why, as a GraphQL error with its code. A 406 goes out as application/json all the same:
 * the client accepts nothing this server can say, and GraphQL over HTTP lets a server answer in
 * application/json regardless of Accept.
 */
function useExplainedRefusals(): Plugin<Record<string, unknown>, NodeServerContext> {
  return {
    onResponse({ request, response, setResponse, fetchAPI }) {
      if ((response.status !== 415 && response.status !== 406) || response.body !== null) return
      const type = request.headers.get('content-type')
      const [code, message]: [ErrorCode, string] =
        response.status === 415
          ? [
              'UNSUPPORTED_MEDIA_TYPE',
              `A GraphQL request's body cannot be ${type === null ? 'sent without a Content-Type' : `of type ${JSON.stringify(type.slice(0, 80))}`}: send application/json (or multipart/form-data, to upload files), or a GET with the query in the URL`,
            ]
          : [
              'NOT_ACCEPTABLE',
              `No answer can be given in what the Accept header asks for (${JSON.stringify((request.headers.get('accept') ?? '').slice(0, 80))}): accept application/json or application/graphql-response+json (text/event-stream or multipart/mixed for subscriptions)`,
            ]
      const headers = new fetchAPI.Headers(response.headers)
      headers.set('content-type', 'application/json; charset=utf-8')
      setResponse(
        new fetchAPI.Response(JSON.stringify({ errors: [{ message, extensions: { code } }] }), {
          status: response.status,
          headers,
        }),
      )
    },
  }
}

/** An error that is the server's fault (not a client's mistake), as the client will see it masked. */
function isServerError(error: GraphQLError): boolean {
  return httpStatusOf(codeOf(maskError(error, 'Internal Server Error'))) >= 500
}

/**
 * Every server error on GraphQL (over HTTP, SSE or graphql-ws, which runs through this same envelop) is
 * logged with the real error, which the client only sees masked, and the id of the request or socket.
 */
function useServerErrorLog(): Plugin<Record<string, unknown>, NodeServerContext> {
  const report = (errors: readonly GraphQLError[] | undefined, context: unknown) => {
    for (const error of errors ?? []) {
      if (!isServerError(error)) continue
      const req = (context as { req?: IncomingMessage }).req
      log('error', 'graphql.error', {
        requestId: requestIdOf(req),
        path: error.path,
        error: error.originalError ?? error,
      })
    }
  }
  return {
    onExecute: () => ({
      onExecuteDone: (payload) =>
        handleStreamOrSingleExecutionResult(payload, ({ result }) =>
          report(result.errors, payload.args.contextValue),
        ),
    }),
    onSubscribe: () => ({
      onSubscribeResult: (payload) =>
        handleStreamOrSingleExecutionResult(payload, ({ result }) =>
          report(result.errors, payload.args.contextValue),
        ),
    }),
  }
}

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

export function createGraphQL(context: Context, limits: IngestOptions) {
  return createYoga<NodeServerContext, Context>({
    schema,
    graphqlEndpoint: '/graphql',
    context,
    maskedErrors: { maskError },
    maxRequestBodySize: false,
    // Depth, aliases, tokens and directives are bounded by GraphQL Armor's defaults (depth 6, 15 aliases,
    // 1000 tokens, 50 directives), cost by our own rule (limits.ts); they apply to graphql-ws too, through
    // the envelop.
    plugins: [
      useStreamingUploads(limits),
      useOperationSizeLimit(),
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
