import { Agent as HttpAgent, request as httpRequest } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import { rejected, unavailable, type ServiceError } from '../errors.js'
import { log } from '../log.js'
import type { BlockingHook, HooksConfig } from './config.js'
import { newEventId, payloadBody, type HookPayload, type HookUpload } from './payload.js'
import { sign, SIGNATURE_HEADER } from './sign.js'

/** An answer larger than this is not a verdict: the hook counts as failed. */
const MAX_ANSWER_BYTES = 64 * 1024

/** What a pre-create answer may change; pre-finish answers change nothing. */
export interface HookChanges {
  speed?: number
  filename?: string
  metadata?: Record<string, string>
}

/**
 * A refusal as data, for each edge to say in its own protocol: `REJECTED` (the hook's own 4xx and message:
 * REST `{detail}` with that status, GraphQL `extensions.code: "REJECTED"`, tus that status and body) or
 * `UNAVAILABLE` (503: the hook could not be asked, and HOOKS_ON_ERROR is `refuse`).
 */
export interface HookRejection {
  code: 'REJECTED' | 'UNAVAILABLE'
  status: number
  message: string
}

export type HookVerdict =
  | {
      accepted: true
      changes: HookChanges
      /** The hook failed and HOOKS_ON_ERROR is `accept`. */ failedOpen?: true
    }
  | { accepted: false; rejection: HookRejection }

export interface BlockingCall {
  type: BlockingHook
  upload: HookUpload
  requestId?: string
  transport?: string
  downloadUrl?: string
  /** The caller's header: sent as `x-forwarded-authorization` when HOOKS_FORWARD_AUTH allows; never logged. */
  authorization?: string
  /** The client went away: stop asking. */
  signal?: AbortSignal
}

/** The hook's answer was not one the protocol allows: treated as the hook failing (HOOKS_ON_ERROR). */
class BadAnswer extends Error {}

/**
 * Asks the hook once and says what it decided. Never throws: a timeout, a refused connection, a 5xx or an
 * answer outside the protocol is the hook failing, and HOOKS_ON_ERROR says whether that refuses (503,
 * before any byte is kept) or lets the upload go on.
 */
export async function callBlocking(config: HooksConfig, call: BlockingCall): Promise<HookVerdict> {
  const payload: HookPayload = {
    eventId: newEventId(),
    type: call.type,
    upload: call.upload,
    ...(call.requestId === undefined ? {} : { requestId: call.requestId }),
    ...(call.transport === undefined ? {} : { transport: call.transport }),
    ...(call.downloadUrl === undefined ? {} : { downloadUrl: call.downloadUrl }),
  }
  const body = payloadBody(payload)
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    [SIGNATURE_HEADER]: sign(config.secret, body),
  }
  if (config.forwardAuthorization && call.authorization)
    headers['x-forwarded-authorization'] = call.authorization
  const timeout = AbortSignal.timeout(config.blockingTimeoutMs)
  const signal = call.signal ? AbortSignal.any([timeout, call.signal]) : timeout
  try {
    const { status, text } = await post(config.url, headers, body, signal)
    if (status < 200 || status > 299) throw new BadAnswer(`the hook answered ${status}`)
    return verdict(call.type, text)
  } catch (error) {
    const why = timeout.aborted
      ? `no answer in ${config.blockingTimeoutMs} ms`
      : error instanceof Error
        ? ((error.cause as Error | undefined)?.message ?? error.message)
        : String(error)
    // The fields name the hook and the upload, never the headers: the caller's Authorization stays out.
    log('warn', 'hook.blocking_failed', {
      hook: call.type,
      uploadId: call.upload.id,
      requestId: call.requestId,
      error: why,
      onError: config.onError,
    })
    if (call.signal?.aborted && !timeout.aborted)
      return {
        accepted: false,
        rejection: { code: 'UNAVAILABLE', status: 503, message: 'The request was canceled' },
      }
    if (config.onError === 'accept') return { accepted: true, changes: {}, failedOpen: true }
    const message =
      call.type === 'pre-create'
        ? 'The upload hook could not be asked now; nothing was stored: try again later'
        : 'The upload hook could not be asked now; try again later'
    return { accepted: false, rejection: { code: 'UNAVAILABLE', status: 503, message } }
  }
}

