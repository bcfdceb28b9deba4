import { GraphQLError, GraphQLScalarType, Kind, type ValueNode } from 'graphql'
import { IncomingFile } from '../core/ingest/ingest.js'

function safeInteger(value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw new GraphQLError(`SafeInt must be a whole number within ±(2^53 - 1); got ${JSON.stringify(value)}`)
  }
  return value
}

export const SafeInt = new GraphQLScalarType<number, number>({
  name: 'SafeInt',
  serialize: safeInteger,
  parseValue: safeInteger,
  parseLiteral(ast: ValueNode) {
    if (ast.kind !== Kind.INT) throw new GraphQLError('SafeInt must be a whole number', { nodes: ast })
    return safeInteger(Number(ast.value))
  },
})

export const DateTime = new GraphQLScalarType<string, string>({
  name: 'DateTime',
  serialize(value) {
    if (typeof value !== 'string') throw new GraphQLError('DateTime must be an ISO 8601 string')
    return value
  },
  parseValue(value) {
    if (typeof value !== 'string' || Number.isNaN(Date.parse(value))) {
      throw new GraphQLError('DateTime must be an ISO 8601 string')
    }
    return new Date(value).toISOString()
  },
})

/** Only the multipart ingest can produce a File: a JSON value or a literal in the query never is one. */
export const File = new GraphQLScalarType<IncomingFile, never>({
  name: 'File',
  parseValue(value) {
    if (value instanceof IncomingFile) return value
    throw new GraphQLError(
      'File must be a file part of a multipart request (see the GraphQL multipart request spec)',
    )
  },
  parseLiteral() {
    throw new GraphQLError('File cannot be written in the query; send it as a multipart file part')
  },
  serialize() {
    throw new GraphQLError('File is an input-only scalar')
  },
})
