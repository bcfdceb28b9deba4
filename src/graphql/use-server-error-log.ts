import type { IncomingMessage } from 'node:http'
import type { GraphQLError } from 'graphql'
import { handleStreamOrSingleExecutionResult, type Plugin } from 'graphql-yoga'
import { requestIdOf } from '../app/request-id.js'
import { httpStatusOf } from '../errors.js'
import { log } from '../log.js'
import type { NodeServerContext } from './context.js'
import { codeOf, maskError } from './errors.js'

/** An error that is the server's fault (not a client's mistake), as the client will see it masked. */
function isServerError(error: GraphQLError): boolean {
  return httpStatusOf(codeOf(maskError(error, 'Internal Server Error'))) >= 500
}

export interface ServerErrorLogOptions {
  /**
   * The log line's event, which operators search for (README, Observability).
   *
   * @default 'graphql.error'
   */
  event?: string
}

/**
 * Logs each of `errors` that is the server's fault, with the real error (the client sees it masked) and the
 * id of the request or socket in `context`. Also called by graphql-ws's shared subscriptions (ws.ts), whose
 * events are executed outside the envelop's execute.
 */
export function logServerErrors(
  errors: readonly GraphQLError[] | undefined,
  context: unknown,
  event = 'graphql.error',
): void {
  for (const error of errors ?? []) {
    if (!isServerError(error)) continue
    const req = (context as { req?: IncomingMessage } | undefined)?.req
    log('error', event, {
      requestId: requestIdOf(req),
      path: error.path,
      error: error.originalError ?? error,
    })
  }
}

/**
 * Every server error on GraphQL (over HTTP, SSE or graphql-ws, which runs through this same envelop) is
 * logged with the real error, which the client only sees masked, and the id of the request or socket.
 */
export function useServerErrorLog({ event = 'graphql.error' }: ServerErrorLogOptions = {}): Plugin<
  Record<string, unknown>,
  NodeServerContext
> {
  const report = (errors: readonly GraphQLError[] | undefined, context: unknown) =>
    logServerErrors(errors, context, event)
  return {
    onExecute: () => ({
      onExecuteDone: (payload) =>
        handleStreamOrSingleExecutionResult(payload, ({ result }) =>
          report(result.errors, payload.args.contextValue),
        ),
    }),
    onSubscribe: () => ({
      onSubscribeResult: (payload) =>
        handleStreamOrSingleExecutionResult(payload, ({ result }) =>
          report(result.errors, payload.args.contextValue),
        ),
    }),
  }
}
