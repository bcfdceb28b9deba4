import type { IncomingMessage } from 'node:http'
import type { UploadService } from '../core/service.js'

/** What every resolver gets, whichever transport ran it (HTTP, graphql-ws, SSE or the REST shim). */
export interface Context {
  service: UploadService
  /**
   * Where a completed upload can be downloaded (signed when API_TOKEN is set, see access.ts): absolute when
   * the public address is known (PUBLIC_URL, or a trusted proxy's headers on `req`), else from the root.
   */
  downloadUrl: (id: string, req: IncomingMessage | undefined) => string
  /** The request (HTTP, SSE) or the socket's upgrade request (graphql-ws); none in the REST shim. */
  req?: IncomingMessage
}
