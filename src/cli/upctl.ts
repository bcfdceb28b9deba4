#!/usr/bin/env node
/**
 * upctl: the terminal client of the upload service. `upctl --help` says what it does; the README's
 * "From a terminal" section shows it.
 */
import { Api, type Target } from './api.js'
import { parseCommandLine, type Parsed } from './args.js'
import { shellLine, type Context } from './context.js'
import { control, ls, parseStatuses, status } from './control.js'
import { CliError, EXIT, oneLine, usage } from './errors.js'
import { get } from './get.js'
import { modeFor, printLine } from './output.js'
import { put } from './put.js'
import { parseSpeed } from './units.js'
import { watch } from './watch.js'

const DEFAULT_SERVER = 'http://127.0.0.1:8000'

/** --server, else UPCTL_SERVER, else the default; --token, else API_TOKEN. */
function targetOf(values: Record<string, string | boolean | undefined>, command: string): Target {
  const given = typeof values.server === 'string' ? values.server : process.env.UPCTL_SERVER || DEFAULT_SERVER
  let url: URL
  try {
    url = new URL(given)
  } catch {
    throw usage(`--server must be a URL such as ${DEFAULT_SERVER}; got ${JSON.stringify(given)}`, command)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw usage(`--server must be an http:// or https:// URL; got ${JSON.stringify(given)}`, command)
  const token = typeof values.token === 'string' ? values.token : process.env.API_TOKEN || undefined
  return { server: `${url.origin}${url.pathname.replace(/\/+$/, '')}`, token }
}

/** The command line to run again, with a token given on it left out (it may be in a shared log). */
function againLine(argv: readonly string[]): string {
  const args: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? ''
    if (arg === '--token') {
      args.push(arg, '<token>')
      i++
    } else args.push(arg.startsWith('--token=') ? '--token=<token>' : arg)
  }
  return `upctl ${shellLine(args)}`
}

async function run(parsed: Extract<Parsed, { kind: 'run' }>, signal: AbortSignal, argv: readonly string[]) {
  const { command, positionals, values } = parsed
  const speedOf = (raw: string | boolean | undefined) =>
    typeof raw === 'string' ? parseSpeed(raw, command) : undefined
  // Every argument is checked before anything is asked of the server.
  const speed = command === 'speed' ? parseSpeed(positionals[1] ?? '', command) : speedOf(values.speed)
  const statuses = typeof values.status === 'string' ? parseStatuses(values.status) : undefined
  const output = typeof values.output === 'string' ? values.output : undefined
  if (output === '') throw usage('-o needs a file name', command)
  const target = targetOf(values, command)
  const api = new Api(target)
  const ctx: Context = { api, mode: modeFor(values.json === true), signal, again: againLine(argv) }
  const id = positionals[0] ?? ''
  try {
    switch (command) {
      case 'put':
        return await put(ctx, { files: positionals, speed, detach: values.detach === true })
      case 'ls':
        return await ls(ctx, statuses)
      case 'status':
        return await status(ctx, id)
      case 'pause':
      case 'cancel':
      case 'rm':
        return await control(ctx, command, id)
      case 'resume':
      case 'speed':
        return await control(ctx, command, id, speed)
      case 'get':
        return await get(ctx, id, output, values.force === true)
      case 'watch':
        return await watch(ctx, positionals[0])
    }
  } finally {
    await api.close().catch(() => undefined)
  }
}

/** Exits once what was written to stdout and stderr is out (a pipe's reader gets every line). */
function exit(code: number): void {
  process.exitCode = code
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)))
}

function fail(error: unknown): void {
  const code = error instanceof CliError ? error.exitCode : EXIT.FAILURE
  const line = error instanceof CliError ? oneLine(error) : `unexpected error: ${oneLine(error)}`
  process.stderr.write(`upctl: ${line}\n`)
  exit(code)
}

function main(argv: readonly string[]): void {
  // A reader that went away (upctl ls | head) is no error of ours.
  process.stdout.on('error', () => process.exit(EXIT.OK))
  process.on('uncaughtException', fail)
  process.on('unhandledRejection', fail)
  let parsed: Parsed
  try {
    parsed = parseCommandLine(argv)
  } catch (error) {
    return fail(error)
  }
  if (parsed.kind === 'help') {
    printLine(parsed.text)
    return exit(EXIT.OK)
  }
  // put, get and watch stop cleanly on the first Ctrl-C (or SIGTERM) and say how to continue; a second one
  // ends upctl at once, as the first does for the commands that are one request.
  const interrupt = new AbortController()
  const graceful = ['put', 'get', 'watch'].includes(parsed.command)
  const stop = (signal: NodeJS.Signals) => {
    if (interrupt.signal.aborted || !graceful) process.exit(signal === 'SIGINT' ? EXIT.INTERRUPTED : 143)
    interrupt.abort()
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  run(parsed, interrupt.signal, argv).then(exit, fail)
}

main(process.argv.slice(2))
