import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { copyFile, open, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  gql,
  inTurns,
  keptIn,
  makeFile,
  median,
  memoryOf,
  MiB,
  postMultipart,
  startBare,
  startServer,
  waitDone,
  waitReady,
  withCpu,
  type Row,
} from './lib.js'

const UPLOAD = 'mutation ($file: File!) { uploadFile(file: $file, speed: 0) { id } }'

/**
 * `curl -F file=@path url`, the client the README shows: its answer's text and curl's own time from the
 * start of the request to the end of the answer (the process's start-up is not counted).
 */
function curlForm(url: string, path: string): Promise<{ status: number; text: string; seconds: number }> {
  return new Promise((resolve, reject) =>
    execFile(
      'curl',
      ['-sS', '-o', '-', '-w', '\n%{http_code} %{time_total}', '-F', `file=@${path};filename=data.bin`, url],
      { maxBuffer: 1024 * 1024 },
      (error, stdout) => {
        if (error) return reject(error)
        const end = stdout.lastIndexOf('\n')
        const [code, total] = stdout.slice(end + 1).split(' ')
        resolve({ status: Number(code), text: stdout.slice(0, end), seconds: Number(total) })
      },
    ),
  )
}

/** One side's run: curl's seconds, the server's CPU seconds meanwhile, and the answer's text. */
interface Run {
  seconds: number
  cpu: number
  text: string
}

/** A side's median seconds over its runs, and its server's CPU seconds per GiB sent. */
interface Timed {
  seconds: number
  cpuPerGiB: number
}

/**
 * 1-3: (1) `ingestSize` bytes over REST (`curl -F`, speed=0), time to answer, against a bare Node server
 * streaming the same curl's body to disk, and against the same bare stream that also takes the sha256 (the
 * least that what we promise costs); GraphQL uploadFile of `size` bytes against the bare stream. (2) The
 * server's peak RSS growth over `size`-byte REST ingests and their transfers, from the idle server (the
 * first upload's code and hashing worker counted), and from after a 16-byte warm-up. (3) The unthrottled
 * transfer (receivedAt → completedAt) against fs.copyFile, and against copyFile + fdatasync + sha256
 * read-back (what a verified, durable copy must do at least). Server CPU per GiB from /proc/<pid>/stat.
 * Each figure's sides take turns (see inTurns): ours and the bare stream with and without sha256; GraphQL and
 * the bare stream; our transfers and the copies. Every side keeps what each run of it stored until the figure ends (see keptIn).
 */
export function ingestAndTransfer(
  file: string,
  size: number,
  runs: number,
  scratch: string,
  ingestSize = size,
): Promise<Row[]> {
  return keptIn(scratch, (dir) => measure(file, size, runs, scratch, ingestSize, dir))
}

