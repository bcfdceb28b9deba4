import type { JWTPayload } from 'jose'
import type { IncomingMessage } from 'node:http'
import type { Quotas } from './config.js'
import type { LinkGrant } from './links.js'

export type { Quotas }

/** What a token lets its bearer do: `uploads:read`, `uploads:write`, `uploads:admin`. */
export interface Scopes {
  /** List, follow and download one's own uploads. */
  read: boolean
  /** Create uploads and control (pause, resume, speed, cancel, delete) one's own. */
  write: boolean
  /** Everything, on every user's uploads. */
  admin: boolean
}

/** Who is calling, once their credential is checked. */
export interface Principal {
  /**
   * The owner of what this caller creates: a token's `sub`. `null` is the operator (API_TOKEN, or a service
   * with no auth at all), whose uploads have no owner; no token's `sub` can be null, so none can pass for it.
   */
  sub: string | null
  scopes: Scopes
  quotas: Quotas
  /** A signed download link's bearer: this one upload, read only, while it is still the grant's owner's. */
  link?: LinkGrant
}

const NO_LIMITS: Quotas = { bytes: 0, running: 0, speed: 0 }

/** API_TOKEN's bearer, or anyone where no auth is configured: an admin without limits, as before auth existed. */
export const OPERATOR: Principal = Object.freeze({
  sub: null,
  scopes: Object.freeze({ read: true, write: true, admin: true }),
  quotas: Object.freeze(NO_LIMITS),
})

export const SCOPE_NAMES = { read: 'uploads:read', write: 'uploads:write', admin: 'uploads:admin' } as const

/** A claim the token carries but cannot be read as the gateway needs it: the token is refused, naming the claim. */
export class ClaimError extends Error {
  override readonly name = 'ClaimError'
}

/** Scopes from `scope` (RFC 8693: one space-separated string) or `scp` (a list, or such a string). */
export function scopesOf(claims: JWTPayload): Scopes {
  const words = new Set<string>()
  for (const name of ['scope', 'scp'] as const) {
    const claim = claims[name]
    if (claim === undefined) continue
    const items = typeof claim === 'string' ? claim.split(' ') : claim
    if (!Array.isArray(items) || !items.every((item) => typeof item === 'string')) {
      throw new ClaimError(
        `The token's ${name} claim must be a string of space-separated scopes or a list of strings`,
      )
    }
    for (const item of items) if (item) words.add(item)
  }
  return {
    read: words.has(SCOPE_NAMES.read),
    write: words.has(SCOPE_NAMES.write),
    admin: words.has(SCOPE_NAMES.admin),
  }
}

const QUOTA_FIELDS = ['bytes', 'running', 'speed'] as const

/**
 * The configured defaults, each overridden by the same field of the quota claim when present. A malformed claim
 * refuses the token rather than falling back to the defaults, which may be more generous than the issuer meant.
 */
export function quotasOf(claims: JWTPayload, claimName: string, defaults: Quotas): Quotas {
  const claim = claims[claimName]
  if (claim === undefined) return { ...defaults }
  if (typeof claim !== 'object' || claim === null || Array.isArray(claim)) {
    throw new ClaimError(
      `The token's ${claimName} claim must be an object such as {"bytes": 1073741824, "running": 2, "speed": 1048576}`,
    )
  }
  const quotas = { ...defaults }
  for (const [field, value] of Object.entries(claim)) {
    if (!(QUOTA_FIELDS as readonly string[]).includes(field)) {
      throw new ClaimError(
        `The token's ${claimName} claim has ${JSON.stringify(field.slice(0, 40))}; it takes bytes, running and speed`,
      )
    }
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
      throw new ClaimError(`The token's ${claimName}.${field} must be a whole number, 0 for no limit`)
    }
    quotas[field as (typeof QUOTA_FIELDS)[number]] = value
  }
  return quotas
}

/** A signed download link's bearer (see links.ts): no scope but reading the one upload the link grants. */
export const linkBearer = (grant: LinkGrant): Principal => ({
  sub: grant.owner,
  scopes: { read: true, write: false, admin: false },
  quotas: NO_LIMITS,
  link: grant,
})

// The router decides who a request is from once (app/router.ts); whatever serves it reads that here.
const principals = new WeakMap<IncomingMessage, Principal>()

export const setPrincipal = (req: IncomingMessage, principal: Principal) =>
  void principals.set(req, principal)

/** Who sent `req`, as the router found; a request it never checked (none where auth is off) is the operator. */
export const principalOf = (req: IncomingMessage | undefined): Principal =>
  (req && principals.get(req)) ?? OPERATOR
