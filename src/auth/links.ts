import { createHmac } from 'node:crypto'
import { sameSecret } from './secret.js'

/**
 * What a signed download link grants: this upload, while it is still this owner's, until `exp` (seconds since
 * the epoch). A plain link (a browser's download, curl -O) carries no header, so the grant rides in the query.
 */
export interface LinkGrant {
  id: string
  /** The upload's owner when the link was made (null: the operator's); a mismatch answers as a missing upload. */
  owner: string | null
  exp: number
}

/** How long a link works unless told otherwise. */
export const LINK_SECONDS = 3600

// HMAC rather than a JWT: the server is both signer and sole reader, so a compact MAC over a fixed shape says
// all it needs to; no algorithm header means no algorithm to confuse.
const mac = (key: Uint8Array, payload: string) =>
  createHmac('sha256', key).update(`download-link.${payload}`).digest('base64url')

/** `<payload>.<mac>`, both base64url: safe in a query without further escaping. */
export function signLink(grant: LinkGrant, key: Uint8Array): string {
  const payload = Buffer.from(JSON.stringify([grant.id, grant.owner, grant.exp])).toString('base64url')
  return `${payload}.${mac(key, payload)}`
}

/** A grant for one hour from `now` (ms). */
export const grantFor = (
  id: string,
  owner: string | null,
  now = Date.now(),
  seconds = LINK_SECONDS,
): LinkGrant => ({
  id,
  owner,
  exp: Math.floor(now / 1000) + seconds,
})

/**
 * The grant a link carries, if its MAC holds and it has not expired; undefined otherwise. Checked before any
 * lookup, so the answer to a bad link does not depend on which uploads exist.
 */
export function readLink(
  link: string | null | undefined,
  key: Uint8Array,
  now = Date.now(),
): LinkGrant | undefined {
  const [payload, signature, ...rest] = (link ?? '').split('.')
  if (!payload || !signature || rest.length > 0 || !sameSecret(signature, mac(key, payload))) return undefined
  let fields: unknown
  try {
    fields = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'))
  } catch {
    return undefined
  }
  if (!Array.isArray(fields) || fields.length !== 3) return undefined
  const [id, owner, exp] = fields as unknown[]
  if (typeof id !== 'string' || (owner !== null && typeof owner !== 'string')) return undefined
  if (typeof exp !== 'number' || !Number.isSafeInteger(exp) || exp * 1000 <= now) return undefined
  return { id, owner, exp }
}

/** Whether a valid grant opens this upload: the same id, still the same owner's. */
export const grantOpens = (grant: LinkGrant, record: { id: string; owner?: string | null }): boolean =>
  grant.id === record.id && grant.owner === (record.owner ?? null)
