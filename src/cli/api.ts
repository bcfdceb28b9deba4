import { createClient, type Client } from 'graphql-ws'
import WebSocket from 'ws'
import { CliError, oneLine } from './errors.js'

export type UploadStatus = 'RECEIVING' | 'IN_PROGRESS' | 'PAUSED' | 'COMPLETED' | 'CANCELED' | 'FAILED'

export const STATUSES: readonly UploadStatus[] = [
  'RECEIVING',
  'IN_PROGRESS',
  'PAUSED',
  'COMPLETED',
  'CANCELED',
  'FAILED',
]

/** An upload as upctl asks for it (schema/schema.graphql, type Upload). */
export interface Upload {
  id: string
  filename: string
  status: UploadStatus
  receivedSize: number
  uploadedSize: number
  totalSize: number
  currentSpeed: number
  targetSpeed: number
  sha256: string
  error: string | null
  createdAt: string
  removed: boolean
}

export const UPLOAD_FIELDS =
  'id filename status receivedSize uploadedSize totalSize currentSpeed targetSpeed sha256 error createdAt removed'

/** Whether an upload has ended: nothing about it changes any more. */
export const ended = (status: UploadStatus): boolean =>
  status === 'COMPLETED' || status === 'CANCELED' || status === 'FAILED'

interface GraphQLError {
  message: string
  extensions?: { code?: string }
}

interface GraphQLAnswer {
  data?: Record<string, unknown> | null
  errors?: GraphQLError[]
}

/** Where the service is, and how to prove who we are. */
export interface Target {
  /** http(s)://host:port, without a trailing slash. */
  server: string
  token: string | undefined
}

/** Headers every request carries: the token, when there is one. */
export const authHeaders = (target: Target): Record<string, string> =>
  target.token === undefined ? {} : { authorization: `Bearer ${target.token}` }

/**
 * Why a connection failed, in a few words: "connection refused", "getaddrinfo ENOTFOUND example". fetch
 * gives an Error with the socket's as its cause; graphql-ws gives the WebSocket's error event, a plain object
 * with the Error in `error` (and a `message`), which would print as "[object Object]".
 */
function networkReason(error: unknown): string {
  const unwrapped =
    typeof error === 'object' && error !== null && !(error instanceof Error)
      ? ((error as { error?: unknown }).error ?? error)
      : error
  const cause = unwrapped instanceof Error && unwrapped.cause instanceof Error ? unwrapped.cause : unwrapped
  const code = (cause as { code?: unknown } | undefined)?.code
  if (code === 'ECONNREFUSED') return 'connection refused'
  if (typeof code === 'string' && cause instanceof Error) return `${code}: ${oneLine(cause)}`
  const message = typeof cause === 'string' ? cause : (cause as { message?: unknown } | undefined)?.message
  return (typeof message === 'string' && oneLine(message)) || 'the connection was lost'
}

export const unreachable = (target: Target, error: unknown): CliError =>
  new CliError(`cannot reach the server at ${target.server} (${networkReason(error)})`)

/** One GraphQL error as the line upctl prints, with a hint where the fix is on our side. */
function explain(error: GraphQLError): CliError {
  const code = error.extensions?.code
  if (code === 'UNAUTHENTICATED')
    return new CliError(`${error.message} (give the service's token with --token or API_TOKEN)`)
  return new CliError(oneLine(error.message))
}

/** GraphQL over HTTP (POST /graphql, JSON) and graphql-ws subscriptions on the same path. */
export class Api {
  private ws: Client | undefined

  constructor(readonly target: Target) {}

