import type { IncomingMessage, ServerResponse } from 'node:http'
import type { UploadService } from '../core/service.js'

/** What every resolver gets, whichever transport ran it (HTTP, graphql-ws, SSE or the REST shim). */
export interface Context {
  service: UploadService
  /**
   * Where a completed upload can be downloaded (signed when API_TOKEN is set, see app/access.ts): absolute when
   * the public address is known (PUBLIC_URL, or a trusted proxy's headers on `req`), else from the root.
   */
  downloadUrl: (id: string, req: IncomingMessage | undefined) => string
  /** The request (HTTP, SSE) or the socket's upgrade request (graphql-ws); none in the REST shim. */
  req?: IncomingMessage
}

/** What the Node http server hands yoga with each request: the plugins that read or answer it use these. */
export interface NodeServerContext {
  req: IncomingMessage
  res: ServerResponse
}
