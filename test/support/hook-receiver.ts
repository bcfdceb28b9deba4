import { once } from 'node:events'
import { EventEmitter } from 'node:events'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { HookPayload } from '../../src/hooks/payload.js'
import { SIGNATURE_HEADER, verify } from '../../src/hooks/sign.js'

export interface HookRequest {
  payload: HookPayload
  raw: string
  headers: IncomingHttpHeaders
  /** The signature checked out (a request that fails it is answered 401 and never counts as delivered). */
  verified: boolean
  /** What the receiver answered. */
  status: number
  /** 1-based, in the order answered. */
  n: number
  /** When it had arrived whole (performance.now()). */
  arrivedAt: number
}

/** What the receiver answers a request: a status and a JSON body (for the blocking hooks' verdicts). */
export interface HookAnswer {
  status?: number
  body?: unknown
  /** Hold the answer this long first. */
  delayMs?: number
  /** A body sent as it is (instead of `body` as JSON), with this content type. */
  raw?: { text: string; contentType: string }
}

export interface HookReceiver {
  url: string
  secret: string
  /** Every request once answered, in the order answered, whatever the answer. */
  readonly requests: HookRequest[]
  /** Every signed request's payload as it arrives, before it is answered (one held by delayMs included). */
  readonly arrived: HookPayload[]
  /** The requests acknowledged with a 2xx after a good signature: what a real receiver would act on. */
  delivered(): HookRequest[]
  /** The next `n` requests are answered 500. */
  failNext(n: number): void
  /** How each request is answered (after failNext's and before the default 204). */
  answerWith(answer: ((payload: HookPayload) => HookAnswer | undefined) | undefined): void
  /** Resolves once `check` holds after some request; checked at once too. Rejects after `timeoutMs`. */
  until(check: (receiver: HookReceiver) => boolean, timeoutMs?: number): Promise<void>
  stop(): Promise<void>
}

/**
 * A real HTTP receiver of hooks, as a user's backend would write one from the README: it reads the raw
 * body, verifies `x-hook-signature` with the shared secret, and answers. Tests make it fail, stall or
 * answer verdicts, and read what it got, in order.
 */
export async function startHookReceiver(secret = 'test-hooks-secret-0123456789'): Promise<HookReceiver> {
  const requests: HookRequest[] = []
  const arrived: HookPayload[] = []
  const changed = new EventEmitter()
  changed.setMaxListeners(100)
  let failing = 0
  let answer: ((payload: HookPayload) => HookAnswer | undefined) | undefined
  const timers = new Set<NodeJS.Timeout>()

  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const arrivedAt = performance.now()
      const raw = Buffer.concat(chunks).toString('utf8')
      const verified = verify(secret, req.headers[SIGNATURE_HEADER] as string | undefined, raw)
      const payload = (verified ? JSON.parse(raw) : {}) as HookPayload
      if (verified) {
        arrived.push(payload)
        changed.emit('request')
      }
      let chosen: HookAnswer
      if (!verified) chosen = { status: 401, body: { error: 'bad signature' } }
      else if (failing > 0) {
        failing--
        chosen = { status: 500, body: { error: 'failing on purpose' } }
      } else chosen = answer?.(payload) ?? { status: 204 }
      const status = chosen.status ?? 200
      const send = () => {
        if (res.destroyed) return
        const record: HookRequest = {
          payload,
          raw,
          headers: req.headers,
          verified,
          status,
          n: requests.length + 1,
          arrivedAt,
        }
        requests.push(record)
        if (chosen.raw) res.writeHead(status, { 'content-type': chosen.raw.contentType }).end(chosen.raw.text)
        else if (chosen.body === undefined || status === 204) res.writeHead(status).end()
        else res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(chosen.body))
        changed.emit('request')
      }
      if (!chosen.delayMs) return send()
      const timer = setTimeout(() => {
        timers.delete(timer)
        send()
      }, chosen.delayMs)
      timers.add(timer)
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo

  const receiver: HookReceiver = {
    url: `http://127.0.0.1:${port}/hooks`,
    secret,
    requests,
    arrived,
    delivered: () => requests.filter((r) => r.verified && r.status >= 200 && r.status < 300),
    failNext(n) {
      failing = n
    },
    answerWith(next) {
      answer = next
    },
    until(check, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const test = () => {
          if (!check(receiver)) return
          clearTimeout(timer)
          changed.off('request', test)
          resolve()
        }
        const timer = setTimeout(() => {
          changed.off('request', test)
          reject(
            new Error(
              `the hook receiver did not see what was awaited in ${timeoutMs} ms (${requests.length} requests)`,
            ),
          )
        }, timeoutMs)
        changed.on('request', test)
        test()
      })
    },
    async stop() {
      for (const timer of timers) clearTimeout(timer)
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    },
  }
  return receiver
}
