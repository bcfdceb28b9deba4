import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { copyFile, open, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  cpuSecondsOf,
  gql,
  keptIn,
  makeFile,
  memoryOf,
  MiB,
  postMultipart,
  repeat,
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

/** Median seconds over `runs` and the server's CPU seconds per GiB sent. */
async function timed(
  pid: number,
  runs: number,
  size: number,
  run: () => Promise<number>,
): Promise<{ seconds: number; cpuPerGiB: number }> {
  const { result, cpu } = await withCpu(pid, () => repeat(runs, run))
  return { seconds: result, cpuPerGiB: cpu / runs / (size / 1024 ** 3) }
}

/**
 * 1-3: (1) `ingestSize` bytes over REST (`curl -F`, speed=0), time to answer, against a bare Node server
 * streaming the same curl's body to disk, and against the same bare stream that also takes the sha256 (the
 * least that what we promise costs); GraphQL uploadFile of `size` bytes against the bare stream. (2) The
 * server's peak RSS growth over `size`-byte REST ingests and their transfers, from the idle server (the
 * first upload's code and hashing worker counted), and from after a 16-byte warm-up. (3) The unthrottled
 * transfer (receivedAt → completedAt) against fs.copyFile, and against copyFile + fdatasync + sha256
 * read-back (what a verified, durable copy must do at least). Server CPU per GiB from /proc/<pid>/stat.
 * Every side keeps what each run of it stored until the figure ends (see keptIn).
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
  const curlTo = (url: string) => async () => {
    const r = await curlForm(url, ingestFile)
    if (r.status !== 200) throw new Error(`${url}: ${r.status} ${r.text.slice(0, 200)}`)
    return r.seconds
  }
  let bareStream: { seconds: number; cpuPerGiB: number }
  let bareSha: { seconds: number; cpuPerGiB: number }
  let bareBig: number
  try {
    bareStream = await timed(bare.pid, runs, ingestSize, curlTo(`${bare.url}/ingest`))
    bareSha = await timed(bare.pid, runs, ingestSize, curlTo(`${bare.url}/ingest-sha256`))
    bareBig =
      ingestSize === size
        ? bareStream.seconds
        : await repeat(runs, async () => {
            const r = await postMultipart(`${bare.url}/ingest`, [], {
              field: 'file',
              path: file,
              size,
              name: 'data.bin',
            })
            return r.seconds
          })
  } finally {
    await bare.stop()
  }

  const server = await startServer({
    UPLOAD_DIR: await dir('ours'),
    MAX_UPLOAD_SIZE: String(Math.max(size, ingestSize) * 2),
  })
  let rest: { seconds: number; cpuPerGiB: number }
  let graphqlSeconds: number
  let idle: { rss: number }
  let warm: { rss: number }
  let peak: number
  const transferSeconds: number[] = []
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
    // Memory and the transfer: `size`-byte REST uploads, each waited for until verified.
    await repeat(runs, async () => {
      const r = await postMultipart(`${server.url}/api/upload?speed=0`, [], {
        field: 'file',
        path: file,
        size,
        name: 'data.bin',
      })
      const { upload_id: id } = JSON.parse(r.text) as { upload_id: string }
      const done = await waitDone(server.url, id)
      if (done.status !== 'COMPLETED') throw new Error(`upload ended ${done.status}`)
      transferSeconds.push((Date.parse(done.completedAt!) - Date.parse(done.receivedAt!)) / 1000)
      return r.seconds
    })
    peak = (await memoryOf(server.pid)).peak
    // Ingest: the same curl as the bare server's. Only the request is timed and its CPU counted; each
    // transfer is waited for after it, so that it does not run under the next request.
    let ingestCpu = 0
    const restSeconds = await repeat(runs, async () => {
      const before = await cpuSecondsOf(server.pid)
      const r = await curlForm(`${server.url}/api/upload?speed=0`, ingestFile)
      ingestCpu += (await cpuSecondsOf(server.pid)) - before
      if (r.status !== 200) throw new Error(`REST upload: ${r.status} ${r.text.slice(0, 200)}`)
      const { upload_id: id } = JSON.parse(r.text) as { upload_id: string }
      await waitDone(server.url, id)
      return r.seconds
    })
    rest = { seconds: restSeconds, cpuPerGiB: ingestCpu / runs / (ingestSize / 1024 ** 3) }
    graphqlSeconds = await repeat(runs, async () => {
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
    })
  } finally {
    await server.stop()
  }

  const copies = await dir('copies')
  let copied = 0
  const copySeconds = await repeat(runs, async () => {
    const started = performance.now()
    await copyFile(file, join(copies, String(copied++)))
    return (performance.now() - started) / 1000
  })
  const verifiedCopySeconds = await repeat(runs, async () => {
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
  })

  const transfer = [...transferSeconds].sort((a, b) => a - b)[transferSeconds.length >> 1]!
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