  /** Runs a query or mutation; its `data`, or a CliError with the server's own words. */
  async request<T>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
    let response: Response
    try {
      response = await fetch(`${this.target.server}/graphql`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/graphql-response+json, application/json',
          ...authHeaders(this.target),
        },
        body: JSON.stringify({ query, variables }),
      })
    } catch (error) {
      throw unreachable(this.target, error)
    }
    const text = await response.text().catch(() => '')
    let answer: GraphQLAnswer
    try {
      answer = JSON.parse(text) as GraphQLAnswer
    } catch {
      throw new CliError(
        `${this.target.server}/graphql answered ${response.status} ${response.statusText} without GraphQL: is --server the upload service?`,
      )
    }
    const [first] = answer.errors ?? []
    if (first) throw explain(first)
    if (!answer.data)
      throw new CliError(`${this.target.server}/graphql answered ${response.status} without data`)
    return answer.data as T
  }

  /** Checks that the server answers and takes our token, before anything is sent. */
  async ping(): Promise<void> {
    await this.request<{ __typename: string }>('query Ping { __typename }')
  }

  async upload(id: string): Promise<Upload> {
    const { upload } = await this.request<{ upload: Upload }>(
      `query Upload($id: ID!) { upload(id: $id) { ${UPLOAD_FIELDS} } }`,
      { id },
    )
    return upload
  }

  /**
   * Follows `uploadProgress` over graphql-ws: the upload's current state first, then every change, until it
   * ends (with an id) or `stop` is called. Resolves when the subscription completes.
   */
  follow(
    id: string | undefined,
    onEvent: (upload: Upload) => void,
  ): { done: Promise<void>; stop: () => void } {
    let stop: () => void = () => undefined
    const done = new Promise<void>((resolve, reject) => {
      stop = this.client().subscribe<{ uploadProgress: Upload }>(
        {
          query: `subscription Progress($id: ID) { uploadProgress(id: $id) { ${UPLOAD_FIELDS} } }`,
          variables: { id },
        },
        {
          next: ({ data, errors }) => {
            const [first] = errors ?? []
            if (first) reject(explain(first))
            else if (data) onEvent(data.uploadProgress)
          },
          error: (error) => reject(this.socketError(error)),
          complete: resolve,
        },
      )
    })
    return { done, stop: () => stop() }
  }

  /**
   * follow(), started again when the server completes the subscription before the upload has ended (or,
   * without an id, at all): an instance that shuts down completes its subscriptions, and the upload goes on
   * elsewhere or after its restart. Gives up after a few such ends in a row with nothing in between.
   */
  followToEnd(
    id: string | undefined,
    onEvent: (upload: Upload) => void,
  ): { done: Promise<void>; stop: () => void } {
    let current: { stop: () => void } | undefined
    let stopped = false
    let over = false
    const done = (async () => {
      for (let quiet = 0; ;) {
        let heard = false
        const follow = this.follow(id, (upload) => {
          heard = true
          if (id !== undefined && (ended(upload.status) || upload.removed)) over = true
          onEvent(upload)
        })
        current = follow
        await follow.done
        if (stopped || over) return
        quiet = heard ? 0 : quiet + 1
        if (quiet >= 5)
          throw new CliError(
            `${this.target.server} keeps ending the live progress of ${id === undefined ? 'the uploads' : `upload ${id}`}; try again later`,
          )
        await new Promise((resolve) => setTimeout(resolve, Math.min(500 * 2 ** quiet, 5000)))
        if (stopped) return
      }
    })()
    return {
      done,
      stop: () => {
        stopped = true
        current?.stop()
      },
    }
  }

  /** Closes the WebSocket, if one was opened. */
  async close(): Promise<void> {
    await this.ws?.dispose()
    this.ws = undefined
  }

  private client(): Client {
    this.ws ??= createClient({
      url: this.target.server.replace(/^http/, 'ws') + '/graphql',
      webSocketImpl: WebSocket,
      connectionParams:
        this.target.token === undefined ? {} : { authorization: `Bearer ${this.target.token}` },
      lazy: true,
      // A dropped socket is opened again, and the subscriptions resubscribe (each starts with the current
      // state, so nothing is missed); a refused token is not worth retrying.
      retryAttempts: 5,
      shouldRetry: (event) => !isClose(event) || event.code !== 4403,
    })
    return this.ws
  }

  private socketError(error: unknown): CliError {
    if (Array.isArray(error)) {
      const [first] = error as GraphQLError[]
      return first ? explain(first) : new CliError('the subscription failed')
    }
    if (isClose(error)) {
      if (error.code === 4403)
        return new CliError(
          'the server refused the live connection: give the service token with --token or API_TOKEN',
        )
      const reason = error.reason ? `: ${error.reason}` : ''
      return new CliError(`lost the live connection to ${this.target.server} (closed ${error.code}${reason})`)
    }
    return unreachable(this.target, error)
  }
}

function isClose(value: unknown): value is { code: number; reason: string } {
  return typeof value === 'object' && value !== null && 'code' in value && typeof value.code === 'number'
}
