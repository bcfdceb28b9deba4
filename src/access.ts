import { createHash, timingSafeEqual } from 'node:crypto'

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
