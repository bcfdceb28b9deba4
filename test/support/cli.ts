import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
/** The built binary, as `npm install -g .` links it (test/support/global-setup.ts builds dist first). */
export const UPCTL = fileURLToPath(new URL('../../dist/cli/upctl.js', import.meta.url))

export interface CliRun {
  child: ChildProcess
  /** Everything printed so far. */
  stdout: () => string
  stderr: () => string
  /** Resolves with the first line of stdout that `test` accepts (lines are NDJSON with --json). */
  line: (test: (line: string) => boolean, what: string) => Promise<string>
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>
}

const running = new Set<ChildProcess>()

/** Kills every upctl a test started and left running (afterEach): none outlives its test. */
export function killAll(): void {
  for (const child of running) child.kill('SIGKILL')
  running.clear()
}

/**
 * Starts a process and collects its output; `timeoutMs` kills it (SIGKILL) so a hung one fails its test
 * instead of the run. Its environment is the test's own plus `env`.
 */
export function startProcess(
  command: string,
  args: readonly string[],
  {
    env = {},
    timeoutMs = 120_000,
    cwd = ROOT,
  }: { env?: Record<string, string | undefined>; timeoutMs?: number; cwd?: string } = {},
): CliRun {
  const child = spawn(command, args, {
    cwd,
    // A variable given as undefined is left out (API_TOKEN, say, from the test's own environment).
    env: Object.fromEntries(
      Object.entries({ ...process.env, ...env }).filter(
        (entry): entry is [string, string] => entry[1] !== undefined,
      ),
    ),
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  running.add(child)
  let stdout = ''
  let stderr = ''
  const waiting: { test: (line: string) => boolean; resolve: (line: string) => void }[] = []
  const look = () => {
    const lines = stdout.split('\n').slice(0, -1)
    for (const wait of [...waiting]) {
      const found = lines.find(wait.test)
      if (found !== undefined) {
        waiting.splice(waiting.indexOf(wait), 1)
        wait.resolve(found)
      }
    }
  }
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString()
    look()
  })
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  const exited = new Promise<{
    code: number | null
    signal: NodeJS.Signals | null
    stdout: string
    stderr: string
  }>((resolve) =>
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      running.delete(child)
      resolve({ code, signal, stdout, stderr })
    }),
  )
  const line = (test: (line: string) => boolean, what: string) =>
    new Promise<string>((resolve, reject) => {
      waiting.push({ test, resolve })
      look()
      void exited.then(() =>
        reject(new Error(`${what}: the process ended first\nstdout:\n${stdout}\nstderr:\n${stderr}`)),
      )
    })
  return { child, stdout: () => stdout, stderr: () => stderr, line, exited }
}

/** `node dist/cli/upctl.js ARGS…` in the repository (or `cwd`), with the test's environment plus `env`. */
export function startCli(
  args: readonly string[],
  env: Record<string, string | undefined> = {},
  cwd?: string,
): CliRun {
  return startProcess(process.execPath, [UPCTL, ...args], { env, ...(cwd ? { cwd } : {}) })
}

/** Runs upctl to its end. */
export function upctl(args: readonly string[], env: Record<string, string | undefined> = {}) {
  return startCli(args, env).exited
}

/** The NDJSON objects of an output. */
export function ndjson(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>)
}
