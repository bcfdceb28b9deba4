import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SETTINGS } from '../src/config.js'
import { routes } from '../src/rest/routes.js'
import { bytes, restUpload, waitFor, waitForStatus } from './support/clients.js'
import { freePort } from './support/redis.js'
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
  /** The `## ` heading the command is under. */
  section: string
}

/** The section whose commands start Redis, instances and nginx: run by its own test, below. */
const SEVERAL = 'Several instances'
/** Its command needs a moto server and a bucket: not run here (see the report of issue 21). */
const S3 = 'Store in S3'

/** The logical lines of every ```sh block (continuations joined), without comments or blank lines. */
async function readmeCommands(): Promise<Command[]> {
  const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8')
  const commands: Command[] = []
  const lines = readme.split('\n')
  let inBlock = false
  let pending: Command | undefined
  let section = ''
  for (const [i, raw] of lines.entries()) {
    if (!inBlock && raw.startsWith('## ')) section = raw.slice(3).trim()
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
      : { text: text.trim(), line: i + 1, section }
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
  // Big enough that the README's resume at 2 MiB/s is still running when its next line sets a new speed,
  // however busy the machine (200 KB took 0.1 s, and the next command found it completed).
  const running = await restUpload(server.url, bytes(16_000_000), { speed: 1000, filename: 'running.bin' })
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
    const commands = (await readmeCommands()).filter((c) => c.section !== SEVERAL && c.section !== S3)
    expect(commands.length).toBeGreaterThan(10)
    const others = commands.filter((c) => !/^(curl |B=|npm )/.test(c.text))
    expect(others).toEqual([])
  })

  it('every curl command runs as written and gets a successful answer', async () => {
    const commands = (await readmeCommands()).filter(
      (c) => !c.text.startsWith('npm ') && c.section !== SEVERAL && c.section !== S3,
    )
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

/** The addresses listening on `port` (IPv4 and IPv6), from the kernel's own table. */
async function listeners(port: number): Promise<string[]> {
  const found: string[] = []
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = await readFile(table, 'utf8').catch(() => '')
    for (const row of text.split('\n').slice(1)) {
      const [, local, , state] = row.trim().split(/\s+/)
      if (state !== '0A' || !local) continue // 0A: LISTEN
      const [address, hexPort] = local.split(':')
      if (parseInt(hexPort!, 16) === port) found.push(address!)
    }
  }
  return found
}

const IPV4_LOOPBACK = '0100007F' // 127.0.0.1, as /proc/net/tcp writes it

describe('README.md, "Several instances"', () => {
  const started: { text: string; child: ChildProcess; exited: Promise<unknown>; output: string[] }[] = []
  let home: string
  afterAll(async () => {
    // What the README's `kill %1 %2 %3 %4` does: a TERM to each job's process group, last started first.
    for (const job of started.reverse()) {
      if (job.child.exitCode !== null || job.child.signalCode !== null) continue
      process.kill(-job.child.pid!, 'SIGTERM')
      const stopped = await Promise.race([
        job.exited.then(() => true),
        new Promise((resolve) => setTimeout(() => resolve(false), 15_000)),
      ])
      if (!stopped) process.kill(-job.child.pid!, 'SIGKILL')
    }
    await Promise.all(started.map((job) => job.exited))
    if (home) await rm(home, { recursive: true, force: true })
  })

  it(
    'starts Redis, two instances and nginx as written, all on loopback, and its curls get through nginx',
    { timeout: 180_000 },
    async () => {
      const commands = (await readmeCommands()).filter((c) => c.section === SEVERAL)
      expect(commands.length).toBeGreaterThanOrEqual(4)
      // What the test must change, and nothing else: $HOME (a fresh folder), the four ports (free ones, in
      // the commands and in the copy of deploy/nginx.conf they use), and the file the upload sends.
      home = await mkdtemp(join(tmpdir(), 'readme-home-'))
      const ports = new Map<string, number>()
      for (const port of ['6379', '8001', '8002', '8000']) ports.set(port, await freePort())
      const withPorts = (text: string) =>
        text.replace(/\b(6379|8001|8002|8000)\b/g, (port) => String(ports.get(port)))
      const shipped = await readFile(new URL('../deploy/nginx.conf', import.meta.url), 'utf8')
      const config = join(home, 'nginx.conf')
      await writeFile(config, withPorts(shipped))
      await writeFile(join(home, 'file.zip'), bytes(100_000))
      const repo = new URL('..', import.meta.url).pathname
      const env = { ...(process.env as Record<string, string>), HOME: home }
      const substitute = (text: string) =>
        withPorts(text)
          .replaceAll('"$PWD/deploy/nginx.conf"', config)
          .replaceAll('/path/to/file.zip', join(home, 'file.zip'))

      const answers: string[] = []
      for (const { text, line } of commands) {
        const command = substitute(text)
        const where = `README.md line ${line}: ${text}`
        if (command.endsWith('&')) {
          // A job in the background, in its own process group, as an interactive shell starts one.
          const child = spawn('bash', ['-c', command.slice(0, -1)], {
            cwd: repo,
            env,
            detached: true,
            stdio: ['ignore', 'pipe', 'pipe'],
          })
          const job = { text, child, exited: once(child, 'exit'), output: [] as string[] }
          child.stdout!.on('data', (chunk: Buffer) => job.output.push(chunk.toString()))
          child.stderr!.on('data', (chunk: Buffer) => job.output.push(chunk.toString()))
          started.push(job)
          // It is ready once the port it names answers (nginx's is the one its config listens on).
          const port = Number(
            /--port (\d+)/.exec(command)?.[1] ??
              /\bPORT=(\d+)/.exec(command)?.[1] ??
              (command.startsWith('nginx ') ? ports.get('8000') : NaN),
          )
          expect(port, where).toBeGreaterThan(0)
          await waitFor(async () => {
            if (child.exitCode !== null) throw new Error(`${where}\nexited: ${job.output.join('')}`)
            if (command.startsWith('redis-server ')) return await reachable(port)
            const path = command.startsWith('nginx ') ? '/healthz' : '/readyz'
            const response = await fetch(`http://127.0.0.1:${port}${path}`).catch(() => undefined)
            return response?.status === 200
          }, 60_000)
          // Bound to loopback, and only there.
          expect(await listeners(port), where).toEqual([IPV4_LOOPBACK])
          continue
        }
        const script = `set -e\n${command.replace(/^curl /, 'curl -fsS ')}`
        const result = await run('bash', ['-c', script], { cwd: home, env, timeout: 30_000 }).catch(
          (error: { stderr?: string; code?: number }) => ({
            stdout: '',
            stderr: `exit ${error.code}: ${error.stderr}`,
          }),
        )
        expect(result.stderr, where).toBe('')
        answers.push(result.stdout)
      }
      expect(started.map((job) => job.text.split(' ')[0])).toEqual([
        'redis-server',
        'REDIS_URL=redis://127.0.0.1:6379',
        'REDIS_URL=redis://127.0.0.1:6379',
        'nginx',
      ])
      // The upload went through nginx to an instance, and the list (from either instance) has it.
      const upload = answers.find((answer) => answer.includes('upload_id'))
      expect(upload).toBeDefined()
      const id = (JSON.parse(upload!) as { upload_id: string }).upload_id
      await waitForStatus(`http://127.0.0.1:${ports.get('8000')}`, id, 'completed')
      const list = answers.find((answer) => answer.startsWith('{"uploads"'))
      expect(list).toContain(id)
      // Its files are where the commands said.
      expect((await readdir(join(home, 'uploads'))).some((name) => name.startsWith(id))).toBe(true)
      expect(await readdir(join(home, 'uploads-redis'))).not.toEqual([])
    },
  )
})

/** Whether something accepts connections on 127.0.0.1:`port`. */
function reachable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}
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
  it('the Layout names only files and folders that exist, and every folder of src/', async () => {
    const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8')
    const block = readme.slice(readme.indexOf('### Layout')).split('```')[1] ?? ''
    // Each line names a path (a folder ends in /) relative to the folder of the line it is indented under.
    const named: string[] = []
    const parents: { indent: number; path: string }[] = []
    for (const line of block.split('\n').slice(1)) {
      // A line names one path, or several separated by commas, before its description.
      const match = /^( *)((?:[\w.-]+\/?)+(?:, [\w./-]+)*)(?: |$)/.exec(line)
      if (!match) continue
      const indent = match[1]!.length
      while (parents.length > 0 && parents.at(-1)!.indent >= indent) parents.pop()
      const paths = match[2]!.split(', ').map((name) => `${parents.at(-1)?.path ?? ''}${name}`)
      named.push(...paths)
      const path = paths[0]!
      if (path.endsWith('/')) parents.push({ indent, path })
    }
    const exists = async (path: string) =>
      readdir(new URL(`../${path.replace(/\/$/, '')}`, import.meta.url)).then(
        () => true,
        async () =>
          readFile(new URL(`../${path}`, import.meta.url)).then(
            () => true,
            () => false,
          ),
      )
    const missing = []
    for (const path of named) if (!(await exists(path))) missing.push(path)
    expect(missing).toEqual([])
    const folders = (await readdir(new URL('../src', import.meta.url), { withFileTypes: true }))
      .filter((entry) => entry.isDirectory() && entry.name !== 'generated')
      .map((entry) => `src/${entry.name}/`)
    expect(folders.filter((folder) => !named.some((path) => path.startsWith(folder)))).toEqual([])
  })
})