async function measure(
  file: string,
  size: number,
  runs: number,
  scratch: string,
  ingestSize: number,
  dir: (name: string) => Promise<string>,
): Promise<Row[]> {
  const sizeLabel = `${Math.round(size / MiB)} MiB`
  const ingestLabel = `${Math.round(ingestSize / MiB)} MiB`
  let ingestFile = file
  if (ingestSize !== size) {
    ingestFile = join(await dir('source'), 'ingest.bin')
    await makeFile(ingestFile, ingestSize)
  }
  const bare = await startBare(await dir('bare'))
  const server = await startServer({
    UPLOAD_DIR: await dir('ours'),
    MAX_UPLOAD_SIZE: String(Math.max(size, ingestSize) * 2),
  })
  /** One curl -F of the ingest file to `url`, its time and the CPU `pid` used meanwhile. */
  const curlTo = (pid: number, url: string) => async (): Promise<Run> => {
    const { result, cpu } = await withCpu(pid, async () => {
      const r = await curlForm(url, ingestFile)
      if (r.status !== 200) throw new Error(`${url}: ${r.status} ${r.text.slice(0, 200)}`)
      return r
    })
    return { seconds: result.seconds, cpu, text: result.text }
  }
  let bareStream: Timed
  let bareSha: Timed
  let rest: Timed
  let bareBig: number
  let graphqlSeconds: number
  let idle: { rss: number }
  let warm: { rss: number }
  let peak: number
  let transferSeconds: number
  let copySeconds: number
  let verifiedCopySeconds: number
  try {
    // Idle as figure 14 takes it, 3 s after ready: the server loads its GraphQL and REST code just after the
    // port opens, upload or not, and a sample taken at once counted that start-up (12-20 MiB) as the upload's.
    await waitReady(server.url)
    await sleep(3000)
    idle = await memoryOf(server.pid)
    // The first upload also loads what an idle server has not (the REST and ingest code, the hashing worker):
    // growth from after a 16-byte one is what streaming the big file itself costs.
    const tiny = join(scratch, 'tiny.bin')
    await writeFile(tiny, 'sixteen bytes ok')
    const first = await postMultipart(`${server.url}/api/upload?speed=0`, [], {
      field: 'file',
      path: tiny,
      size: 16,
      name: 't',
    })
    const firstId = (JSON.parse(first.text) as { upload_id: string }).upload_id
    await waitDone(server.url, firstId)
    await gql(server.url, `mutation { deleteFile(id: "${firstId}") { id } }`)
    warm = await memoryOf(server.pid)
    // Memory and the transfer: `size`-byte REST uploads, each waited for until verified, in turns with the
    // copies the transfer is measured against (see inTurns).
    const copies = await dir('copies')
    let copied = 0
    const transfer = await inTurns(runs, {
      ours: async () => {
        const r = await postMultipart(`${server.url}/api/upload?speed=0`, [], {
          field: 'file',
          path: file,
          size,
          name: 'data.bin',
        })
        const { upload_id: id } = JSON.parse(r.text) as { upload_id: string }
        const done = await waitDone(server.url, id)
        if (done.status !== 'COMPLETED') throw new Error(`upload ended ${done.status}`)
        return (Date.parse(done.completedAt!) - Date.parse(done.receivedAt!)) / 1000
      },
      copy: async () => {
        const started = performance.now()
        await copyFile(file, join(copies, String(copied++)))
        return (performance.now() - started) / 1000
      },
      verifiedCopy: async () => {
        const copy = join(copies, String(copied++))
        const started = performance.now()
        await copyFile(file, copy)
        const handle = await open(copy, 'r+')
        await handle.datasync()
        await handle.close()
        const hash = createHash('sha256')
        await pipeline(createReadStream(copy, { highWaterMark: MiB }), hash)
        hash.digest('hex')
        return (performance.now() - started) / 1000
      },
    })
    transferSeconds = median(transfer.ours)
    copySeconds = median(transfer.copy)
    verifiedCopySeconds = median(transfer.verifiedCopy)
    peak = (await memoryOf(server.pid)).peak
    // Ingest: the same curl to each side, in turns (see inTurns). Only ours' request is timed and its CPU
    // counted; each transfer is waited for after it, so that no turn runs under it.
    const toOurs = curlTo(server.pid, `${server.url}/api/upload?speed=0`)
    const ingest = await inTurns(runs, {
      bare: curlTo(bare.pid, `${bare.url}/ingest`),
      bareSha: curlTo(bare.pid, `${bare.url}/ingest-sha256`),
      ours: async () => {
        const run = await toOurs()
        await waitDone(server.url, (JSON.parse(run.text) as { upload_id: string }).upload_id)
        return run
      },
    })
    const perGiB = ingestSize / 1024 ** 3
    ;[bareStream, bareSha, rest] = [ingest.bare, ingest.bareSha, ingest.ours].map((runs) => ({
      seconds: median(runs.map((run) => run.seconds)),
      cpuPerGiB: runs.reduce((sum, run) => sum + run.cpu, 0) / runs.length / perGiB,
    })) as [Timed, Timed, Timed]
    // GraphQL: the big file, against the bare stream taking the same multipart body, in turns.
    const ourGraphql = async () => {
      const operations = JSON.stringify({ query: UPLOAD, variables: { file: null } })
      const r = await postMultipart(
        `${server.url}/graphql`,
        [
          ['operations', operations],
          ['map', '{"0":["variables.file"]}'],
        ],
        { field: '0', path: file, size, name: 'data.bin' },
      )
      const id = (JSON.parse(r.text) as { data: { uploadFile: { id: string } } }).data.uploadFile.id
      await waitDone(server.url, id)
      return r.seconds
    }
    const bareMultipart = async () =>
      (await postMultipart(`${bare.url}/ingest`, [], { field: 'file', path: file, size, name: 'data.bin' }))
        .seconds
    const big =
      ingestSize === size
        ? { ...(await inTurns(runs, { ours: ourGraphql })), bare: undefined }
        : await inTurns(runs, { bare: bareMultipart, ours: ourGraphql })
    graphqlSeconds = median(big.ours)
    bareBig = big.bare ? median(big.bare) : bareStream.seconds
  } finally {
    await Promise.all([bare.stop(), server.stop()])
  }

  const transfer = transferSeconds
  const cpu = `${rest.cpuPerGiB.toFixed(2)} s/GiB (bare ${bareStream.cpuPerGiB.toFixed(2)}, bare + sha256 ${bareSha.cpuPerGiB.toFixed(2)})`
  const rows: Row[] = [
    {
      figure: '1 ingest',
      measure: `${ingestLabel} REST /api/upload?speed=0 (curl -F), time to answer`,
      value: rest.seconds,
      unit: 's',
      baseline: { name: 'bare Node stream to disk (curl -F)', value: bareStream.seconds },
      ratio: bareStream.seconds / rest.seconds,
      target: '(reference: the disk; sha256 must be taken as well)',
      cpu,
    },
    {
      figure: '1 ingest',
      measure: `${ingestLabel} REST /api/upload?speed=0 (curl -F), time to answer`,
      value: rest.seconds,
      unit: 's',
      baseline: { name: 'bare Node stream to disk + sha256 (curl -F)', value: bareSha.seconds },
      ratio: bareSha.seconds / rest.seconds,
      target: '≥ 0.95x',
      cpu,
    },
    {
      figure: '1 ingest',
      measure: `${sizeLabel} GraphQL uploadFile, time to answer`,
      value: graphqlSeconds,
      unit: 's',
      baseline: { name: 'bare Node stream to disk', value: bareBig },
      ratio: bareBig / graphqlSeconds,
      target: '≥ 0.9x',
    },
    {
      figure: '2 memory',
      measure: `peak RSS growth over ${sizeLabel} ingest + transfer, from idle (warm-up counted)`,
      value: (peak - idle.rss) / MiB,
      unit: 'MiB',
      target: '≤ 32 MiB',
      pass: peak - idle.rss <= 32 * MiB,
    },
    {
      figure: '2 memory',
      measure: `the same, from after a 16 B upload loaded the ingest path (code, hashing worker)`,
      value: (peak - warm.rss) / MiB,
      unit: 'MiB',
      target: '(reference: what the big file itself costs)',
    },
    {
      figure: '3 transfer',
      measure: `${sizeLabel} speed=0, answer → completed (verified)`,
      value: transfer,
      unit: 's',
      baseline: { name: 'fs.copyFile', value: copySeconds },
      ratio: copySeconds / transfer,
      target: '(reference: copyFile neither flushes nor verifies)',
    },
    {
      figure: '3 transfer',
      measure: `${sizeLabel} speed=0, against a verified durable copy`,
      value: transfer,
      unit: 's',
      baseline: { name: 'copyFile + fdatasync + sha256 read-back', value: verifiedCopySeconds },
      ratio: verifiedCopySeconds / transfer,
      target: '≥ 0.9x',
    },
  ]
  for (const row of rows)
    if (row.pass === undefined && row.ratio !== undefined && row.target.startsWith('≥'))
      row.pass = row.ratio >= Number(/≥ ([\d.]+)x/.exec(row.target)?.[1] ?? 1)
  return rows
}
