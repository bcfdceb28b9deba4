/**
 * A bearer JWT checked with jose. Loaded, with jose's 46 modules, only by a server that has AUTH_* set
 * (see verify.ts): one without never holds them.
 */
import {
  createRemoteJWKSet,
  errors,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyGetKey,
  type KeyObject,
} from 'jose'
import { unauthenticated, unavailable, type ServiceError } from '../errors.js'
import { log } from '../log.js'
import type { JwtAuth } from './config.js'
import { ClaimError, quotasOf, scopesOf, type Principal } from './principal.js'

export interface VerifierOptions {
  /**
   * After a successful fetch of the key set, how long an unknown `kid` is refused without fetching again
   * (jose's `cooldownDuration`): a flood of made-up kids cannot hammer the issuer. @default 30000
   */
  jwksCooldownMs?: number
  /** How long cached keys are used before they are fetched again (jose's `cacheMaxAge`). @default 600000 */
  jwksMaxAgeMs?: number
  /** The key set's fetch is given up after this (jose's `timeoutDuration`). @default 5000 */
  jwksTimeoutMs?: number
}

export interface Verifier {
  /** A bearer JWT's principal, or UNAUTHENTICATED (or UNAVAILABLE while the key set cannot be fetched). */
  verify(token: string): Promise<Principal>
}

type Key = KeyObject | Uint8Array | JWTVerifyGetKey

function keyOf(auth: JwtAuth, options: VerifierOptions): Key {
  switch (auth.keys.kind) {
    case 'jwks':
      // jose caches the set, fetches it again once it is older than cacheMaxAge, and on a kid it does not hold
      // (outside the cooldown) fetches it once more before refusing; concurrent misses share one fetch.
      return createRemoteJWKSet(auth.keys.url, {
        cooldownDuration: options.jwksCooldownMs ?? 30_000,
        cacheMaxAge: options.jwksMaxAgeMs ?? 600_000,
        timeoutDuration: options.jwksTimeoutMs ?? 5_000,
      })
    case 'public-key':
      return auth.keys.key
    case 'secret':
      return auth.keys.secret
  }
}

/** What a refused token is told. Each case names the claim or part at fault, and none repeats the token. */
function refusal(error: unknown): ServiceError | undefined {
  if (error instanceof errors.JWTExpired) return unauthenticated('The token has expired')
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.claim === 'nbf') return unauthenticated('The token is not valid yet (nbf)')
    if (error.claim === 'aud') return unauthenticated('The token is for another audience (aud)')
    if (error.claim === 'iss') return unauthenticated('The token is from another issuer (iss)')
    if (error.reason === 'missing') return unauthenticated(`The token has no ${error.claim} claim`)
    return unauthenticated(`The token's ${error.claim} claim is not valid`)
  }
  if (error instanceof errors.JWKSNoMatchingKey)
    return unauthenticated("The token's signing key (kid) is not in the key set")
  if (error instanceof errors.JWKSMultipleMatchingKeys)
    return unauthenticated('The token names no key (kid) and the key set has several')
  if (error instanceof errors.JOSEAlgNotAllowed || error instanceof errors.JOSENotSupported)
    return unauthenticated("The token's algorithm (alg) is not accepted")
  if (error instanceof errors.JWSSignatureVerificationFailed)
    return unauthenticated("The token's signature does not verify")
  if (error instanceof errors.JWTInvalid || error instanceof errors.JWSInvalid)
    return unauthenticated('The token is not a well-formed signed JWT')
  // jose refuses a key that does not fit the algorithm with a TypeError (an RSA key for ES256, say).
  if (error instanceof TypeError && /key/i.test(error.message) && !/fetch/i.test(error.message))
    return unauthenticated("The token's algorithm (alg) does not fit the key")
  return undefined
}

export function createVerifier(auth: JwtAuth, options: VerifierOptions = {}): Verifier {
  const key = keyOf(auth, options)
  const checks = {
    issuer: auth.issuer,
    audience: auth.audience,
    algorithms: auth.algorithms,
    clockTolerance: auth.clockSkewSeconds,
    // A token that never expires is one leak away from being anyone's for good.
    requiredClaims: ['exp', 'sub'],
  }
  return {
    async verify(token) {
      let claims: JWTPayload
      try {
        // The overloads split on the key's kind; one call site serves all three.
        ;({ payload: claims } = await jwtVerify(token, key as Uint8Array, checks))
      } catch (error) {
        const refused = refusal(error)
        if (refused) {
          log('info', 'auth.refused', { reason: refused.message })
          throw refused
        }
        // The key set could not be fetched, or failed: not the caller's fault, so not a 401.
        log('error', 'auth.keys_unavailable', {
          url: auth.keys.kind === 'jwks' ? auth.keys.url.href : undefined,
          error: error instanceof Error ? { name: error.name, message: error.message } : String(error),
        })
        throw unavailable('The keys that check tokens cannot be fetched now; try again')
      }
      if (typeof claims.sub !== 'string' || claims.sub === '')
        throw unauthenticated('The token has no sub claim')
      try {
        return {
          sub: claims.sub,
          scopes: scopesOf(claims),
          quotas: quotasOf(claims, auth.quotaClaim, auth.quotas),
        }
      } catch (error) {
        if (error instanceof ClaimError) throw unauthenticated(error.message)
        throw error
      }
    },
  }
}
