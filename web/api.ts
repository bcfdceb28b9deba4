/**
 * Talking to the server: GraphQL over HTTP for queries and actions, the access token for every call, and
 * what an answer means (a refused token is an AuthError, so the page can ask for the right one).
 */

export type Status = 'RECEIVING' | 'IN_PROGRESS' | 'PAUSED' | 'COMPLETED' | 'CANCELED' | 'FAILED'
export const FINAL: readonly Status[] = ['COMPLETED', 'CANCELED', 'FAILED']
export const isFinal = (status: Status) => FINAL.includes(status)

export interface Upload {
  id: string
  filename: string
  status: Status
  /** Bytes of the file the server has so far (all of them once it is past RECEIVING). */
  receivedSize: number
  uploadedSize: number
  totalSize: number
  currentSpeed: number
  targetSpeed: number
  downloadUrl: string | null
  error: string | null
  createdAt: string
  cursor: string
  /** Only in the live feed's last word on an upload that has left the record. */
  removed: boolean
}

/** Where an upload sorts within its group in the list (oldest first, as the API pages them). */
export const order = (u: Upload) => `${u.createdAt}|${u.id}`

export interface Counts {
  total: number
  receiving: number
  inProgress: number
  paused: number
  completed: number
  canceled: number
  failed: number
}

export const FIELDS =
  'id filename status receivedSize uploadedSize totalSize currentSpeed targetSpeed downloadUrl error createdAt cursor removed'
export const COUNTS = 'uploadCounts { total receiving inProgress paused completed canceled failed }'

/** The server wants a token (none was given) or refused the one given. */
export class AuthError extends Error {
  constructor(readonly hadToken: boolean) {
    super(hadToken ? 'The access token was refused' : 'This server needs an access token')
  }
}

const STORAGE_KEY = 'token'
let token = sessionStorage.getItem(STORAGE_KEY) ?? ''

export const getToken = () => token
export function setToken(value: string): void {
  token = value.trim()
  if (token) sessionStorage.setItem(STORAGE_KEY, token)
  else sessionStorage.removeItem(STORAGE_KEY)
}

export const authHeaders = (): Record<string, string> => (token ? { authorization: `Bearer ${token}` } : {})

/** Runs a GraphQL operation; rejects with its first error's message (an AuthError for a 401). */
export async function gql<T>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
  const response = await fetch('/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json', ...authHeaders() },
    body: JSON.stringify({ query, variables }),
  })
  if (response.status === 401) throw new AuthError(token !== '')
  const body = (await response.json().catch(() => ({}))) as {
    data?: T | null
    errors?: { message: string; extensions?: { code?: string } }[]
  }
  const error = body.errors?.[0]
  if (error?.extensions?.code === 'UNAUTHENTICATED') throw new AuthError(token !== '')
  if (error || !body.data) throw new Error(error?.message ?? `${response.status} ${response.statusText}`)
  return body.data
}
