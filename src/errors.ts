import { log } from './log.js'
import type { UploadStatus } from './model/record.js'

/**
 * The one list of errors a client can cause. Each code is stable (clients switch on it), is documented in
 * README's GraphQL API section (test/errors.test.ts checks it), and maps once at each edge: GraphQL puts it
 * in `extensions.code`, REST and the http edge answer with its status and `{"detail": message}`
 * (app/answers.ts). Only INTERNAL_SERVER_ERROR, yoga's own for the server's faults, is not listed here.
 */
export const errorCatalogue = {
  NOT_FOUND: 404,
  INVALID_STATE: 400,
  BAD_USER_INPUT: 422,
  PAYLOAD_TOO_LARGE: 413,
  /** A chunked upload (no Content-Length) by a user with a stored-bytes quota, which needs its size first. */
  LENGTH_REQUIRED: 411,
  /** No credential, or one that does not hold (a bad, expired or foreign token): see src/auth/verify.ts and jwt.ts. */
  UNAUTHENTICATED: 401,
  /**
   * A browser page on another origin, or a Host this service does not answer to (see app/origin.ts); or a token
   * without the scope a call needs (never for another user's upload: that one is NOT_FOUND).
   */
  FORBIDDEN: 403,
  /** One upload more than the caller's quota of uploads running at once (src/auth/quotas.ts). */
  TOO_MANY_UPLOADS: 429,
  /** The storage folder is full: the client did nothing wrong, but should know it may retry later. */
  INSUFFICIENT_STORAGE: 507,
  /** The server cannot do it now (its state store is unreachable or failing, or it is shutting down): retry. */
  UNAVAILABLE: 503,
  /** A GraphQL request whose body is in a media type GraphQL over HTTP does not take (text/plain, say). */
  UNSUPPORTED_MEDIA_TYPE: 415,
  /** A GraphQL request that accepts no media type its answer can come in (Accept: application/xml, say). */
  NOT_ACCEPTABLE: 406,
  /** An operation over a limit of size or shape (depth, aliases, tokens, directives, cost): graphql/limits.ts. */
  QUERY_TOO_COMPLEX: 400,
  /** A graphql-ws socket that asks for more subscriptions at once than one socket may hold (said over the socket). */
  TOO_MANY_SUBSCRIPTIONS: 429,
  /**
   * The user's hook (HOOKS_URL) refused the upload: the answer carries the hook's own 4xx status and message
   * (`rejected()`); 403 when a rejection crosses an edge without one.
   */
  REJECTED: 403,
} as const

export type ErrorCode = keyof typeof errorCatalogue

/** How an API names an upload's status in its messages: GraphQL by the schema's enum, REST by its own words. */
export type StatusWords = (status: UploadStatus) => string

/** A ServiceError as data, to cross from one instance to another (see bus.ts). */
export interface ServiceErrorData {
  code: ErrorCode
  message: string
  status?: UploadStatus
  httpStatus?: number
}

export class ServiceError extends Error {
  override readonly name = 'ServiceError'
  constructor(
    readonly code: ErrorCode,
    /** What happened; `{status}` in it stands for `status`, in the words of whichever API answers. */
    private readonly template: string,
    /** The request body itself is at fault (too large, malformed): GraphQL answers it with the HTTP status too. */
    readonly ofBody = false,
    /** The upload's status that the message names, if it names one. */
    readonly status?: UploadStatus,
    /** What went wrong inside (a disk's error, say): for the log only, never said to the client. */
    options?: ErrorOptions,
    /** The HTTP status to answer with, when it is not the code's own (a hook's rejection names its own). */
    readonly httpStatus: number = errorCatalogue[code],
  ) {
    // The message itself (GraphQL's, and the logs') names it as the schema's enum does.
    super(status === undefined ? template : template.replaceAll('{status}', status), options)
  }

  /** The message with the status named in an API's own words. */
  in(words: StatusWords): string {
    return this.status === undefined ? this.message : this.template.replaceAll('{status}', words(this.status))
  }

  toData(): ServiceErrorData {
    return {
      code: this.code,
      message: this.template,
      ...(this.status ? { status: this.status } : {}),
      ...(this.httpStatus !== errorCatalogue[this.code] ? { httpStatus: this.httpStatus } : {}),
    }
  }

  static fromData({ code, message, status, httpStatus }: ServiceErrorData): ServiceError {
    return new ServiceError(code, message, false, status, undefined, httpStatus)
  }
}

/** A refusal because of where an upload is: `{status}` in the message names its status. */
export const stateError = (message: string, status: UploadStatus) =>
  new ServiceError('INVALID_STATE', message, false, status)

export const bodyError = (code: ErrorCode, message: string) => new ServiceError(code, message, true)

/**
 * What a client sent, echoed in a message: quoted, and cut at `max` characters (an error message is no
 * place for a megabyte), with an ellipsis saying it was cut. The one way every message names a value.
 */
export const quote = (text: string, max = 80) =>
  JSON.stringify(text.length > max ? `${text.slice(0, max)}…` : text)

export const notFound = (id: string) => new ServiceError('NOT_FOUND', `Upload ${quote(id)} not found`)

export const badInput = (message: string) => new ServiceError('BAD_USER_INPUT', message)

/** The one error every refused credential answers with (401); the message says what is wrong, never the token. */
export const unauthenticated = (message: string) => new ServiceError('UNAUTHENTICATED', message)

/** The server cannot do it now: `message` is what the client hears, `cause` (logged with it) what happened. */
export const unavailable = (message: string, cause?: unknown) =>
  new ServiceError('UNAVAILABLE', message, false, undefined, cause === undefined ? undefined : { cause })

/** The user's hook refused: its message, answered with its status (a 4xx; 403 if it named none that is). */
export const rejected = (message: string, status: number) =>
  new ServiceError(
    'REJECTED',
    message,
    false,
    undefined,
    undefined,
    status >= 400 && status < 500 ? status : 403,
  )

/**
 * A failure inside the server whose message is written for clients (it names no path, no errno); what
 * else is known (a path, the error under it) travels beside it, for the log.
 */
export class InternalFault extends Error {
  override readonly name = 'InternalFault'
  constructor(
    message: string,
    readonly detail: Record<string, unknown> = {},
    options?: ErrorOptions,
  ) {
    super(message, options)
  }
}

/** What each kind of system error is, said without the path or errno it came with. */
function systemError(code: string): string {
  switch (code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return "The server's storage is full"
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return 'The server may not write to its storage'
    case 'ENOENT':
      return 'A file the server needs is missing from its storage'
    default:
      return "The server's storage failed"
  }
}

/**
 * The one place an error becomes words a client may read (an answer, a FAILED upload's reason, an event).
 * A ServiceError and an InternalFault are written for clients already; a system error (which names a
 * server path, and its errno) becomes a stable sentence; anything else is an internal error. The detail
 * belongs in the log: see `faultReason`, or the edges, which log every 5xx with its request id.
 */
export function publicMessage(error: unknown): string {
  if (error instanceof ServiceError || error instanceof InternalFault) return error.message
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return systemError(code)
  return 'An internal error occurred'
}

/**
 * An error inside the server that no request will report (a transfer's, a recovery's): logged whole as
 * `event`, with `fields` (the upload's id), and answered with what its upload's record may say of it.
 */
export function faultReason(error: unknown, event: string, fields: Record<string, unknown>): string {
  log('error', event, { ...fields, error })
  return publicMessage(error)
}

export function httpStatusOf(code: unknown): number {
  return typeof code === 'string' && code in errorCatalogue ? errorCatalogue[code as ErrorCode] : 500
}
