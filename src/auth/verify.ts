import { unauthenticated } from '../errors.js'
import type { JwtAuth } from './config.js'
import type { VerifierOptions } from './jwt.js'
import { OPERATOR, type Principal } from './principal.js'
import { bearerOf, sameSecret } from './secret.js'

export interface Authenticator {
  /** Who sends this `Authorization` header (or graphql-ws's `connection_init` equivalent). */
  authenticate(authorization: string | undefined): Promise<Principal>
  /** Whether any credential is asked for at all; when not, everyone is the operator, as before auth. */
  readonly required: boolean
}

/**
 * The one door: API_TOKEN (when set) is the operator, an admin without limits, so nothing breaks for today's
 * callers; with AUTH_* set, any other bearer must be a valid JWT; with neither, everyone is the operator.
 */
export async function createAuthenticator(
  { auth, apiToken }: { auth: JwtAuth | undefined; apiToken: string | undefined },
  options: VerifierOptions = {},
): Promise<Authenticator> {
  // jose loads only where tokens are JWTs: a server without AUTH_* never holds it.
  const verifier = auth && (await import('./jwt.js')).createVerifier(auth, options)
  const required = verifier !== undefined || apiToken !== undefined
  return {
    required,
    async authenticate(authorization) {
      if (!required) return OPERATOR
      const token = bearerOf(authorization)
      if (token === undefined)
        throw unauthenticated('A bearer token is required (Authorization: Bearer <token>)')
      if (apiToken !== undefined && sameSecret(token, apiToken)) return OPERATOR
      if (verifier === undefined) throw unauthenticated('The token is not the API token')
      return verifier.verify(token)
    },
  }
}
