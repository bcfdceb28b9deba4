/** Exit statuses, as `upctl --help` lists them. */
export const EXIT = {
  /** Everything ended as asked. */
  OK: 0,
  /** A failure: the server unreachable or refusing, an upload FAILED or CANCELED, not found, a file unreadable. */
  FAILURE: 1,
  /** A usage error: an unknown command or option, a missing argument, a bad speed. */
  USAGE: 2,
  /** Interrupted by Ctrl-C (128 + SIGINT) before the command finished; the same command continues it. */
  INTERRUPTED: 130,
} as const

/**
 * What ends a command with one line on stderr and an exit status. Anything else thrown is a bug, and still
 * gets one line (see upctl.ts), never a stack trace.
 */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.FAILURE,
  ) {
    super(message)
    this.name = 'CliError'
  }
}

/** A usage error (exit 2), with a pointer to the help of `command` when there is one. */
export function usage(message: string, command?: string): CliError {
  const help = command ? `upctl ${command} --help` : 'upctl --help'
  return new CliError(`${message} (see ${help})`, EXIT.USAGE)
}

/** The message of anything thrown, on one line. */
export function oneLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error)
  return text.replace(/\s*\n\s*/g, ' ').trim()
}
