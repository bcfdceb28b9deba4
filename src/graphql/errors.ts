import { GraphQLError } from 'graphql'
import { maskError as yogaMaskError, type YogaLogger } from 'graphql-yoga'
import { httpStatusOf, ServiceError } from '../errors.js'
import { RequestEnded } from '../core/ingest/ingest.js'
import { log, type LogLevel } from '../log.js'

/** A GraphQLError that graphql-js raised itself (bad variable, unknown field) or that wraps another one. */
function isOriginalGraphQLError(error: GraphQLError): boolean {
  const original = error.originalError
  return original === undefined || (original instanceof GraphQLError && isOriginalGraphQLError(original))
}

const fromService = (error: unknown): ServiceError | undefined =>
  error instanceof ServiceError
    ? error
    : error instanceof GraphQLError && error.originalError instanceof ServiceError
      ? error.originalError
      : undefined

/**
 * The one place errors become what clients see. A ServiceError becomes a plain GraphQLError with its message
 * and stable code (and no foreign originalError, which yoga would count as unexpected and answer with 500).
 * A GraphQLError the client caused gets BAD_USER_INPUT unless GraphQL gave it a code already. Anything else
 * is our fault: yoga masks it as INTERNAL_SERVER_ERROR and hides its details.
 */
export function maskError(error: unknown, message: string, isDev?: boolean): Error {
  const service = fromService(error)
  if (service) {
    const located = error instanceof GraphQLError ? error : undefined
    return new GraphQLError(service.message, {
      nodes: located?.nodes,
      source: located?.source,
      positions: located?.positions,
      path: located?.path,
      extensions: {
        code: service.code,
        ...(service.ofBody ? { http: { status: httpStatusOf(service.code) } } : {}),
      },
    })
  }
  if (error instanceof GraphQLError && isOriginalGraphQLError(error)) {
    // Some errors (graphql-jit's) come without an extensions object at all.
    const extensions = error.extensions as Record<string, unknown> | undefined
    if (extensions) {
      extensions.code ??= 'BAD_USER_INPUT'
      return error
    }
    const { nodes, source, positions, path } = error
    return new GraphQLError(error.message, {
      nodes,
      source,
      positions,
      path,
      extensions: { code: 'BAD_USER_INPUT' },
    })
  }
  return yogaMaskError(error, message, isDev)
}

/** A request whose client went away mid-body (see ingest.ts): nobody to answer, nothing to report. */
const endedRequest = (error: unknown): boolean =>
  error instanceof RequestEnded ||
  (error instanceof GraphQLError && error.originalError instanceof RequestEnded)

/** yoga's logger, writing our JSON lines. A client's mistake is not a server error, so it is not logged as one. */
export function serverErrorLogger(): YogaLogger {
  const at =
    (level: LogLevel) =>
    (...args: unknown[]) => {
      const [first, ...rest] = args
      log(
        level,
        'graphql',
        first instanceof Error ? { error: first, details: rest } : { message: args.map(String).join(' ') },
      )
    }
  return {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    // Errors of an operation are logged by useServerErrorLog, with the request id; a client's mistake is not
    // a server error; a client that went away mid-body has no one to tell.
    error: (...args: unknown[]) =>
      void (
        args.some((arg) => arg instanceof GraphQLError || fromService(arg) || endedRequest(arg)) ||
        at('error')(...args)
      ),
  }
}

/** The code a client sees for an error, after masking. */
export const codeOf = (error: Error): string =>
  error instanceof GraphQLError ? String(error.extensions.code) : 'INTERNAL_SERVER_ERROR'
