/**
 * Live state of every upload over graphql-ws (uploadProgress without an id): first the unfinished ones,
 * then every change. No polling: the page asks the server again only when this says something changed.
 */
import { createClient } from 'graphql-ws'
import { authHeaders, FIELDS, type Upload } from './api.js'

export interface LiveEvents {
  update(upload: Upload): void
  /** The socket is (again) open; after a reconnect, changes may have been missed meanwhile. */
  connected(again: boolean): void
  /** The server closed the socket for want of the right token (4403). */
  unauthorized(): void
  /** Live updates stopped for good. */
  failed(reason: string): void
}

const FORBIDDEN = 4403
const closeCode = (event: unknown) =>
  typeof event === 'object' && event !== null && 'code' in event ? Number(event.code) : undefined

/** Follows every upload until the returned function is called. */
export function followUploads(events: LiveEvents): () => void {
  let connections = 0
  let stopped = false
  const client = createClient({
    url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/graphql`,
    connectionParams: () => authHeaders(),
    retryAttempts: Infinity,
    shouldRetry: (event) => closeCode(event) !== FORBIDDEN,
    on: {
      connected: () => events.connected(connections++ > 0),
      closed: (event) => {
        if (!stopped && closeCode(event) === FORBIDDEN) events.unauthorized()
      },
    },
  })
  const unsubscribe = client.subscribe<{ uploadProgress: Upload }>(
    { query: `subscription { uploadProgress { ${FIELDS} } }` },
    {
      next: ({ data }) => {
        if (data) events.update(data.uploadProgress)
      },
      error: (error) => {
        if (stopped || closeCode(error) === FORBIDDEN) return
        events.failed(error instanceof Error ? error.message : 'the connection closed')
      },
      complete: () => undefined,
    },
  )
  return () => {
    stopped = true
    unsubscribe()
    void client.dispose()
  }
}
