import { parseArgs, type ParseArgsConfig } from 'node:util'
import { usage } from './errors.js'
import { SPEED_HELP } from './units.js'

type Options = NonNullable<ParseArgsConfig['options']>

/** Options every command takes. */
const GLOBAL: Options = {
  server: { type: 'string' },
  token: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
}

interface Command {
  synopsis: string
  summary: string
  options: Options
  /** How many positional arguments it takes. */
  min: number
  max: number
  details?: string
}

export const COMMANDS = {
  put: {
    synopsis: 'put FILE… [--speed S] [--detach] [--json]',
    summary: 'send files over tus, follow each until stored',
    options: { speed: { type: 'string' }, detach: { type: 'boolean' } },
    min: 1,
    max: Infinity,
    details: `Each file is sent over tus to /files/, then followed live (the uploadProgress subscription) while the
server writes it into storage at --speed (the server's default speed when not given). Two stages per
file: sending (bytes sent), then storing (bytes stored). put waits until every file is completed.

  --speed S   how fast the server stores each file (see Speeds)
  --detach    exit once every file is received, printing their ids (one a line without a terminal)
  --json      NDJSON on stdout: an object per progress event, and a final one per file with
              "event":"done", "id", "status", "sha256" (events: sending, progress, received, done)

An interrupted put (Ctrl-C, a dropped connection) is resumable: run the same command again and each
file continues from the byte the server has (unchanged files only). Ctrl-C exits 130 and says so.
Where that is remembered: $UPCTL_STATE, else $XDG_STATE_HOME/upctl, else ~/.local/state/upctl.`,
  },
  ls: {
    synopsis: 'ls [--status S] [--json]',
    summary: 'list uploads: id, name, status, progress, speed, size',
    options: { status: { type: 'string' } },
    min: 0,
    max: 0,
    details: `  --status S   only uploads in these states, comma-separated: receiving, in_progress, paused,
               completed, canceled, failed
  --json       a JSON array of the uploads`,
  },
  status: {
    synopsis: 'status ID [--json]',
    summary: "one upload's state",
    options: {},
    min: 1,
    max: 1,
  },
  pause: {
    synopsis: 'pause ID',
    summary: 'stop writing an upload into storage',
    options: {},
    min: 1,
    max: 1,
  },
  resume: {
    synopsis: 'resume ID [--speed S]',
    summary: 'continue a paused upload, at a new speed if given',
    options: { speed: { type: 'string' } },
    min: 1,
    max: 1,
  },
  speed: {
    synopsis: 'speed ID S',
    summary: "change a running (or paused) upload's speed",
    options: {},
    min: 2,
    max: 2,
  },
  cancel: {
    synopsis: 'cancel ID',
    summary: 'stop an upload for good, removing its partial bytes',
    options: {},
    min: 1,
    max: 1,
  },
  rm: {
    synopsis: 'rm ID',
    summary: 'delete an ended upload: its stored file and record',
    options: {},
    min: 1,
    max: 1,
  },
  get: {
    synopsis: 'get ID [-o FILE] [--force]',
    summary: 'download a stored file, checked against its sha256',
    options: { output: { type: 'string', short: 'o' }, force: { type: 'boolean' } },
    min: 1,
    max: 1,
    details: `  -o, --output FILE   where to save it (a folder: saved inside it); by default the upload's name
  --force             replace FILE if it is already there (once the download is whole and checked)

The file is written beside FILE, into a hidden .FILE.upctl-ID-ETAG.part, and appears under FILE only
once all of it is there and its sha256 is the upload's. An interrupted get (Ctrl-C, a dropped
connection) keeps that partial file: the same command asks only for the rest (HTTP Range, with
If-Range on the file's ETag). A FILE that is already there is never written to: when it is this very
file there is nothing to do; otherwise get exits 1 and changes nothing (choose another name with -o,
or replace it with --force). With --json: NDJSON progress events and a final "done" object.`,
  },
  watch: {
    synopsis: 'watch [ID]',
    summary: 'follow one upload until it ends, or all until Ctrl-C',
    options: {},
    min: 0,
    max: 1,
    details: `With an ID, watch ends when the upload ends: exit 0 if it completed, 1 if it failed or was
canceled. Without, it shows every upload as it changes until Ctrl-C (exit 0). --json prints each
event as a JSON object, one a line.`,
  },
} satisfies Record<string, Command>

export type CommandName = keyof typeof COMMANDS

