import { createHash } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { bytes, gql, restUpload, waitFor } from './support/clients.js'
import { killAll, ndjson, startCli, startProcess, UPCTL, upctl } from './support/cli.js'
import { startProxy, type Proxy } from './support/proxy.js'
import { startServer, type TestServer } from './support/server.js'

/**
 * upctl, the terminal client (issue 14): the real built binary (`node dist/cli/upctl.js`, as `npm install -g`
 * links it) as a child process, against a real server.
 */

const sha = (content: Uint8Array) => createHash('sha256').update(content).digest('hex')
const KiB = 1024
const MiB = 1024 * 1024

interface Seen {
  id: string
  filename: string
  status: string
  receivedSize: number
  uploadedSize: number
  totalSize: number
  targetSpeed: number
  sha256: string
}

let server: TestServer
let work: string
/** Each test's own folder: its files, and upctl's state (UPCTL_STATE) so no put resumes another's. */
let dir: string

beforeAll(async () => {
  server = await startServer()
  work = await mkdtemp(join(tmpdir(), 'upctl-test-'))
})
afterAll(async () => {
  killAll()
  await server.stop()
  await rm(work, { recursive: true, force: true })
})
afterEach(() => killAll())

async function freshDir(): Promise<string> {
  dir = await mkdtemp(join(work, 't'))
  return dir
}

/** upctl's environment in a test: the server, a state folder of the test's own, no token from outside. */
const env = (extra: Record<string, string | undefined> = {}) => ({
  UPCTL_SERVER: server.url,
  UPCTL_STATE: join(dir, 'state'),
  API_TOKEN: undefined,
  ...extra,
})

async function file(name: string, size: number): Promise<{ path: string; content: Buffer }> {
  const content = bytes(size)
  const path = join(dir, name)
  await writeFile(path, content)
  return { path, content }
}

const FIELDS = 'id filename status receivedSize uploadedSize totalSize targetSpeed sha256'
async function uploadOf(id: string, url = server.url): Promise<Seen> {
  const { data, errors } = await gql<{ upload: Seen }>(
    url,
    `query ($id: ID!) { upload(id: $id) { ${FIELDS} } }`,
    {
      id,
    },
  )
  if (!data?.upload) throw new Error(JSON.stringify(errors))
  return data.upload
}
const uploadCount = async () =>
  (await gql<{ uploadCounts: { total: number } }>(server.url, '{ uploadCounts { total } }')).data
    ?.uploadCounts.total ?? -1

