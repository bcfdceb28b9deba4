import type { Plugin } from 'graphql-yoga'
import { quote, type ErrorCode } from '../errors.js'
import type { NodeServerContext } from './context.js'

/**
 * yoga refuses a body it cannot read (415) and an Accept it cannot meet (406) with an empty body. Every
 * refusal says why, as a GraphQL error with its code. A 406 goes out as application/json all the same:
 * the client accepts nothing this server can say, and GraphQL over HTTP lets a server answer in
 * application/json regardless of Accept.
 */
export function useExplainedRefusals(): Plugin<Record<string, unknown>, NodeServerContext> {
  return {
    onResponse({ request, response, setResponse, fetchAPI }) {
      if ((response.status !== 415 && response.status !== 406) || response.body !== null) return
      const type = request.headers.get('content-type')
      const [code, message]: [ErrorCode, string] =
        response.status === 415
          ? [
              'UNSUPPORTED_MEDIA_TYPE',
              `A GraphQL request's body cannot be ${type === null ? 'sent without a Content-Type' : `of type ${quote(type)}`}: send application/json (or multipart/form-data, to upload files), or a GET with the query in the URL`,
            ]
          : [
              'NOT_ACCEPTABLE',
              `No answer can be given in what the Accept header asks for (${quote(request.headers.get('accept') ?? '')}): accept application/json or application/graphql-response+json (text/event-stream or multipart/mixed for subscriptions)`,
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
