import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { copyFile, open, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import {
  gql,
  memoryOf,
  MiB,
  postMultipart,
  repeat,
  startServer,
  waitDone,
  type Row,
  startBare,
} from './lib.js'

const UPLOAD = 'mutation ($file: File!) { uploadFile(file: $file, speed: 0) { id } }'

/**
 * 1-3: a file of `size` bytes uploaded at speed=0, over REST and GraphQL, against a bare server streaming the
 * same body to disk; the server's peak memory growth over ingest and transfer; and the unthrottled transfer
 * (answer → completed) against fs.copyFile, and against copyFile + fdatasync + sha256 read-back (what a
 * verified, durable copy must do at least).
 */
export async function ingestAndTransfer(
  file: string,
  size: number,
  runs: number,
  scratch: string,
): Promise<Row[]> {
  const sizeLabel = `${Math.round(size / MiB)} MiB`
  const bare = await startBare(scratch)
  const bareSeconds = await repeat(runs, async () => {
    const r = await postMultipart(`${bare.url}/ingest`, [], {
      field: 'file',
      path: file,
      size,
      name: 'data.bin',
    })
    return r.seconds
  })
  bare.stop()

  const server = await startServer({ MAX_UPLOAD_SIZE: String(size * 2) })
  const idle = await memoryOf(server.pid)
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
  const warm = await memoryOf(server.pid)
  const transferSeconds: number[] = []
  const restSeconds = await repeat(runs, async () => {
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
    await gql(server.url, `mutation { deleteFile(id: "${id}") { id } }`)
    return r.seconds
  })
  const peak = (await memoryOf(server.pid)).peak
  const peakGrowth = peak - idle.rss
  const graphqlSeconds = await repeat(runs, async () => {
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
    await gql(server.url, `mutation { deleteFile(id: "${id}") { id } }`)
    return r.seconds
  })
  await server.stop()

  const copy = join(scratch, 'copy')
  const copySeconds = await repeat(runs, async () => {
    const started = performance.now()
    await copyFile(file, copy)
    const seconds = (performance.now() - started) / 1000
    await rm(copy)
    return seconds
  })
  const verifiedCopySeconds = await repeat(runs, async () => {
    const started = performance.now()
    await copyFile(file, copy)
    const handle = await open(copy, 'r+')
    await handle.datasync()
    await handle.close()
    const hash = createHash('sha256')
    await pipeline(createReadStream(copy, { highWaterMark: MiB }), hash)
    hash.digest('hex')
    const seconds = (performance.now() - started) / 1000
    await rm(copy)
    return seconds
  })

  const transfer = [...transferSeconds].sort((a, b) => a - b)[transferSeconds.length >> 1]!
  const rows: Row[] = [
    {
      figure: '1 ingest',
      measure: `${sizeLabel} REST /api/upload?speed=0, time to answer`,
      value: restSeconds,
      unit: 's',
      baseline: { name: 'bare Node stream to disk', value: bareSeconds },
      ratio: bareSeconds / restSeconds,
      target: '≥ 0.9x',
    },
    {
      figure: '1 ingest',
      measure: `${sizeLabel} GraphQL uploadFile, time to answer`,
      value: graphqlSeconds,
      unit: 's',
      baseline: { name: 'bare Node stream to disk', value: bareSeconds },
      ratio: bareSeconds / graphqlSeconds,
      target: '≥ 0.9x',
    },
    {
      figure: '2 memory',
      measure: `peak RSS growth over ${sizeLabel} ingest + transfer`,
      value: peakGrowth / MiB,
      unit: 'MiB',
      target: '≤ 32 MiB',
      pass: peakGrowth <= 32 * MiB,
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
