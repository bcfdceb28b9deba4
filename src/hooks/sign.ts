import { createHmac, timingSafeEqual } from 'node:crypto'

/** The header every hook request carries, as Stripe's and GitHub's webhooks do. */
export const SIGNATURE_HEADER = 'x-hook-signature'

/** A receiver refuses signatures older (or newer) than this: a captured request cannot be replayed later. */
export const DEFAULT_TOLERANCE_S = 300

const mac = (secret: string, t: number, body: string | Buffer) =>
  createHmac('sha256', secret).update(`${t}.`).update(body).digest('hex')

/** `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`. */
export function sign(secret: string, body: string | Buffer, nowMs = Date.now()): string {
  const t = Math.floor(nowMs / 1000)
  return `t=${t},v1=${mac(secret, t, body)}`
}

export interface VerifyOptions {
  /** Seconds a signature stays good either side of now. Default 300. */
  toleranceS?: number
  nowMs?: number
}

/**
 * Whether `header` signs exactly `body` (the raw bytes, before any JSON parsing) with `secret`, recently.
 * What a receiver runs first; the README shows the same few lines. Several `v1=` are allowed (a secret
 * being rotated): any one matching is enough.
 */
export function verify(
  secret: string,
  header: string | undefined,
  body: string | Buffer,
  { toleranceS = DEFAULT_TOLERANCE_S, nowMs = Date.now() }: VerifyOptions = {},
): boolean {
  if (!header) return false
  const parts = header.split(',').map((part) => part.trim().split('='))
  const t = Number(parts.find(([key]) => key === 't')?.[1])
  if (!Number.isSafeInteger(t) || Math.abs(nowMs / 1000 - t) > toleranceS) return false
  const expected = Buffer.from(mac(secret, t, body), 'hex')
  return parts.some(([key, value]) => {
    if (key !== 'v1' || value === undefined || !/^[0-9a-f]{64}$/.test(value)) return false
    // Constant time: a receiver must not tell an attacker how many leading characters were right.
    return timingSafeEqual(Buffer.from(value, 'hex'), expected)
  })
}
