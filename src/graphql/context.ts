import type { UploadService } from '../uploads/service.js'

/** What every resolver gets, whichever transport ran it (HTTP, graphql-ws, SSE or the REST shim). */
export interface Context {
  service: UploadService
  /** Where a completed upload can be downloaded (signed when API_TOKEN is set, see access.ts). */
  downloadPath: (id: string) => string
}
