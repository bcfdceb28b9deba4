import { randomUUID } from 'node:crypto'
import { mkdir, mkdtemp, open, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  attempt,
  KiB,
  makeFile,
  median,
  MiB,
  ms,
  now,
  percentile,
  postMultipart,
  spawnNode,
  startServer,
  waitReady,
  type BenchServer,
  type Row,
} from './lib.js'
import { largestGap, startSwarm, type Swarm } from './swarm.js'

const FIGURE = '12 state'
const STATE = '.uploads.json'

/** `count` COMPLETED records that pass recordProblem (src/seams/records/stored.ts); none has a file on disk. */
export function records(count: number) {
  const base = Date.parse('2026-01-01T00:00:00.000Z')
  return Array.from({ length: count }, (_, i) => {
    const id = randomUUID()
    const at = new Date(base + i * 1000).toISOString()
    const filename = `file-${i}.bin`
    return {
      id,
      filename,
      storedName: `${id}_${filename}`,
      status: 'COMPLETED',
      uploadedSize: 1024,
      totalSize: 1024,
      targetSpeed: MiB,
      sha256: (i.toString(16).padStart(8, '0') + 'a').repeat(8).slice(0, 64),
      error: null,
      createdAt: at,
      updatedAt: at,
      completedAt: at,
    }
  })
}

/** Writes text in pieces, so that 100k records are never one string. */
async function writeLines(path: string, pieces: Iterable<string>): Promise<number> {
  const handle = await open(path, 'w')
  let size = 0
  let buffer = ''
  try {
    for (const piece of pieces) {
      buffer += piece
      if (buffer.length > MiB) {
        size += (await handle.write(buffer)).bytesWritten
        buffer = ''
      }
    }
    size += (await handle.write(buffer)).bytesWritten
  } finally {
    await handle.close()
  }
  return size
}

/**
 * The server's state as it would be after `count` uploads: a lowdb snapshot {"version":2,"seq":0,"uploads"}
 * (src/seams/records/local.ts). With `journalToo`, also a journal longer than the snapshot (the same records
 * put again, then byte counts the store ignores for ended uploads), so the first change after start-up
 * starts a background compaction of every record.
 */
export async function writeState(
  dir: string,
  all: ReturnType<typeof records>,
  journalToo: boolean,
): Promise<void> {
  const snapshotBytes = await writeLines(
    join(dir, STATE),
    (function* () {
      yield '{"version":2,"seq":0,"uploads":{'
      for (const [i, r] of all.entries()) yield `${i ? ',' : ''}${JSON.stringify(r.id)}:${JSON.stringify(r)}`
      yield '}}'
    })(),
  )
  if (!journalToo) return
  await writeLines(
    join(dir, '.uploads.journal.1'),
    (function* () {
      let s = 0
      let bytes = 0
      for (const r of all) {
        const line = `${JSON.stringify({ s: ++s, put: r })}\n`
        bytes += line.length
        yield line
      }
      for (let i = 0; bytes < snapshotBytes * 1.1; i++) {
        const r = all[i % all.length]!
        const line = `${JSON.stringify({ s: ++s, p: [[r.id, 0, r.updatedAt]] })}\n`
        bytes += line.length
        yield line
      }
    })(),
  )
}

/** Spawn → /readyz 200, in ms. */
async function startTimed(dir: string): Promise<{ server: BenchServer; ms: number }> {
  const began = now()
  const server = await startServer({ UPLOAD_DIR: dir })
  try {
    await waitReady(server.url, 120_000, 2)
  } catch (error) {
    await server.stop()
    throw error
  }
  return { server, ms: now() - began }
}

/** The probe's answers over [from, to]: the largest gap, i.e. the longest the server could not answer. */
async function probeGaps(probe: Swarm, windows: Record<string, [number, number]>) {
  probe.send({ cmd: 'stop' })
  const { times } = await probe.next<{ times: number[] }>('times')
  return Object.fromEntries(
    Object.entries(windows).map(([k, [from, to]]) => [k, largestGap(times, from, to)]),
  )
}

