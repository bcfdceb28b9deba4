import { createHash, timingSafeEqual } from 'node:crypto'

const digest = (text: string | Uint8Array) => createHash('sha256').update(text).digest()

/**
 * Whether two secrets are the same, in constant time: both are hashed first, so neither the length nor where a
 * guess goes wrong shows in the timing. (src/access.ts's tokenMatches does the same for API_TOKEN; round 2 makes it
 * this one.)
 */
export function sameSecret(
  presented: string | Uint8Array | undefined,
  expected: string | Uint8Array,
): boolean {
  return presented !== undefined && timingSafeEqual(digest(presented), digest(expected))
}

/** The token in `Authorization: Bearer <token>`, if that is what the header holds. */
export function bearerOf(header: string | undefined): string | undefined {
  return /^Bearer\s+(\S+)\s*$/i.exec(header ?? '')?.[1]
}
