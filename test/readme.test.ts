import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SETTINGS } from '../src/config.js'
import { routes } from '../src/rest/routes.js'
import { bytes, restUpload, waitForStatus } from './support/clients.js'
import { startServer, type TestServer } from './support/server.js'
import { tusCreate } from './support/tus.js'

/**
 * Every shell command the README shows runs as written, against a real server: curl and all. Only the
 * placeholders change (the server's URL, a real file, real upload ids). npm's own commands are what CI runs.
 */
const run = promisify(execFile)

interface Command {
  text: string
  line: number
}

/** The logical lines of every ```sh block (continuations joined), without comments or blank lines. */
async function readmeCommands(): Promise<Command[]> {
  const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8')
  const commands: Command[] = []
  const lines = readme.split('\n')
  let inBlock = false
  let pending: Command | undefined
  for (const [i, raw] of lines.entries()) {
    if (raw.startsWith('```')) {
      inBlock = raw === '```sh'
      continue
    }
    if (!inBlock) continue
    // A trailing comment after two spaces and a #, as the README writes them.
    const line = raw.replace(/\s+#\s.*$/, '')
    if (line.trim() === '') continue
    const text = line.replace(/\\$/, '').trimEnd()
    pending = pending
      ? { ...pending, text: `${pending.text} ${text.trim()}` }
      : { text: text.trim(), line: i + 1 }
    if (!line.endsWith('\\')) {
      commands.push(pending)
      pending = undefined
    }
  }
  return commands
}

let server: TestServer
let scratch: string
let env: Record<string, string>
beforeAll(async () => {
  server = await startServer()
  scratch = await mkdtemp(join(tmpdir(), 'readme-'))
  await mkdir(join(scratch, 'input'))
  await writeFile(join(scratch, 'input', 'file.zip'), bytes(50_000))
  const running = await restUpload(server.url, bytes(200_000), { speed: 1000, filename: 'running.bin' })
  const done = await restUpload(server.url, bytes(30_000), { speed: 0, filename: 'done.zip' })
  await waitForStatus(server.url, done.body.upload_id, 'completed')
  // A tus upload as long as the file the commands send.
  const tus = await tusCreate(server.url, 50_000, { filename: 'file.zip' })
  env = {
    ...(process.env as Record<string, string>),
    ID: running.body.upload_id,
    DONE: done.body.upload_id,
    TUS: tus.id,
  }
})
afterAll(async () => {
  await server.stop()
  await rm(scratch, { recursive: true, force: true })
})

const placeholders = (text: string) =>
  text
    .replaceAll('http://localhost:8000', server.url)
    .replaceAll('/path/to/file.zip', join(scratch, 'input', 'file.zip'))
    .replaceAll('<upload_id>', env.DONE!)
    .replaceAll('<tus_id>', env.TUS!)
    .replaceAll('…', env.DONE!)

describe('README.md', () => {
  it('shows only curl commands and variables besides npm’s own', async () => {
    const commands = await readmeCommands()
    expect(commands.length).toBeGreaterThan(10)
    const others = commands.filter((c) => !/^(curl |B=|npm )/.test(c.text))
    expect(others).toEqual([])
  })

  it('every curl command runs as written and gets a successful answer', async () => {
    const commands = (await readmeCommands()).filter((c) => !c.text.startsWith('npm '))
    const assignments: string[] = []
    for (const { text, line } of commands) {
      if (/^\w+=/.test(text)) {
        assignments.push(placeholders(text))
        continue
      }
      // -f: an HTTP error answer fails the command; -sS: quiet unless something went wrong.
      const script = `set -e\n${assignments.join('\n')}\n${placeholders(text).replace(/^curl /, 'curl -fsS ')}`
      const result = await run('bash', ['-c', script], { cwd: scratch, env, timeout: 15_000 }).catch(
        (error: { stderr?: string; code?: number }) => ({
          stdout: '',
          stderr: `exit ${error.code}: ${error.stderr}`,
        }),
      )
      expect(result.stderr, `README.md line ${line}: ${text}`).toBe('')
      if (result.stdout.startsWith('{'))
        expect(JSON.parse(result.stdout), `line ${line}`).not.toHaveProperty('errors')
    }
    // The downloads landed where the commands said.
    const saved = await readdir(scratch)
    expect(saved).toContain('done.zip') // -OJ: the uploaded name
    expect((await readFile(join(scratch, 'file.zip'))).length).toBe(30_000) // -o file.zip
    // The tus sequence sent the whole file, and its transfer ran like any upload's.
    const tus = await waitForStatus(server.url, env.TUS!, 'completed')
    expect(tus).toMatchObject({ filename: 'file.zip', uploaded_size: 50_000 })
  })
})

describe('README.md tables', () => {
  /** The first cell of each row of the first table after `heading`, without its backticks. */
  async function firstCells(heading: string): Promise<string[]> {
    const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8')
    const section = readme.slice(readme.indexOf(`\n${heading}\n`))
    const table = section.slice(section.indexOf('\n|')).split('\n\n')[0] ?? ''
    return table
      .split('\n')
      .slice(3) // the leading newline, the header and its rule
      .map((row) => (row.split('|')[1] ?? '').trim().replace(/^`|`$/g, ''))
  }

  it('the Configuration table lists exactly the settings the server reads', async () => {
    expect((await firstCells('## Configuration')).sort()).toEqual([...SETTINGS].sort())
  })

  it('the REST table lists exactly the routes the server has', async () => {
    const documented = (await firstCells('## REST API')).map((cell) => cell.replace(/\?.*$/, ''))
    expect(documented.sort()).toEqual(
      routes.map((route) => `${route.method} ${route.path.replace(/:id/g, '{id}')}`).sort(),
    )
  })
})
