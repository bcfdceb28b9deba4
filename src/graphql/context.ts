import type { UploadService } from '../uploads/service.js'

/** What every resolver gets, whichever transport ran it (HTTP, graphql-ws, SSE or the REST shim). */
export interface Context {
  service: UploadService
}
