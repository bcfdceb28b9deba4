import { GraphQLError } from 'graphql'
import { maskError as yogaMaskError } from 'graphql-yoga'
import { ServiceError } from '../errors.js'

/** A GraphQLError that graphql-js raised itself (bad variable, unknown field) or that wraps another one. */
function isOriginalGraphQLError(error: GraphQLError): boolean {
  const original = error.originalError
  return original === undefined || (original instanceof GraphQLError && isOriginalGraphQLError(original))
}

/**
 * The one place errors become what clients see. A ServiceError keeps its message and stable code; a
 * GraphQLError the client caused gets BAD_USER_INPUT unless GraphQL gave it a code already. Either is
 * returned as the same object, so yoga does not log a client's mistake as a server error. Anything else is
 * our fault: yoga masks it as INTERNAL_SERVER_ERROR, hides its details, and logs it.
 */
export function maskError(error: unknown, message: string, isDev?: boolean): Error {
  if (error instanceof GraphQLError) {
    const extensions = error.extensions as Record<string, unknown>
    if (error.originalError instanceof ServiceError) {
      extensions.code = error.originalError.code
      return error
    }
    if (isOriginalGraphQLError(error)) {
      extensions.code ??= 'BAD_USER_INPUT'
      return error
    }
  }
  if (error instanceof ServiceError)
    return new GraphQLError(error.message, { extensions: { code: error.code } })
  return yogaMaskError(error, message, isDev)
}

/** The code a client sees for an error, after masking. */
export const codeOf = (error: Error): string =>
  error instanceof GraphQLError ? String(error.extensions.code) : 'INTERNAL_SERVER_ERROR'
