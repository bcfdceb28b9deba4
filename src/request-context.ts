import { AsyncLocalStorage } from 'node:async_hooks'

/**
 * The request a piece of work was started by, carried through its promises and timers (the floor: imports
 * nothing), so a state change written on a request's behalf, even after its response, can name it: a hook
 * notification carries it, and its failed deliveries are logged with it. Only run with HOOKS_URL (see
 * router.ts): nothing else reads it, and on Node 20 it costs every promise.
 */
const current = new AsyncLocalStorage<string>()

export const withRequestId = <T>(requestId: string, work: () => T): T => current.run(requestId, work)

export const currentRequestId = (): string | undefined => current.getStore()