/** One line on stderr, and nothing else there. */
function oneLine(stderr: string): string {
  const lines = stderr.split('\n').filter((line) => line !== '')
  expect(lines, `stderr: ${stderr}`).toHaveLength(1)
  expect(stderr).not.toMatch(/\n\s+at /)
  return lines[0] ?? ''
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const probe = createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const address = probe.address()
  await new Promise<void>((resolve) => probe.close(() => resolve()))
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

const ESC = '\u001b'
const ANSI = `${ESC}[`

describe('upctl put', () => {
  it('--json: NDJSON events in order (sending, received, storing), the last COMPLETED with the sha256 of the file', async () => {
    await freshDir()
    const { path, content } = await file('report.bin', 256 * KiB)
    const run = await upctl(['put', path, '--speed', '128K', '--json'], env())
    expect(run.stderr).toBe('')
    expect(run.code).toBe(0)
    const events = ndjson(run.stdout)
    const kinds = events.map((e) =>
      e.event === 'progress' ? `progress:${String(e.stage)}` : String(e.event),
    )
    // sending (with its progress), then received once, then the stored stage, then done: never out of order.
    const order = ['sending', 'progress:sending', 'received', 'progress:storing', 'done']
    const ranks = kinds.map((kind) => order.indexOf(kind))
    expect(ranks).not.toContain(-1)
    expect(ranks).toEqual([...ranks].sort((a, b) => a - b))
    expect(kinds.filter((k) => k === 'received')).toHaveLength(1)
    expect(kinds.at(-1)).toBe('done')
    expect(kinds.filter((k) => k === 'done')).toHaveLength(1)

    const done = events.at(-1)!
    expect(done).toMatchObject({
      file: path,
      status: 'COMPLETED',
      sha256: sha(content),
      size: content.length,
    })
    const id = String(done.id)
    expect(events.every((e) => e.id === id || (e.event === 'progress' && e.id === null))).toBe(true)
    const first = events[0]!
    expect(first).toMatchObject({ event: 'sending', id, offset: 0, size: content.length })

    // Bytes only go forward, in each stage; storing was followed live (some events between 0 and all).
    const sent = events.filter((e) => e.stage === 'sending').map((e) => Number(e.bytes))
    expect(sent).toEqual([...sent].sort((a, b) => a - b))
    const stored = events.filter((e) => e.stage === 'storing').map((e) => Number(e.uploadedSize))
    expect(stored).toEqual([...stored].sort((a, b) => a - b))
    expect(stored.some((n) => n > 0 && n < content.length)).toBe(true)
    // Each stage's last progress event has all of the file, as a finished bar does.
    expect(sent.at(-1)).toBe(content.length)
    expect(stored.at(-1)).toBe(content.length)

    // What the server says: the same file, at 128 KiB/s (K = 1024).
    expect(await uploadOf(id)).toMatchObject({
      filename: 'report.bin',
      status: 'COMPLETED',
      sha256: sha(content),
      targetSpeed: 128 * 1024,
    })
  }, 60_000)

  it('without a terminal prints plain lines (no escape codes): each stage, then how each file ended', async () => {
    await freshDir()
    const a = await file('a.bin', 64 * KiB)
    const b = await file('b.bin', 32 * KiB)
    const run = await upctl(['put', a.path, b.path, '--speed', '0'], env())
    expect(run.stderr).toBe('')
    expect(run.code).toBe(0)
    expect(run.stdout).not.toContain('\u001b')
    expect(run.stdout).toMatch(/^a\.bin: sending \d+% /m)
    expect(run.stdout).toMatch(/^a\.bin: completed, 64 KiB stored \(id [\w-]+\), sha256 [0-9a-f]{64}$/m)
    expect(run.stdout).toContain(`sha256 ${sha(a.content)}`)
    expect(run.stdout).toMatch(/^b\.bin: completed, 32 KiB stored \(id [\w-]+\), sha256 [0-9a-f]{64}$/m)
    expect(run.stdout).toContain(`sha256 ${sha(b.content)}`)
  }, 60_000)

  it('--detach, then pause, status, resume --speed and watch to the end', async () => {
    await freshDir()
    const { path, content } = await file('slow.bin', 1 * MiB)
    const detached = await upctl(['put', path, '--detach', '--speed', '16K'], env())
    expect(detached.stderr).toBe('')
    expect(detached.code).toBe(0)
    // Without a terminal, --detach prints the id alone, for scripts.
    const id = detached.stdout.trim()
    expect(id).toMatch(/^[\w-]{8,}$/)
    expect(detached.stdout).toBe(`${id}\n`)
    const started = await uploadOf(id)
    expect(started).toMatchObject({ receivedSize: content.length, targetSpeed: 16 * 1024 })
    expect(['RECEIVING', 'IN_PROGRESS']).toContain(started.status)

    const faster = await upctl(['speed', id, '32K'], env())
    expect(faster).toMatchObject({ code: 0, stderr: '' })
    expect(faster.stdout).toContain('32 KiB/s')
    expect((await uploadOf(id)).targetSpeed).toBe(32 * 1024)

    const paused = await upctl(['pause', id], env())
    expect(paused).toMatchObject({ code: 0, stderr: '' })
    expect(paused.stdout).toMatch(new RegExp(`^paused ${id} \\(slow\\.bin\\) at \\d+%`))
    expect((await uploadOf(id)).status).toBe('PAUSED')

    const status = await upctl(['status', id], env())
    expect(status).toMatchObject({ code: 0, stderr: '' })
    expect(status.stdout).toMatch(/^status:\s+paused$/m)
    expect(status.stdout).toMatch(/^name:\s+slow\.bin$/m)
    expect(status.stdout).toContain(`sha256:   ${sha(content)}`)
    const statusJson = await upctl(['status', id, '--json'], env())
    expect(JSON.parse(statusJson.stdout)).toMatchObject({ id, status: 'PAUSED', targetSpeed: 32 * 1024 })

    // watch, started while it is paused, follows it through resume to its end.
    const watching = startCli(['watch', id], env())
    await watching.line((line) => /^slow\.bin: paused \d+%/.test(line), 'watch shows the paused upload')
    const resumed = await upctl(['resume', id, '--speed', '256K'], env())
    expect(resumed).toMatchObject({ code: 0, stderr: '' })
    expect(resumed.stdout.trim()).toMatch(
      new RegExp(`^resumed ${id} \\(slow\\.bin\\) at \\d+%.*, at 256 KiB/s$`),
    )
    const watched = await watching.exited
    expect(watched.stderr).toBe('')
    expect(watched.code).toBe(0)
    expect(watched.stdout).not.toContain('\u001b')
    expect(watched.stdout).toMatch(/^slow\.bin: storing \d+% /m)
    expect(watched.stdout.trim().split('\n').at(-1)).toBe(
      `slow.bin: completed, 1 MiB stored (id ${id}), sha256 ${sha(content)}`,
    )
    expect(await uploadOf(id)).toMatchObject({ status: 'COMPLETED', targetSpeed: 256 * 1024 })
  }, 90_000)

  it('follows its upload across a restart of the server, to the end', async () => {
    await freshDir()
    let own = await startServer()
    const proxy = await startProxy(own.url)
    try {
      const { path, content } = await file('through.bin', 256 * KiB)
      const putting = startCli(['put', path, '--speed', '64K', '--json', '--server', proxy.url], env())
      await putting.line((line) => /"stage":"storing".*"uploadedSize":[1-9]/.test(line), 'storing has begun')
      // The server stops (ending its subscriptions and sockets) and starts again on the same folder.
      own = await own.restart()
      proxy.retarget(own.url)
      const before = ndjson(putting.stdout()).length
      const run = await putting.exited
      expect(run.stderr).toBe('')
      expect(run.code).toBe(0)
      const events = ndjson(run.stdout)
      // Progress came again after the restart, and the file completed, whole.
      expect(events.slice(before).some((e) => e.stage === 'storing')).toBe(true)
      expect(events.at(-1)).toMatchObject({ event: 'done', status: 'COMPLETED', sha256: sha(content) })
    } finally {
      await proxy.close()
      await own.stop()
    }
  }, 90_000)

  it('watch, when the server goes away for good: exit 1 with one line naming why, never [object Object]', async () => {
    await freshDir()
    const own = await startServer()
    let stopped = false
    try {
      const started = await restUpload(own.url, bytes(256 * KiB), { filename: 'gone.bin', speed: 1024 })
      const id = started.body.upload_id
      const watching = startCli(['watch', id, '--json', '--server', own.url], env())
      await watching.line((line) => line.includes(`"id":"${id}"`), 'watch --json prints the first event')
      // Its subscription ends with the server; every reconnection is refused, until graphql-ws gives up
      // (five retries, backing off: about 30 to 45 s) and hands over the WebSocket's error event.
      await own.stop()
      stopped = true
      const run = await watching.exited
      expect(run.code).toBe(1)
      expect(oneLine(run.stderr)).toBe(`upctl: cannot reach the server at ${own.url} (connection refused)`)
    } finally {
      if (!stopped) await own.stop()
    }
  }, 90_000)

  it('an upload canceled while put and watch follow it: both exit 1, saying so', async () => {
    await freshDir()
    const { path } = await file('doomed.bin', 256 * KiB)
    const putting = startCli(['put', path, '--speed', '8K', '--json'], env())
    const received = JSON.parse(
      await putting.line((line) => line.includes('"event":"received"'), 'put receives the file'),
    ) as { id: string }
    const { id } = received
    const watching = startCli(['watch', id, '--json'], env())
    await watching.line((line) => line.includes(`"id":"${id}"`), 'watch --json prints the first event')
    const canceled = await upctl(['cancel', id], env())
    expect(canceled).toMatchObject({ code: 0, stderr: '' })
    expect(canceled.stdout).toBe(`canceled ${id} (doomed.bin); its partial bytes are removed\n`)
    const [put, watched] = await Promise.all([putting.exited, watching.exited])
    expect(put.code).toBe(1)
    expect(ndjson(put.stdout).at(-1)).toMatchObject({ event: 'done', id, status: 'CANCELED', error: null })
    expect(watched.code).toBe(1)
    expect(ndjson(watched.stdout).at(-1)).toMatchObject({ id, status: 'CANCELED' })
  }, 60_000)
})

describe('units and usage', () => {
  it('reads 2.5MB/s, 512KiB, 1M and unlimited with binary prefixes, as --help says', async () => {
    await freshDir()
    const help = await upctl(['--help'], env())
    expect(help.code).toBe(0)
    expect(help.stdout).toMatch(/1K = 1KB = 1KiB = 1024 bytes\/s/)
    const { path } = await file('units.bin', 64 * KiB)
    const id = (await upctl(['put', path, '--detach', '--speed', '2.5MB/s'], env())).stdout.trim()
    expect((await uploadOf(id)).targetSpeed).toBe(2_621_440)
    // One paused (a paused upload keeps a new speed for its resume), so it never ends during the test.
    const slow = (await upctl(['put', path, '--detach', '--speed', '1'], env())).stdout.trim()
    expect((await upctl(['pause', slow], env())).code).toBe(0)
    for (const [written, value] of [
      ['512KiB', 512 * 1024],
      ['1M', 1024 * 1024],
      ['512K', 512 * 1024],
      ['100/s', 100],
      ['unlimited', 0],
    ] as const) {
      const run = await upctl(['speed', slow, written], env())
      expect(run, written).toMatchObject({ code: 0, stderr: '' })
      expect((await uploadOf(slow)).targetSpeed, written).toBe(value)
    }
  }, 60_000)

  it('a bad unit exits 2 with one line, before anything reaches the server', async () => {
    await freshDir()
    const { path } = await file('units.bin', 1 * KiB)
    const before = await uploadCount()
    for (const args of [
      ['put', path, '--speed', '1X'],
      ['put', path, '--speed', '10Mb'],
      ['put', path, '--speed=-5K'],
      ['put', path, '--speed', ''],
      ['resume', 'some-id', '--speed', 'fast'],
      ['speed', 'some-id', '0.1'],
    ]) {
      const run = await upctl(args, env())
      expect(run.code, args.join(' ')).toBe(2)
      expect(oneLine(run.stderr)).toMatch(/^upctl: bad speed ".*": .* \(see upctl \w+ --help\)$/)
      expect(run.stdout).toBe('')
    }
    expect(await uploadCount()).toBe(before)
  }, 60_000)

  it('usage errors exit 2 with one line', async () => {
    await freshDir()
    for (const args of [
      [],
      ['fly'],
      ['put'],
      ['ls', 'extra'],
      ['put', 'x', '--nope'],
      ['speed', 'id-only'],
    ]) {
      const run = await upctl(args, env())
      expect(run.code, args.join(' ')).toBe(2)
      expect(oneLine(run.stderr)).toMatch(/^upctl: .*\(see upctl( \w+)? --help\)$/)
    }
  }, 60_000)

  it('a missing file exits 1 with one line naming it, and sends nothing (not even the files that exist)', async () => {
    await freshDir()
    const { path } = await file('here.bin', 1 * KiB)
    const missing = join(dir, 'not-here.bin')
    const before = await uploadCount()
    const run = await upctl(['put', path, missing], env())
    expect(run.code).toBe(1)
    expect(oneLine(run.stderr)).toBe(`upctl: cannot read ${missing}: no such file; nothing was sent`)
    expect(run.stdout).toBe('')
    expect(await uploadCount()).toBe(before)
  }, 30_000)

  it('an unreachable server exits 1 with one line, for put, ls, watch and get', async () => {
    await freshDir()
    const { path } = await file('here.bin', 1 * KiB)
    const url = `http://127.0.0.1:${await closedPort()}`
    for (const args of [['put', path], ['ls'], ['watch'], ['get', 'some-id'], ['status', 'some-id']]) {
      const run = await upctl([...args, '--server', url], env())
      expect(run.code, args.join(' ')).toBe(1)
      expect(oneLine(run.stderr)).toBe(`upctl: cannot reach the server at ${url} (connection refused)`)
    }
  }, 60_000)
})

describe('upctl ls', () => {
  it('pages through every upload, oldest first: a table, --status filters, --json', async () => {
    await freshDir()
    // A server of its own, so the list is exactly what this test made: more than one page (100) of them.
    const own = await startServer()
    try {
      const ids: string[] = []
      for (let batch = 0; batch < 11; batch++) {
        const answers = await Promise.all(
          Array.from({ length: 10 }, (_, i) =>
            restUpload(own.url, bytes(100 + i), { filename: `f${batch}-${i}.txt`, speed: 0 }),
          ),
        )
        ids.push(...answers.map((a) => a.body.upload_id))
      }
      const { path } = await file('running.bin', 64 * KiB)
      const running = (
        await upctl(['put', path, '--detach', '--speed', '1K', '--server', own.url], env())
      ).stdout.trim()
      ids.push(running)
      await waitFor(async () => {
        const { data } = await gql<{ uploadCounts: { completed: number } }>(
          own.url,
          '{ uploadCounts { completed } }',
        )
        return data?.uploadCounts.completed === 110
      }, 30_000)

      const json = await upctl(['ls', '--json', '--server', own.url], env())
      expect(json).toMatchObject({ code: 0, stderr: '' })
      const listed = JSON.parse(json.stdout) as Seen[]
      // Creation order; uploads made at once by the batches are in the server's order, which the ids give.
      expect(listed.map((u) => u.id).sort()).toEqual([...ids].sort())
      expect(listed.at(-1)?.id).toBe(running)

      const table = await upctl(['ls', '--server', own.url], env())
      expect(table).toMatchObject({ code: 0, stderr: '' })
      const lines = table.stdout.trim().split('\n')
      expect(lines[0]).toMatch(/^ID\s+NAME\s+STATUS\s+PROGRESS\s+SPEED \(NOW \/ TARGET\)\s+SIZE$/)
      expect(lines).toHaveLength(112)
      expect(lines.slice(1).map((line) => line.split(/\s+/)[0])).toEqual(listed.map((u) => u.id))
      expect(lines.at(-1)).toMatch(
        new RegExp(
          `^${running}\\s+running\\.bin\\s+in_progress\\s+\\d+%\\s+[\\d.]+ (B|KiB)/s / 1 KiB/s\\s+64 KiB$`,
        ),
      )
      expect(table.stdout).toMatch(/^\S+\s+f0-3\.txt\s+completed\s+100%\s+0 B\/s \/ unlimited\s+103 B$/m)

      const onlyRunning = await upctl(['ls', '--status', 'in_progress', '--server', own.url], env())
      expect(onlyRunning.stdout.trim().split('\n')).toHaveLength(2)
      expect(onlyRunning.stdout).toContain(running)
      const completed = JSON.parse(
        (await upctl(['ls', '--status', 'completed', '--json', '--server', own.url], env())).stdout,
      ) as Seen[]
      expect(completed).toHaveLength(110)
      expect(completed.every((u) => u.status === 'COMPLETED')).toBe(true)

      const bad = await upctl(['ls', '--status', 'done', '--server', own.url], env())
      expect(bad.code).toBe(2)
      expect(oneLine(bad.stderr)).toMatch(/^upctl: unknown status "done": use receiving, in_progress, paused/)
    } finally {
      await own.stop()
    }
  }, 120_000)
})

describe('upctl get and rm', () => {
  let proxy: Proxy
  beforeAll(async () => {
    proxy = await startProxy(server.url)
  })
  afterAll(() => proxy.close())

  async function stored(name: string, size: number) {
    const { path, content } = await file(name, size)
    const run = await upctl(['put', path, '--speed', '0', '--json'], env())
    expect(run.code).toBe(0)
    return { id: String(ndjson(run.stdout).at(-1)?.id), content }
  }

  it('an interrupted get keeps its bytes aside, never under the name, and the same command fetches only the rest (Range, If-Range)', async () => {
    await freshDir()
    const { id, content } = await stored('data.bin', 512 * KiB)

    const whole = join(dir, 'whole.bin')
    const first = await upctl(['get', id, '-o', whole], env())
    expect(first).toMatchObject({ code: 0, stderr: '' })
    expect((await readFile(whole)).equals(content)).toBe(true)
    expect(first.stdout).toBe(`${whole}: saved, 512 KiB, sha256 ${sha(content)}\n`)

    // A slow download, interrupted a part of the way.
    const into = await mkdtemp(join(dir, 'into-'))
    const target = join(into, 'cut.bin')
    const args = ['get', id, '-o', target, '--json', '--server', proxy.url]
    proxy.setReturnRate(128 * KiB)
    let stopped
    try {
      const cutting = startCli(args, env())
      await cutting.line((line) => Number(JSON.parse(line).bytes) >= 100_000, '100 KB downloaded')
      // Nothing under its name while it is incomplete.
      expect(await readdir(into)).not.toContain('cut.bin')
      cutting.child.kill('SIGINT')
      stopped = await cutting.exited
    } finally {
      proxy.setReturnRate(0)
    }
    expect(stopped.code).toBe(130)
    const partial = `.cut.bin.upctl-${id}-${sha(content).slice(0, 16)}.part`
    expect(oneLine(stopped.stderr)).toMatch(
      new RegExp(
        `^upctl: interrupted: [\\d.]+ KiB of 512 KiB of .*cut\\.bin downloaded, kept in ${partial.replace(/\./g, '\\.')}; to continue, run: upctl get `,
      ),
    )
    expect(await readdir(into)).toEqual([partial])
    const kept = await readFile(join(into, partial))
    expect(kept.length).toBeGreaterThan(0)
    expect(kept.length).toBeLessThan(content.length)
    expect(kept.equals(content.subarray(0, kept.length))).toBe(true)

    // The same command: only the rest, if the stored file is still the one whose start is kept.
    proxy.reset()
    const resumed = await upctl(args, env())
    expect(resumed).toMatchObject({ code: 0, stderr: '' })
    expect(await readdir(into)).toEqual(['cut.bin'])
    expect((await readFile(target)).equals(content)).toBe(true)
    const events = ndjson(resumed.stdout)
    expect(events.at(-1)).toMatchObject({
      event: 'done',
      id,
      status: 'COMPLETED',
      sha256: sha(content),
      resumedFrom: kept.length,
    })
    // Its last progress event has every byte (events are at most ten a second, and the last is never skipped).
    expect(events.at(-2)).toMatchObject({ event: 'progress', bytes: content.length, size: content.length })
    const request =
      /GET \/api\/files\/[^ ]+\/download HTTP\/1\.1\r\n([\s\S]*?)\r\n\r\n/.exec(proxy.sent())?.[1] ?? ''
    expect(request).toMatch(new RegExp(`^range: bytes=${kept.length}-$`, 'im'))
    expect(request).toMatch(new RegExp(`^if-range: "${sha(content)}"$`, 'im'))
    // Only the rest came back (the GraphQL answer and headers are a few KiB).
    expect(proxy.receivedBytes()).toBeLessThan(content.length - kept.length + 16 * KiB)
    expect(proxy.receivedBytes()).toBeGreaterThan(content.length - kept.length)

    // Run again on the whole file: nothing to fetch.
    const again = await upctl(['get', id, '-o', target], env())
    expect(again).toMatchObject({ code: 0, stderr: '' })
    expect(again.stdout).toContain('already complete')

    // A partial file whose bytes are not this file's start: the result cannot match its sha256, so nothing
    // appears under the name, the partial file (get's own) goes, and the next get starts clean.
    const other = join(into, 'other.bin')
    const wrongPartial = join(into, `.other.bin.upctl-${id}-${sha(content).slice(0, 16)}.part`)
    await writeFile(wrongPartial, bytes(200_000))
    const refused = await upctl(['get', id, '-o', other], env())
    expect(refused.code).toBe(1)
    expect(oneLine(refused.stderr)).toMatch(
      /^upctl: the download of .*other\.bin is 512 KiB with sha256 [0-9a-f]{64}, not upload .*; nothing was saved under its name and the partial file is removed: run the same command to download it again$/,
    )
    expect((await readdir(into)).sort()).toEqual(['cut.bin'])
    const clean = await upctl(['get', id, '-o', other], env())
    expect(clean).toMatchObject({ code: 0, stderr: '' })
    expect((await readFile(other)).equals(content)).toBe(true)
  }, 150_000)

  it('get never writes into a file it did not start: one already under the name stays untouched, and the line names -o and --force', async () => {
    await freshDir()
    const { id, content } = await stored('t4.bin', 300_000)
    const into = await mkdtemp(join(dir, 'into-'))
    const mine = join(into, 't4.bin')
    // Someone's own 18 bytes; a file of the same size; a longer one; even the first bytes of this very file,
    // fetched by something else: none of them is a download get began.
    for (const own of [
      Buffer.from('my own 18 bytes!!\n'),
      bytes(300_000),
      bytes(400_000),
      content.subarray(0, 1000),
    ]) {
      await writeFile(mine, own)
      const before = await stat(mine)
      const refused = await startCli(['get', id], env(), into).exited
      expect(refused.code).toBe(1)
      expect(refused.stdout).toBe('')
      expect(oneLine(refused.stderr)).toBe(
        `upctl: t4.bin already exists and is not upload ${id}'s file: nothing was written; save it elsewhere with -o FILE, or replace it with --force`,
      )
      expect((await readFile(mine)).equals(own)).toBe(true)
      expect((await stat(mine)).mtimeMs).toBe(before.mtimeMs)
      expect(await readdir(into)).toEqual(['t4.bin'])
    }

    // Elsewhere, with -o: the other file is left as it is.
    const elsewhere = await startCli(['get', id, '-o', 'theirs.bin'], env(), into).exited
    expect(elsewhere).toMatchObject({ code: 0, stderr: '' })
    expect((await readFile(join(into, 'theirs.bin'))).equals(content)).toBe(true)
    expect((await readFile(mine)).length).toBe(1000)

    // --force replaces it, with the whole file once it is checked.
    const forced = await startCli(['get', id, '--force'], env(), into).exited
    expect(forced).toMatchObject({ code: 0, stderr: '' })
    expect(forced.stdout).toBe(`t4.bin: saved, 293 KiB, sha256 ${sha(content)}\n`)
    expect((await readFile(mine)).equals(content)).toBe(true)
    expect((await readdir(into)).sort()).toEqual(['t4.bin', 'theirs.bin'])
  }, 120_000)

  it('get saves under the upload name by default, and refuses an upload that is not stored', async () => {
    await freshDir()
    const { id, content } = await stored('named.bin', 10 * KiB)
    // Into the working folder, under the upload's name.
    const into = await mkdtemp(join(dir, 'into-'))
    const ended = await startCli(['get', id], env(), into).exited
    expect(ended).toMatchObject({ code: 0, stderr: '' })
    expect((await readFile(join(into, 'named.bin'))).equals(content)).toBe(true)
    expect(ended.stdout).toBe(`named.bin: saved, 10 KiB, sha256 ${sha(content)}\n`)
    const { path } = await file('slow.bin', 64 * KiB)
    const slow = (await upctl(['put', path, '--detach', '--speed', '1K'], env())).stdout.trim()
    const refused = await upctl(['get', slow, '-o', join(dir, 'x')], env())
    expect(refused.code).toBe(1)
    expect(oneLine(refused.stderr)).toBe(
      `upctl: upload ${slow} has no stored file to download: it is IN_PROGRESS`,
    )
    await upctl(['cancel', slow], env())
  }, 60_000)

  it('rm deletes an ended upload; a running one must be canceled first; an unknown id exits 1', async () => {
    await freshDir()
    const { id } = await stored('gone.bin', 8 * KiB)
    const removed = await upctl(['rm', id], env())
    expect(removed).toMatchObject({ code: 0, stderr: '' })
    expect(removed.stdout).toBe(`deleted ${id} (gone.bin): its stored file and its record\n`)
    const after = await upctl(['status', id], env())
    expect(after.code).toBe(1)
    expect(oneLine(after.stderr)).toBe(`upctl: Upload "${id}" not found`)

    const { path } = await file('busy.bin', 64 * KiB)
    const busy = (await upctl(['put', path, '--detach', '--speed', '1K'], env())).stdout.trim()
    const early = await upctl(['rm', busy], env())
    expect(early.code).toBe(1)
    expect(oneLine(early.stderr)).toMatch(/^upctl: .*cancel/i)
    expect((await uploadOf(busy)).status).toBe('IN_PROGRESS')
    const canceled = await upctl(['cancel', busy], env())
    expect(canceled).toMatchObject({ code: 0, stderr: '' })
    expect((await upctl(['rm', busy], env())).code).toBe(0)
    expect((await upctl(['rm', busy], env())).code).toBe(1)
  }, 60_000)
})

describe('an interrupted put', () => {
  it('Ctrl-C leaves the upload resumable and says how to continue; the same command sends only the rest', async () => {
    await freshDir()
    const proxy = await startProxy(server.url)
    try {
      const size = 6 * MiB
      const { path, content } = await file('big.bin', size)
      // Slow on the way in, so that it can be interrupted half-sent.
      proxy.setRate(1 * MiB)
      const first = startCli(['put', path, '--speed', '0', '--json', '--server', proxy.url], env())
      const sending = JSON.parse(
        await first.line((line) => line.includes('"event":"sending"'), 'the first PATCH'),
      ) as { id: string; offset: number }
      expect(sending.offset).toBe(0)
      const { id } = sending
      await waitFor(async () => (await uploadOf(id)).receivedSize >= 512 * KiB, 30_000)
      // Nothing more reaches the server, however slow the machine is to deliver the Ctrl-C.
      proxy.hold()
      first.child.kill('SIGINT')
      const stopped = await first.exited
      // Whatever was still on its way goes with the connection (as when a client's cable is pulled out).
      proxy.cut()
      expect(stopped.code).toBe(130)
      const line = oneLine(stopped.stderr)
      expect(line).toMatch(
        new RegExp(
          `^upctl: interrupted: big\\.bin [\\d.]+ (KiB|MiB) of 6 MiB sent \\(upload ${id}\\); to continue, run the same command: upctl put `,
        ),
      )
      // Left on the server as it was: still arriving, not terminated.
      const before = await uploadOf(id)
      expect(before.status).toBe('RECEIVING')
      expect(before.receivedSize).toBeGreaterThan(0)
      expect(before.receivedSize).toBeLessThan(size)

      // The command it printed, run as printed.
      const command = line.split('run the same command: ')[1] ?? ''
      expect(command).not.toMatch(/['"]/)
      const [name, ...args] = command.split(' ')
      expect(name).toBe('upctl')
      expect(args).toEqual(['put', path, '--speed', '0', '--json', '--server', proxy.url])
      proxy.setRate(0)
      proxy.reset()
      const second = await upctl(args, env())
      expect(second).toMatchObject({ code: 0, stderr: '' })
      const events = ndjson(second.stdout)
      // The same upload, continued from where the server had it, not from 0.
      const patch = events.find((e) => e.event === 'sending')!
      expect(patch.id).toBe(id)
      expect(Number(patch.offset)).toBeGreaterThanOrEqual(before.receivedSize)
      expect(Number(patch.offset)).toBeLessThan(size)
      expect(events.find((e) => e.event === 'received')).toMatchObject({ id, resumedFrom: patch.offset })
      expect(events.at(-1)).toMatchObject({ event: 'done', id, status: 'COMPLETED', sha256: sha(content) })
      // What went over the wire: the rest of the file (and a few KiB of requests), and a PATCH at that offset.
      const rest = size - Number(patch.offset)
      expect(proxy.sentBytes()).toBeGreaterThanOrEqual(rest)
      expect(proxy.sentBytes()).toBeLessThan(rest + 32 * KiB)
      expect(proxy.sent()).toMatch(
        new RegExp(
          `PATCH /files/${id} HTTP/1\\.1\\r\\n(?:[^\\r\\n]+\\r\\n)*upload-offset: ${patch.offset}\\r\\n`,
          'i',
        ),
      )
      expect(proxy.sent()).not.toMatch(/POST \/files\/ HTTP/)
    } finally {
      await proxy.close()
    }
  }, 120_000)
})

/** The frames a terminal was drawn with: each line or redraw of one (cli-progress goes back with `ESC[1G`). */
const framesOf = (stdout: string) => stdout.split(new RegExp(`\r|\n|${ESC}\\[1G`))

/**
 * The last frame of `name`'s bar drawn before the line that replaced it (the first frame `final` matches), with
 * its percentage and bytes.
 */
function lastBarBefore(stdout: string, name: string, final: RegExp) {
  const frames = framesOf(stdout)
  const end = frames.findIndex((f) => final.test(f))
  expect(end, `no final line ${String(final)} in:\n${stdout}`).toBeGreaterThan(0)
  const bar = frames
    .slice(0, end)
    .filter((f) => f.includes(name) && /\[[█░]+\]/.test(f))
    .at(-1)
  expect(bar, `no bar of ${name} before its final line`).toBeDefined()
  const figures = /\]\s+(\d+)%\s+(\S+ \S+)\/(\S+ \S+)/.exec(bar ?? '')
  return { frame: bar ?? '', share: Number(figures?.[1]), done: figures?.[2], total: figures?.[3] }
}

describe('on a terminal', () => {
  it('put draws a live bar per file with its percentage, bytes, speed and time left (under script)', async () => {
    await freshDir()
    const { path, content } = await file('tty.bin', 512 * KiB)
    const inner = `stty cols 120 rows 20; exec ${process.execPath} ${UPCTL} put ${path} --speed 128K`
    const run = startProcess('script', ['-qefc', inner, '/dev/null'], { env: env(), timeoutMs: 90_000 })
    const { code, stdout } = await run.exited
    expect(code).toBe(0)
    // A real terminal: cursor movement and the bar's blocks.
    expect(stdout).toContain(ANSI)
    const frames = framesOf(stdout).filter((f) => f.includes('tty.bin') && f.includes('['))
    const storing = frames.filter((f) => /storing\s+\[[█░]+\]\s+\d+%/.test(f))
    const shares = new Set(storing.map((f) => Number(/\]\s+(\d+)%/.exec(f)?.[1])))
    // Several distinct percentages on the way (a live bar, not only a start and an end).
    expect([...shares].filter((n) => n > 0 && n < 100).length).toBeGreaterThanOrEqual(3)
    expect(storing.some((f) => /\d+(\.\d)? KiB\/512 KiB\s+[\d.]+ KiB\/s\s+\d+s left/.test(f))).toBe(true)
    // Each stage's bar ends full before the next replaces it: all sent, then all stored (then the final line).
    const sent = lastBarBefore(stdout, 'tty.bin', /tty\.bin\s+storing\s+\[/)
    expect(sent.frame).toMatch(/tty\.bin\s+sending\s+\[/)
    expect(sent, sent.frame).toMatchObject({ share: 100, done: '512 KiB', total: '512 KiB' })
    const last = lastBarBefore(stdout, 'tty.bin', /tty\.bin: completed/)
    expect(last, last.frame).toMatchObject({ share: 100, done: '512 KiB', total: '512 KiB' })
    // Its final line: what happened, and the id for what comes next (the server has the sha256).
    const id = new RegExp(`tty\\.bin: completed, 512 KiB stored \\(id ([\\w-]+)\\)`).exec(stdout)?.[1] ?? ''
    expect(await uploadOf(id)).toMatchObject({ status: 'COMPLETED', sha256: sha(content) })
  }, 90_000)

  it('watch ID draws its bar full (100 %, all the bytes) before the completed line replaces it', async () => {
    await freshDir()
    const { path } = await file('watched.bin', 256 * KiB)
    const id = (await upctl(['put', path, '--detach', '--speed', '16K'], env())).stdout.trim()
    // Paused until watch shows it, however long the terminal takes to start.
    expect((await upctl(['pause', id], env())).code).toBe(0)
    const inner = `stty cols 120 rows 20; exec ${process.execPath} ${UPCTL} watch ${id}`
    const run = startProcess('script', ['-qefc', inner, '/dev/null'], { env: env(), timeoutMs: 60_000 })
    await waitFor(() => /watched\.bin\s+paused\s+\[/.test(run.stdout()), 30_000)
    expect((await upctl(['resume', id, '--speed', '128K'], env())).code).toBe(0)
    const { code, stdout } = await run.exited
    expect(code).toBe(0)
    expect(stdout).toMatch(/watched\.bin\s+storing\s+\[[█░]+\]\s+\d+%/)
    const last = lastBarBefore(stdout, 'watched.bin', /watched\.bin: completed/)
    expect(last, last.frame).toMatchObject({ share: 100, done: '256 KiB', total: '256 KiB' })

    // Watched once it has ended: its bar is full from the first frame to the last, drawn before the line.
    const after = startProcess('script', ['-qefc', inner, '/dev/null'], { env: env(), timeoutMs: 60_000 })
    const ended = await after.exited
    expect(ended.code).toBe(0)
    const full = lastBarBefore(ended.stdout, 'watched.bin', /watched\.bin: completed/)
    expect(full, full.frame).toMatchObject({ share: 100, done: '256 KiB', total: '256 KiB' })
  }, 60_000)
})

describe('with API_TOKEN', () => {
  it('sends the token over HTTP, tus and graphql-ws; without it, one line and exit 1', async () => {
    await freshDir()
    const token = 'upctl-test-token-0123456789'
    const guarded = await startServer({ API_TOKEN: token })
    try {
      const { path, content } = await file('secret.bin', 64 * KiB)
      const run = await upctl(
        ['put', path, '--speed', '64K', '--json', '--token', token, '--server', guarded.url],
        env(),
      )
      expect(run.stderr).toBe('')
      expect(run.code).toBe(0)
      expect(ndjson(run.stdout).at(-1)).toMatchObject({ status: 'COMPLETED', sha256: sha(content) })
      // From the environment too.
      const listed = await upctl(['ls', '--json', '--server', guarded.url], env({ API_TOKEN: token }))
      expect(listed.code).toBe(0)
      expect(JSON.parse(listed.stdout)).toHaveLength(1)

      const refused = await upctl(['put', path, '--server', guarded.url], env())
      expect(refused.code).toBe(1)
      expect(oneLine(refused.stderr)).toMatch(/^upctl: .*--token or API_TOKEN/)
    } finally {
      await guarded.stop()
    }
  }, 60_000)
})
