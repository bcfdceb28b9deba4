import { createClient, type Client } from 'graphql-ws'
import WebSocket from 'ws'
import type { TypedDocumentString } from './gql/graphql.js'

/**
 * A small typed GraphQL client for this service: queries and mutations over fetch, file uploads as GraphQL
 * multipart requests, subscriptions over graphql-ws. Results and variables are typed by the documents.
 */
export interface UploadServiceClient {
  request<R, V>(document: TypedDocumentString<R, V>, variables: V): Promise<R>
  /** A mutation whose `file` variable is sent as the multipart file part. */
  upload<R, V extends { file: unknown }>(
    document: TypedDocumentString<R, V>,
    variables: V,
    file: Blob,
    filename: string,
  ): Promise<R>
  subscribe<R, V>(document: TypedDocumentString<R, V>, variables: V): AsyncGenerator<R>
  close(): Promise<void>
}

interface Answer<R> {
  data?: R | null
  errors?: { message: string; extensions?: { code?: string } }[]
}

export class GraphQLRequestError extends Error {
  constructor(readonly errors: NonNullable<Answer<unknown>['errors']>) {
    super(errors.map((e) => `${e.extensions?.code ?? 'ERROR'}: ${e.message}`).join('; '))
  }
}

function unwrap<R>(answer: Answer<R>): R {
  if (answer.errors?.length) throw new GraphQLRequestError(answer.errors)
  if (answer.data == null) throw new Error('The server answered with no data')
  return answer.data
}

export function connect(url: string, token?: string): UploadServiceClient {
  const endpoint = `${url.replace(/\/$/, '')}/graphql`
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {}
  let ws: Client | undefined
  const socket = () =>
    (ws ??= createClient({
      url: endpoint.replace(/^http/, 'ws'),
      webSocketImpl: WebSocket,
      connectionParams: token ? { authorization: `Bearer ${token}` } : {},
      retryAttempts: 0,
    }))

  return {
    async request<R, V>(document: TypedDocumentString<R, V>, variables: V): Promise<R> {
      const response = await fetch(endpoint, {
        method: 'POST',
        headers: {
          ...headers,
          'content-type': 'application/json',
          accept: 'application/graphql-response+json',
        },
        body: JSON.stringify({ query: document.toString(), variables }),
      })
      return unwrap((await response.json()) as Answer<R>)
    },
    async upload<R, V extends { file: unknown }>(
      document: TypedDocumentString<R, V>,
      variables: V,
      file: Blob,
      filename: string,
    ): Promise<R> {
      // https://github.com/jaydenseric/graphql-multipart-request-spec: operations, map, then the file.
      const form = new FormData()
      form.append(
        'operations',
        JSON.stringify({ query: document.toString(), variables: { ...variables, file: null } }),
      )
      form.append('map', JSON.stringify({ 0: ['variables.file'] }))
      form.append('0', file, filename)
      const response = await fetch(endpoint, { method: 'POST', headers, body: form })
      return unwrap((await response.json()) as Answer<R>)
    },
    async *subscribe<R, V>(document: TypedDocumentString<R, V>, variables: V): AsyncGenerator<R> {
      for await (const answer of socket().iterate({
        query: document.toString(),
        variables: variables as Record<string, unknown>,
      })) {
        yield unwrap(answer as Answer<R>)
      }
    },
    async close() {
      await ws?.dispose()
    },
  }
}
