import type { Api } from './api.js'
import { CliError, EXIT } from './errors.js'
import type { Mode } from './output.js'

/** What every command runs with. */
export interface Context {
  api: Api
  mode: Mode
  /** Aborted on the first Ctrl-C (SIGINT) or SIGTERM. */
  signal: AbortSignal
  /** The command as it was typed (a token given with --token left out), to say how to run it again. */
  again: string
}

/** Resolves once `signal` is aborted (never, if it is not). */
export function whenAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve()
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }))
}

/** The error that ends an interrupted command: its line says how to continue, and the status is 130. */
export const interrupted = (line: string): CliError => new CliError(`interrupted: ${line}`, EXIT.INTERRUPTED)

/** `args` as a shell would need them typed: words with anything unusual in single quotes. */
export function shellLine(args: readonly string[]): string {
  return args.map((arg) => (/^[\w./:=@%+,-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`)).join(' ')
}
