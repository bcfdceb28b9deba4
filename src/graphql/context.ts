import type { IncomingMessage, ServerResponse } from 'node:http'
import { principalOf, type Principal } from '../auth/principal.js'
import type { OwnedService } from '../core/owned.js'
import type { Outbox } from '../seams/outbox/index.js'

/** What the operators' hook queries need of the app: the outbox, and a nudge to its deliverer. */
export interface HookOps {
  outbox: Outbox
  /** A requeued event is sent now rather than at the next poll. */
  kick(): void
}

/** What every resolver gets, whichever transport ran it (HTTP, graphql-ws, SSE or the REST shim). */
export interface Context {
  /** The upload service as this caller may use it: their own uploads, or an admin's everyone's. */
  service: OwnedService
  /** Who is calling (the router's finding, or graphql-ws's connection_init); the operator where auth is off. */
  principal: Principal
  /**
   * Where a completed upload can be downloaded (signed when API_TOKEN is set, see app/access.ts): absolute when
   * the public address is known (PUBLIC_URL, or a trusted proxy's headers on `req`), else from the root.
   */
  downloadUrl: (upload: { id: string; owner?: string | null }, req: IncomingMessage | undefined) => string
  /** The hooks' outbox, for the operators' queries (HOOKS_URL); absent without hooks. */
  hooks?: HookOps
  /** The request (HTTP, SSE) or the socket's upgrade request (graphql-ws); none in the REST shim. */
  req?: IncomingMessage
}

/** What the Node http server hands yoga with each request: the plugins that read or answer it use these. */
export interface NodeServerContext {
  req: IncomingMessage
  res: ServerResponse
}

/** The context of one call by `principal` (`req`: the request, when links are to be absolute to it). */
export type ContextFor = (principal: Principal, req?: IncomingMessage, bodyLength?: number) => Context

/**
 * The context of one GraphQL request, for yoga and for the direct path (direct.ts) alike, so that both see
 * the same caller: over HTTP and SSE the one the router found on `req`, over graphql-ws who opened the socket.
 */
export const requestContext = (
  contextFor: ContextFor,
  initial: { req?: IncomingMessage; principal?: Principal },
): Context => contextFor(initial.principal ?? principalOf(initial.req), initial.req)