/**
 * 12: a server whose state holds `count` records. (a) start-up until /readyz answers 200, against a bare
 * `node -e` that reads and parses the same file; (b) the longest the event loop is blocked (seen from
 * outside: a tiny request every 2 ms from a child process, the largest gap between answers) during state
 * changes and during a background compaction of every record; (c) pause answer times; (d) the probe's
 * largest gap while GET /api/uploads lists every record.
 */
export async function state(scratch: string, runs: number, count = 100_000): Promise<Row[]> {
  const dir = await mkdtemp(join(tmpdir(), 'bench-state-'))
  const all = records(count)
  const label = `${count / 1000}k records`
  const rows: Row[] = []
  const servers: BenchServer[] = []
  const probes: Swarm[] = []
  try {
    await writeState(dir, all, false)

    // (a) start-up, against parsing the file alone
    const starts: number[] = []
    const parses: number[] = []
    let server: BenchServer | undefined
    for (let run = 0; run < Math.max(1, runs); run++) {
      const began = now()
      const bare = spawnNode(
        ['-e', `JSON.parse(require('fs').readFileSync(${JSON.stringify(join(dir, STATE))}, 'utf8'))`],
        {
          stdio: ['ignore', 'ignore', 'inherit'],
        },
      )
      await new Promise((resolve) => bare.once('exit', resolve))
      parses.push(now() - began)
      const started = await startTimed(dir)
      starts.push(started.ms)
      if (run < runs - 1) await started.server.stop()
      else servers.push((server = started.server))
    }
    const startup = median(starts) / 1000
    const parse = median(parses) / 1000
    rows.push({
      figure: FIGURE,
      measure: `${label}: spawn → /readyz 200`,
      value: startup,
      unit: 's',
      baseline: { name: 'node -e reading + JSON.parse of the file', value: parse },
      ratio: parse / startup,
      target: `< 2 s (runs ${starts.map((s) => (s / 1000).toFixed(2)).join(', ')})`,
      pass: startup < 2,
    })

    // (b, c, d) on the server just started
    rows.push(
      ...(await attempt(FIGURE, `${label}: state changes, pause, list`, async () => {
        const file = join(scratch, 'state')
        await makeFile(file, 4 * MiB)
        const probe = startSwarm('probe', { url: server!.url, everyMs: 2, inflight: 4 })
        probes.push(probe)
        await probe.next('ready')
        const quiet: [number, number] = [now(), now() + 1500]
        await sleep(1500)

        const start = async () => {
          const answer = await postMultipart(`${server!.url}/api/upload?speed=${64 * KiB}`, [], {
            field: 'file',
            path: file,
            size: 4 * MiB,
            name: 'data.bin',
          })
          if (answer.status !== 200) throw new Error(`upload: ${answer.status} ${answer.text}`)
          return (JSON.parse(answer.text) as { upload_id: string }).upload_id
        }
        const call = async (path: string, method = 'POST') => {
          const began = now()
          const response = await fetch(`${server!.url}${path}`, { method })
          const text = await response.text()
          if (response.status !== 200) throw new Error(`${method} ${path}: ${response.status} ${text}`)
          return now() - began
        }
        // Each REST operation is compiled on its first use: that is start-up's cost, not the state's.
        const warm = await start()
        for (const action of ['pause', 'resume', 'cancel']) await call(`/api/upload/${warm}/${action}`)
        await sleep(200)

        const changes: [number, number] = [now(), 0]
        const id = await start()
        const pauses: number[] = []
        for (let i = 0; i < 30; i++) {
          pauses.push(await call(`/api/upload/${id}/pause`))
          await sleep(10)
          await call(`/api/upload/${id}/resume`)
          await sleep(10)
        }
        await fetch(`${server!.url}/api/upload/${id}/cancel`, { method: 'POST' }).then((r) => r.text())
        changes[1] = now()
        await sleep(200)

        const list: [number, number] = [now(), 0]
        const listed = await fetch(`${server!.url}/api/uploads`)
        const text = await listed.text()
        list[1] = now()
        if (listed.status !== 200) throw new Error(`GET /api/uploads: ${listed.status} ${text.slice(0, 200)}`)
        await sleep(200)
        probes.splice(probes.indexOf(probe), 1)
        const gaps = await probeGaps(probe, { quiet, changes, list })
        await probe.stop()
        const quietRef = { name: 'the probe with the server idle', value: gaps.quiet! }
        return [
          {
            figure: FIGURE,
            measure: `${label}: longest event-loop block during state changes (upload, 30 pause/resume, cancel; warm)`,
            value: gaps.changes!,
            unit: 'ms',
            baseline: quietRef,
            target: '< 5 ms',
            pass: gaps.changes! < 5,
          },
          {
            figure: FIGURE,
            measure: `${label}: pause answer time, median`,
            value: median(pauses),
            unit: 'ms',
            target: '< 20 ms',
            pass: median(pauses) < 20,
          },
          {
            figure: FIGURE,
            measure: `${label}: pause answer time, p99`,
            value: percentile(pauses, 99),
            unit: 'ms',
            target: '< 20 ms',
            pass: percentile(pauses, 99) < 20,
          },
          {
            figure: FIGURE,
            measure: `${label}: longest event-loop block while GET /api/uploads answers`,
            value: gaps.list!,
            unit: 'ms',
            baseline: quietRef,
            target: `< 5 ms (the list took ${ms(list[1] - list[0])} ms, ${(text.length / MiB).toFixed(1)} MiB)`,
            pass: gaps.list! < 5,
          },
        ]
      })),
    )
    await server!.stop()
    servers.length = 0

    // (b) a background compaction of every record
    rows.push(
      ...(await attempt(FIGURE, `${label}: compaction`, async () => {
        await rm(dir, { recursive: true, force: true })
        await mkdir(dir, { recursive: true })
        await writeState(dir, all, true)
        const { server: compacting } = await startTimed(dir)
        servers.push(compacting)
        const probe = startSwarm('probe', { url: compacting.url, everyMs: 2, inflight: 4 })
        probes.push(probe)
        await probe.next('ready')
        await sleep(1000)
        // Any change is appended to the journal; the flush after it finds the journal larger than the
        // snapshot and rewrites the snapshot in the background. The change is a record's removal, its
        // operation compiled first on an id that does not exist (no change), so that only the
        // compaction is measured.
        await fetch(`${compacting.url}/api/files/${randomUUID()}`, { method: 'DELETE' }).then((r) => r.text())
        await sleep(300)
        const window: [number, number] = [now(), 0]
        const removed = await fetch(`${compacting.url}/api/files/${all[0]!.id}`, { method: 'DELETE' })
        const removedText = await removed.text()
        if (removed.status !== 200) throw new Error(`DELETE /api/files: ${removed.status} ${removedText}`)
        const deadline = now() + 60_000
        while ((await readdir(dir)).includes('.uploads.journal.1')) {
          if (now() > deadline) throw new Error('the journal was not compacted within 60 s')
          await sleep(10)
        }
        window[1] = now()
        await sleep(200)
        probes.splice(probes.indexOf(probe), 1)
        const gaps = await probeGaps(probe, { window })
        await probe.stop()
        return [
          {
            figure: FIGURE,
            measure: `${label}: longest event-loop block during a background compaction`,
            value: gaps.window!,
            unit: 'ms',
            target: `< 5 ms (compaction took ${ms(window[1] - window[0])} ms)`,
            pass: gaps.window! < 5,
          },
        ]
      })),
    )
    return rows
  } finally {
    await Promise.all(probes.map((p) => p.stop()))
    await Promise.all(servers.map((s) => s.stop()))
    await rm(dir, { recursive: true, force: true })
  }
}
