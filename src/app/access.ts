import { createHash, createHmac, timingSafeEqual } from 'node:crypto'

const digest = (text: string) => createHash('sha256').update(text).digest()

/**
 * Whether a presented credential is the API token, compared in constant time: both sides are hashed first,
 * so neither the token's length nor where a guess goes wrong shows in the timing.
 */
export function tokenMatches(presented: string | undefined, token: string): boolean {
  return presented !== undefined && timingSafeEqual(digest(presented), digest(token))
}

/** The token in `Authorization: Bearer <token>`, if that is what the header holds. */
export function bearerToken(header: string | undefined): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '')
  return match?.[1]
}

/** How long a signed download link works. */
const DOWNLOAD_LINK_SECONDS = 3600

const sign = (token: string, id: string, expires: number) =>
  createHmac('sha256', token).update(`download:${id}:${expires}`).digest('base64url')

/**
 * A download link that needs no header: with API_TOKEN set, a plain link (a browser's download, curl -O)
 * cannot carry a bearer token, so the link carries an expiring HMAC of the upload id, keyed by the token.
 */
export function signedDownloadPath(id: string, token: string, now = Date.now()): string {
  const expires = Math.floor(now / 1000) + DOWNLOAD_LINK_SECONDS
  return `/api/files/${encodeURIComponent(id)}/download?expires=${expires}&signature=${sign(token, id, expires)}`
}

/** Whether a download request carries a valid, unexpired signature for this upload id. */
export function downloadSignatureValid(
  id: string,
  query: URLSearchParams,
  token: string,
  now = Date.now(),
): boolean {
  const expires = Number(query.get('expires'))
  const signature = query.get('signature')
  if (!Number.isSafeInteger(expires) || expires * 1000 < now || signature === null) return false
  return tokenMatches(signature, sign(token, id, expires))
}
