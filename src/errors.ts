/**
 * The one list of errors a client can cause. Each code is stable (clients switch on it) and maps once at the
 * edge: GraphQL puts it in `extensions.code`, REST answers with its status and `{"detail": message}`.
 */
export const errorCatalogue = {
  NOT_FOUND: 404,
  INVALID_STATE: 400,
  BAD_USER_INPUT: 422,
  PAYLOAD_TOO_LARGE: 413,
  /** A browser page on another origin, or a Host this service does not answer to (see origin.ts). */
  FORBIDDEN: 403,
  /** The storage folder is full: the client did nothing wrong, but should know it may retry later. */
  INSUFFICIENT_STORAGE: 507,
  /** The server cannot do it now (its state store is unreachable or failing, or it is shutting down): retry. */
  UNAVAILABLE: 503,
  /** A GraphQL request whose body is in a media type GraphQL over HTTP does not take (text/plain, say). */
  UNSUPPORTED_MEDIA_TYPE: 415,
  /** A GraphQL request that accepts no media type its answer can come in (Accept: application/xml, say). */
  NOT_ACCEPTABLE: 406,
} as const

export type ErrorCode = keyof typeof errorCatalogue

export class ServiceError extends Error {
  override readonly name = 'ServiceError'
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** The request body itself is at fault (too large, malformed): GraphQL answers it with the HTTP status too. */
    readonly ofBody = false,
  ) {
    super(message)
  }
}

export const bodyError = (code: ErrorCode, message: string) => new ServiceError(code, message, true)

/** Echoes at most 80 characters of what the client sent: an error message is no place for a megabyte. */
const quote = (text: string) => JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text)

export const notFound = (id: string) => new ServiceError('NOT_FOUND', `Upload ${quote(id)} not found`)

export const badInput = (message: string) => new ServiceError('BAD_USER_INPUT', message)

export const unavailable = (message: string) => new ServiceError('UNAVAILABLE', message)

export function httpStatusOf(code: unknown): number {
  return typeof code === 'string' && code in errorCatalogue ? errorCatalogue[code as ErrorCode] : 500
}
