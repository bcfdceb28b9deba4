import { createGraphQLError, type Plugin } from 'graphql-yoga'
import type { NodeServerContext } from './context.js'

/** What yoga answers a JSON body that does not parse (400, BAD_REQUEST): the same mistake, the same answer. */
const notJson = (where: string, error: SyntaxError) =>
  createGraphQLError(`${where} "variables" or "extensions" is not valid JSON: ${error.message}`, {
    extensions: { code: 'BAD_REQUEST', http: { status: 400 } },
  })

/**
 * A GET's query string and a form body carry `variables` and `extensions` as JSON text, which yoga parses
 * with a bare JSON.parse (graphql-yoga's request-parser/utils.js): its SyntaxError would be masked as
 * INTERNAL_SERVER_ERROR, a 500, and logged as a server error. It is the client's mistake, answered as yoga
 * answers a JSON body that does not parse. Other bodies (JSON, multipart) have parsers of their own that
 * already say so.
 */
export function useJsonParams(): Plugin<Record<string, unknown>, NodeServerContext> {
  return {
    onRequestParse({ request, requestParser, setRequestParser }) {
      const type = request.headers.get('content-type')?.split(/[,;]/)[0]?.trim().toLowerCase()
      const where =
        request.method === 'GET'
          ? "The query string's"
          : request.method === 'POST' && type === 'application/x-www-form-urlencoded'
            ? "The form body's"
            : undefined
      if (!where || !requestParser) return
      setRequestParser(async (parsed) => {
        try {
          return await requestParser(parsed)
        } catch (error) {
          throw error instanceof SyntaxError ? notJson(where, error) : error
        }
      })
    },
  }
}
