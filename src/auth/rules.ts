import { notFound, ServiceError } from '../errors.js'
import { grantOpens } from './links.js'
import { SCOPE_NAMES, type Principal } from './principal.js'

/**
 * What the rules need of an upload: its id and owner (a token's `sub`). A record made by the operator, or before
 * auth was turned on, has none (null, or no field yet): only an admin reaches it.
 */
export interface Owned {
  readonly id: string
  readonly owner?: string | null
}

const owns = (principal: Principal, record: Owned) =>
  principal.sub !== null && (record.owner ?? null) === principal.sub

/** Whether the caller may see this upload: list it, follow it, download it. */
export const mayRead = (principal: Principal, record: Owned): boolean =>
  principal.link !== undefined
    ? grantOpens(principal.link, record)
    : principal.scopes.admin || (principal.scopes.read && owns(principal, record))

/** Whether the caller may pause, resume, re-speed, cancel or delete this upload. */
export const mayControl = (principal: Principal, record: Owned): boolean =>
  principal.scopes.admin || (principal.scopes.write && owns(principal, record))

export type Need = 'read' | 'write'

/**
 * FORBIDDEN when the token lacks the scope a kind of call needs. Asked before any lookup, so its answer is the
 * same for every id: it tells nothing of which uploads exist.
 */
export function requireScope(principal: Principal, need: Need): void {
  if (principal.scopes.admin || principal.scopes[need]) return
  throw new ServiceError('FORBIDDEN', `This token lacks the ${SCOPE_NAMES[need]} scope`)
}

/** FORBIDDEN unless the caller is an admin (the operator, or a token with uploads:admin). */
export function requireAdmin(principal: Principal): void {
  if (!principal.scopes.admin) throw new ServiceError('FORBIDDEN', 'This token lacks the uploads:admin scope')
}

/**
 * The upload, if the caller may `need` it. Another user's upload answers exactly as a missing one (the same
 * NOT_FOUND, the same message), on every transport, so ids never leak.
 */
export function reachable<T extends Owned>(
  principal: Principal,
  need: Need,
  id: string,
  record: T | undefined,
): T {
  requireScope(principal, need)
  const allowed = need === 'read' ? mayRead : mayControl
  if (record === undefined || !allowed(principal, record)) throw notFound(id)
  return record
}

/** Whose uploads a list holds: one owner's (null: the operator's), or everyone's. */
export type ListFilter = { kind: 'all' } | { kind: 'owner'; owner: string | null }

/**
 * A user lists their own uploads; an admin lists everyone's, or one owner's with `ownerFilter`. A user naming
 * another owner is refused (FORBIDDEN, whatever that owner has), not quietly shown their own.
 */
export function listFilter(principal: Principal, ownerFilter?: string): ListFilter {
  requireScope(principal, 'read')
  if (principal.link !== undefined) throw new ServiceError('FORBIDDEN', 'A download link opens one file only')
  if (principal.scopes.admin)
    return ownerFilter === undefined ? { kind: 'all' } : { kind: 'owner', owner: ownerFilter }
  if (ownerFilter !== undefined && ownerFilter !== principal.sub) {
    throw new ServiceError('FORBIDDEN', "Only an admin token may list another owner's uploads")
  }
  return { kind: 'owner', owner: principal.sub }
}

export const inList = (filter: ListFilter, record: Owned): boolean =>
  filter.kind === 'all' || (record.owner ?? null) === filter.owner
