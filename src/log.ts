import { createRequire } from 'node:module'
import type { PrettyOptions } from 'pino-pretty'

/**
 * One JSON object per line on stdout: what log shippers expect, and what `jq` reads. In a terminal the same
 * lines are shown readable (pino-pretty's format, LOG_FORMAT=pretty). pino itself was weighed and not taken:
 * it wrote 100k lines for no less CPU than this (synchronous writes, which a crash must not lose, cost the
 * same either way), and its field order, level numbers and `err`-only serialiser would each need undoing.
 */

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40 } as const
export type LogLevel = keyof typeof LEVELS

let threshold: number = LEVELS.info
/** Fields every line carries (the instance's name, when several share a service). */
let common: Record<string, unknown> = {}

export function setLogFields(fields: Record<string, unknown>): void {
  common = fields
}

/** From LOG_LEVEL; validated with the rest of the configuration. */
export function setLogLevel(level: LogLevel): void {
  threshold = LEVELS[level]
}

export const isLogLevel = (value: string): value is LogLevel => value in LEVELS

export const LOG_FORMATS = ['json', 'pretty'] as const
export type LogFormat = (typeof LOG_FORMATS)[number]

/** Turns a JSON line into the readable form; set when lines are shown in a terminal. */
let pretty: ((line: string) => string) | undefined

/** From LOG_FORMAT; unset, lines are readable when stdout is a terminal and JSON otherwise. */
export function setLogFormat(format: LogFormat | undefined): void {
  const wanted = format ?? (process.stdout.isTTY ? 'pretty' : 'json')
  if (wanted === 'json') return void (pretty = undefined)
  // Loaded only for a terminal: a server whose lines go to a shipper never needs it.
  const { prettyFactory } = createRequire(import.meta.url)('pino-pretty') as {
    prettyFactory: (options: PrettyOptions) => (line: string) => string
  }
  pretty = prettyFactory({ messageKey: 'event', translateTime: 'SYS:HH:MM:ss.l' })
}

export function log(level: LogLevel, event: string, fields: Record<string, unknown> = {}): void {
  if (LEVELS[level] < threshold) return
  const line = JSON.stringify(
    { time: new Date().toISOString(), level, event, ...common, ...fields },
    (_key, value: unknown) => (value instanceof Error ? errorFields(value) : value),
  )
  process.stdout.write(pretty ? pretty(line) : `${line}\n`)
}

/**
 * An error as the log keeps it: its message and stack, what a system error carries (code, syscall, path),
 * any other fields of its own, and its cause, which is where an error told to a client keeps the real one.
 */
function errorFields(error: Error): Record<string, unknown> {
  const { cause } = error as { cause?: unknown }
  return {
    ...error,
    message: error.message,
    stack: error.stack,
    ...(cause === undefined ? {} : { cause }),
  }
}
