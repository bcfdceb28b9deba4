/** One JSON object per line on stdout: what log shippers expect, and what `jq` reads. */

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

export function log(level: LogLevel, event: string, fields: Record<string, unknown> = {}): void {
  if (LEVELS[level] < threshold) return
  const line = JSON.stringify(
    { time: new Date().toISOString(), level, event, ...common, ...fields },
    (_key, value: unknown) => (value instanceof Error ? errorFields(value) : value),
  )
  process.stdout.write(`${line}\n`)
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
