import { setTimeout as sleep } from 'node:timers/promises'
import { cpuSecondsOf, gql, inTurns, keptIn, now, perOp, startServer, startTusPeer, type Row } from './lib.js'
import { startSwarm } from './swarm.js'

const FIGURE = '13 tiny'
/** Seconds each side is loaded (BENCH_TINY_SECONDS). */
const SECONDS = Number(process.env.BENCH_TINY_SECONDS ?? 5)

interface Run {
  /** Uploads a second that counted: for ours, those COMPLETED within the window; for the peer, 201s. */
  perSecond: number
  /** Server CPU seconds per upload counted. */
  cpuPerUpload: number
  note: string
}

/** `clients` client loops (one child process) against `url` for SECONDS; the server's CPU meanwhile. */
async function drive(
  url: string,
  pid: number,
  protocol: 'rest' | 'tus',
  clients: number,
): Promise<{ started: number; ended: number; statuses: Record<string, number>; cpu: number }> {
  const sender = startSwarm('tiny', { url, clients, seconds: SECONDS, size: 16, protocol })
  try {
    await sender.next('waiting')
    const cpuBefore = await cpuSecondsOf(pid)
    sender.send({ cmd: 'go' })
    const done = await sender.next<{ started: number; ended: number; statuses: Record<string, number> }>(
      'done',
      SECONDS * 1000 + 60_000,
    )
    return { ...done, cpu: (await cpuSecondsOf(pid)) - cpuBefore }
  } finally {
    await sender.stop()
  }
}

const answers = (statuses: Record<string, number>) =>
  Object.entries(statuses)
    .map(([status, n]) => `${n}×${status}`)
    .join(', ')

/** Ours, storing into `dir`: uploads that reached COMPLETED within the window (from each record's completedAt). */
async function ours(protocol: 'rest' | 'tus', clients: number, dir: string): Promise<Run> {
  const server = await startServer({ UPLOAD_DIR: dir })
  try {
    const done = await drive(server.url, server.pid, protocol, clients)
    for (const deadline = now() + 30_000; now() < deadline;) {
      const { uploadCounts } = await gql<{ uploadCounts: { inProgress: number } }>(
        server.url,
        '{ uploadCounts { inProgress } }',
      )
      if (uploadCounts.inProgress === 0) break
      await sleep(100)
    }
    const { uploads } = await gql<{ uploads: { status: string; completedAt: string | null }[] }>(
      server.url,
      '{ uploads { status completedAt } }',
    )
    const window = (done.ended - done.started) / 1000
    const inWindow = uploads.filter(
      (u) =>
        u.status === 'COMPLETED' &&
        Date.parse(u.completedAt!) >= done.started - 1 &&
        Date.parse(u.completedAt!) <= done.ended,
    ).length
    return {
      perSecond: inWindow / window,
      cpuPerUpload: done.cpu / Math.max(1, inWindow),
      note: `answers ${answers(done.statuses)}; ${uploads.length} records; server ${(done.cpu / window).toFixed(2)} cores`,
    }
  } finally {
    await server.stop()
  }
}

/** The peer, storing into `dir`: bare @tus/server + @tus/file-store; an upload counts when its creation-with-upload got 201. */
async function peer(clients: number, dir: string): Promise<Run> {
  const tus = await startTusPeer(dir)
  try {
    const done = await drive(tus.url, tus.pid, 'tus', clients)
    const window = (done.ended - done.started) / 1000
    const created = done.statuses['201'] ?? 0
    return {
      perSecond: created / window,
      cpuPerUpload: done.cpu / Math.max(1, created),
      note: `answers ${answers(done.statuses)}; server ${(done.cpu / window).toFixed(2)} cores`,
    }
  } finally {
    await tus.stop()
  }
}

/** The run of `runs` with the median uploads a second (its CPU and note go with it). */
const medianRun = (runs: Run[]): Run => [...runs].sort((a, b) => a.perSecond - b.perSecond)[runs.length >> 1]!

/**
 * 13: `clients` clients at once, each uploading 16-byte files one after another for SECONDS, from a child
 * process: over REST (multipart, speed=0) and over tus (creation-with-upload) to ours, and over tus to a
 * bare @tus/server + @tus/file-store started beside it. Ours counts the uploads that reached COMPLETED
 * (stored, fsynced and verified) within the window; the peer counts its 201s (its file-store writes the file
 * and its .json and syncs neither). Server CPU per upload from /proc/<pid>/stat, every thread counted. The
 * three take turns, `runs` rounds (see inTurns), each run on a fresh server; each side's median run is quoted.
 * Every run's folder stays until the figure ends (keptIn): a run that followed the removal of the last one's
 * thousands of files paid for it in every file it created (see keptIn), and the peer, whose runs leave two files
 * per upload, would have charged ours more than ours charged it.
 */
export async function tiny(scratch: string, runs: number, clients = 16): Promise<Row[]> {
  const turns = await keptIn(scratch, (dir) =>
    inTurns(runs, {
      peer: async () => peer(clients, await dir('peer')),
      rest: async () => ours('rest', clients, await dir('rest')),
      tus: async () => ours('tus', clients, await dir('tus')),
    }),
  )
  const [tusPeer, rest, tus] = [turns.peer, turns.rest, turns.tus].map(medianRun) as [Run, Run, Run]
  const baseline = { name: 'bare @tus/server + file-store (201s)', value: tusPeer.perSecond }
  const cpu = (run: Run) =>
    `${perOp(run.cpuPerUpload, 1, 'upload')} (peer ${perOp(tusPeer.cpuPerUpload, 1, 'upload')})`
  const label = `${clients} clients, 16 B files for ${SECONDS} s`
  return [
    {
      figure: FIGURE,
      measure: `REST ${label}: completed per second`,
      value: rest.perSecond,
      unit: 'uploads/s',
      baseline,
      ratio: rest.perSecond / tusPeer.perSecond,
      target: `≥ 1.0x (${rest.note}; peer ${tusPeer.note})`,
      pass: rest.perSecond >= tusPeer.perSecond,
      cpu: cpu(rest),
    },
    {
      figure: FIGURE,
      measure: `REST ${label}: server CPU per upload completed`,
      value: rest.cpuPerUpload * 1000,
      unit: 'ms',
      target: '≤ 1 ms (≥ 1000 a second per core)',
      pass: rest.cpuPerUpload <= 0.001,
      cpu: cpu(rest),
    },
    {
      figure: FIGURE,
      measure: `tus creation-with-upload, ${label}: completed per second`,
      value: tus.perSecond,
      unit: 'uploads/s',
      baseline,
      ratio: tus.perSecond / tusPeer.perSecond,
      target: `≥ 1.0x (${tus.note})`,
      pass: tus.perSecond >= tusPeer.perSecond,
      cpu: cpu(tus),
    },
  ]
}