const isCommand = (word: string): word is CommandName => Object.hasOwn(COMMANDS, word)

const GLOBAL_HELP = `  --server URL   the service (default: $UPCTL_SERVER, else http://127.0.0.1:8000)
  --token TOKEN  its API token, when it has one (default: $API_TOKEN)
  --json         machine-readable output on stdout
  -h, --help     help; upctl COMMAND --help for one command`

const EXIT_HELP = `Exit status: 0 everything ended as asked; 1 a failure (server unreachable or refusing, an upload
FAILED or CANCELED, no such upload, a file that cannot be read); 2 a usage error (unknown command or
option, missing argument, bad speed); 130 interrupted by Ctrl-C before put, get or watch ID finished
(the same command continues). Errors are one line on stderr.`

export function mainHelp(): string {
  const width = Math.max(...Object.values(COMMANDS).map((c) => c.synopsis.length))
  const list = Object.values(COMMANDS)
    .map((c) => `  ${c.synopsis.padEnd(width)}  ${c.summary}`)
    .join('\n')
  return `upctl: send files to the throttled upload service, and follow and control its uploads.

Usage: upctl COMMAND [ARGS] [--server URL] [--token TOKEN] [--json]

Commands:
${list}

Options:
${GLOBAL_HELP}

${SPEED_HELP}

${EXIT_HELP}`
}

export function commandHelp(name: CommandName): string {
  const command: Command = COMMANDS[name]
  const details = command.details ? `\n\n${command.details}` : ''
  const speeds = 'speed' in command.options || name === 'speed' ? `\n\n${SPEED_HELP}` : ''
  return `Usage: upctl ${command.synopsis}

${command.summary[0]?.toUpperCase()}${command.summary.slice(1)}.${details}

Options:
${GLOBAL_HELP}${speeds}

${EXIT_HELP}`
}

export type Parsed =
  | { kind: 'help'; text: string }
  | {
      kind: 'run'
      command: CommandName
      positionals: string[]
      values: Record<string, string | boolean | undefined>
    }

/** Options that take a value, to find the command word among them. */
const TAKES_VALUE = new Set(['--server', '--token', '--speed', '--status', '--output', '-o'])

/** The command line, read with node:util's parseArgs: the command may come before or after the options. */
export function parseCommandLine(argv: readonly string[]): Parsed {
  let at = 0
  while (at < argv.length) {
    const word = argv[at] ?? ''
    if (word === '--' || !word.startsWith('-') || word === '-') break
    at += TAKES_VALUE.has(word) ? 2 : 1
  }
  const word = argv[at] === '--' ? argv[at + 1] : argv[at]
  const rest = argv.filter((_, i) => i !== (argv[at] === '--' ? at + 1 : at))
  if (word === undefined || word === 'help') {
    const about = word === 'help' ? argv[at + 1] : undefined
    if (about !== undefined && isCommand(about)) return { kind: 'help', text: commandHelp(about) }
    if (word === undefined && !argv.includes('--help') && !argv.includes('-h'))
      throw usage('a command is needed: put, ls, status, pause, resume, speed, cancel, rm, get or watch')
    return { kind: 'help', text: mainHelp() }
  }
  if (!isCommand(word)) throw usage(`unknown command ${JSON.stringify(word)}`)
  const command: Command = COMMANDS[word]
  let parsed: ReturnType<typeof parseArgs>
  try {
    parsed = parseArgs({
      args: [...rest],
      options: { ...GLOBAL, ...command.options },
      allowPositionals: true,
      strict: true,
    })
  } catch (error) {
    const message = error instanceof Error ? error.message.split('\n')[0] : String(error)
    throw usage(`${message?.replace(/\. To specify a positional.*$/, '')}`, word)
  }
  const values = parsed.values as Record<string, string | boolean | undefined>
  if (values.help) return { kind: 'help', text: commandHelp(word) }
  const { positionals } = parsed
  if (positionals.length < command.min)
    throw usage(
      `${word} needs ${command.synopsis
        .split(' ')
        .slice(1, command.min + 1)
        .join(' ')}`,
      word,
    )
  if (positionals.length > command.max)
    throw usage(
      `${word} takes ${command.max === 0 ? 'no arguments' : `${command.max} argument${command.max > 1 ? 's' : ''}`}; got ${positionals.length}`,
      word,
    )
  return { kind: 'run', command: word, positionals, values }
}
