import { badInput, bodyError, ServiceError } from '../errors.js'
import type { Quotas } from './config.js'

/** What a user holds now, counted over every instance (see the proposal in the auth report: usage counting). */
export interface Usage {
  /** Total size of the user's uploads that hold or will hold bytes (not canceled, failed or deleted). */
  bytesStored: number
  /** The user's uploads receiving or transferring (not paused, not ended). */
  running: number
}

/** A new upload as it asks to start: its full size, and its speed (undefined: the caller named none). */
export interface QuotaRequest {
  size: number
  speed?: number
}

/** 422 when a speed is over the cap; 0 asks for no limit, so it is over any cap. Also for resume and setSpeed. */
export function speedRefusal(quotas: Quotas, speed: number): ServiceError | undefined {
  if (quotas.speed === 0 || (speed > 0 && speed <= quotas.speed)) return undefined
  return badInput(
    speed === 0
      ? `An unlimited speed is over your quota: at most ${quotas.speed} bytes per second`
      : `A speed of ${speed} bytes per second is over your quota: at most ${quotas.speed}`,
  )
}

/** 413 when `size` more bytes would take the user past their stored-bytes quota. */
export function bytesRefusal(quotas: Quotas, usage: Usage, size: number): ServiceError | undefined {
  if (quotas.bytes === 0 || usage.bytesStored + size <= quotas.bytes) return undefined
  return bodyError(
    'PAYLOAD_TOO_LARGE',
    `This upload of ${size} bytes would take your stored bytes to ${usage.bytesStored + size}, over your quota of ${quotas.bytes}`,
  )
}

/** 429 when one more running upload would be over the quota. Also for resume (a paused upload runs again). */
export function runningRefusal(quotas: Quotas, usage: Usage): ServiceError | undefined {
  if (quotas.running === 0 || usage.running < quotas.running) return undefined
  return new ServiceError(
    'TOO_MANY_UPLOADS',
    `You have ${usage.running} uploads running, your quota; wait for one to end, or pause one`,
  )
}

/**
 * Whether a new upload may start, asked before any byte is stored. The request's own fault (its speed) is named
 * first, then what it would hold, then how many run.
 */
export function admit(quotas: Quotas, usage: Usage, request: QuotaRequest): ServiceError | undefined {
  return (
    (request.speed === undefined ? undefined : speedRefusal(quotas, request.speed)) ??
    bytesRefusal(quotas, usage, request.size) ??
    runningRefusal(quotas, usage)
  )
}

/** The speed of a caller who named none: the default, held to the cap (refusing them would punish silence). */
export function speedFor(quotas: Quotas, asked: number | undefined, defaultSpeed: number): number {
  if (asked !== undefined) return asked
  return heldToCap(quotas, defaultSpeed)
}

/**
 * A speed the caller did not name (the default, or the one a pre-create hook answered), held to their cap: 0
 * (unlimited) or more than the cap is the cap. Refusing it would refuse the caller for what they did not ask.
 */
export function heldToCap(quotas: Quotas, speed: number): number {
  if (quotas.speed === 0) return speed
  return speed === 0 ? quotas.speed : Math.min(speed, quotas.speed)
}