/**
 * Kept-alive connections to the hook: an upload waits on this call, and a fresh connection (or fetch's own
 * overhead, about 2 ms a call here) would be most of what a hook costs it.
 */
const agents = { http: new HttpAgent({ keepAlive: true }), https: new HttpsAgent({ keepAlive: true }) }

/** One POST; its answer read whole, up to MAX_ANSWER_BYTES. No redirect is followed (a 3xx is no verdict). */
function post(
  url: string,
  headers: Record<string, string>,
  body: string,
  signal: AbortSignal,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const target = new URL(url)
    const secure = target.protocol === 'https:'
    const request = (secure ? httpsRequest : httpRequest)(
      target,
      {
        method: 'POST',
        headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
        agent: secure ? agents.https : agents.http,
        signal,
      },
      (response) => {
        const declared = Number(response.headers['content-length'] ?? NaN)
        if (declared > MAX_ANSWER_BYTES) {
          response.destroy()
          return reject(
            new BadAnswer(`the hook's answer is ${declared} bytes, more than ${MAX_ANSWER_BYTES}`),
          )
        }
        const chunks: Buffer[] = []
        let size = 0
        response.on('data', (chunk: Buffer) => {
          size += chunk.length
          if (size > MAX_ANSWER_BYTES) {
            response.destroy()
            return reject(new BadAnswer(`the hook's answer is more than ${MAX_ANSWER_BYTES} bytes`))
          }
          chunks.push(chunk)
        })
        response.on('end', () =>
          resolve({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
        )
        response.on('error', reject)
      },
    )
    request.on('error', reject)
    request.end(body)
  })
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value)

/** A 2xx answer, read per the protocol: empty or not JSON accepts; `reject` refuses; changes are checked. */
export function verdict(type: BlockingHook, text: string): HookVerdict {
  let answer: unknown
  try {
    answer = text.trim() === '' ? {} : JSON.parse(text)
  } catch {
    return { accepted: true, changes: {} } // "any 2xx without reject accepts": a plain "ok" does too
  }
  if (!isObject(answer)) return { accepted: true, changes: {} }
  if (answer.reject !== undefined && answer.reject !== null && answer.reject !== false) {
    const reject = isObject(answer.reject) ? answer.reject : {}
    const status = reject.status
    const message =
      typeof reject.message === 'string' && reject.message.trim() !== '' ? reject.message : undefined
    return {
      accepted: false,
      rejection: {
        code: 'REJECTED',
        // The hook meant no: a missing or non-4xx status still refuses, as a 403.
        status:
          Number.isInteger(status) && (status as number) >= 400 && (status as number) <= 499
            ? (status as number)
            : 403,
        message: (message ?? 'The upload hook refused this upload').slice(0, 1000),
      },
    }
  }
  if (type !== 'pre-create') return { accepted: true, changes: {} }
  const changes: HookChanges = {}
  if (answer.speed !== undefined) {
    if (!Number.isSafeInteger(answer.speed) || (answer.speed as number) < 0)
      throw new BadAnswer(`the hook answered a speed that is not a whole number of bytes per second`)
    changes.speed = answer.speed as number
  }
  if (answer.filename !== undefined) {
    if (typeof answer.filename !== 'string' || answer.filename.trim() === '' || answer.filename.length > 1024)
      throw new BadAnswer('the hook answered a filename that is not a non-empty string')
    changes.filename = answer.filename
  }
  if (answer.metadata !== undefined) {
    const metadata = answer.metadata
    if (!isObject(metadata) || !Object.values(metadata).every((value) => typeof value === 'string'))
      throw new BadAnswer('the hook answered metadata that is not an object of strings')
    changes.metadata = metadata as Record<string, string>
  }
  return { accepted: true, changes }
}

/** A refusal as the edges throw it: each answers a ServiceError in its own protocol already. */
export const asServiceError = (rejection: HookRejection): ServiceError =>
  rejection.code === 'REJECTED'
    ? rejected(rejection.message, rejection.status)
    : unavailable(rejection.message)
