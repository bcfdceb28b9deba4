import { randomBytes } from 'node:crypto'
import type { IncomingMessage } from 'node:http'

/**
 * Every request gets an id, sent back in `x-request-id` and written in every log line about it, so a user's
 * report ("it said 500, id 3f2a…-1c") finds its line. A valid id from a proxy in front (nginx's
 * `$request_id`) is kept, so one id follows the request through both.
 */
const ids = new WeakMap<IncomingMessage, string>()
const boot = randomBytes(4).toString('hex')
let counter = 0
const VALID = /^[\w.:-]{1,128}$/

export function assignRequestId(req: IncomingMessage): string {
  const incoming = req.headers['x-request-id']
  const id =
    typeof incoming === 'string' && VALID.test(incoming) ? incoming : `${boot}-${(++counter).toString(36)}`
  ids.set(req, id)
  return id
}

export const requestIdOf = (req: IncomingMessage | undefined): string | undefined =>
  req ? ids.get(req) : undefined
