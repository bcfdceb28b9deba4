import { GraphQLError } from 'graphql'
import { maskError as yogaMaskError } from 'graphql-yoga'
import { ServiceError } from '../errors.js'

/**
 * The one place errors become what clients see. A ServiceError keeps its message and stable code. A
 * GraphQLError the client caused (a bad variable, an unknown field) gets BAD_USER_INPUT unless GraphQL gave
 * it a code already. Anything else is our fault: yoga masks it as INTERNAL_SERVER_ERROR, hiding details.
 */
export function maskError(error: unknown, message: string, isDev?: boolean): GraphQLError {
  const original = error instanceof GraphQLError ? error.originalError : error
  if (original instanceof ServiceError) {
    return new GraphQLError(original.message, {
      ...(error instanceof GraphQLError ? { nodes: error.nodes, path: error.path } : {}),
      extensions: { code: original.code },
    })
  }
  const masked = yogaMaskError(error, message, isDev)
  if (!(masked instanceof GraphQLError))
    return new GraphQLError(message, { extensions: { code: 'INTERNAL_SERVER_ERROR' } })
  if (masked.extensions.code !== undefined) return masked
  return new GraphQLError(masked.message, {
    nodes: masked.nodes,
    path: masked.path,
    extensions: { ...masked.extensions, code: 'BAD_USER_INPUT' },
  })
}

/** The code a client sees for an error, after masking. */
export const codeOf = (error: GraphQLError): string => String(error.extensions.code)
