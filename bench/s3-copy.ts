/**
 * How the transfer from staging to the final object should move its bytes on S3 (issue 21), measured
 * against moto on loopback:
 *
 *   UploadPart      the instance reads each part's range of the staged object (ranged GET) and streams it
 *                   into UploadPart with its sha256 as a trailer: every byte goes through the instance, so it
 *                   can be paced byte by byte, and a pause stops sending at once
 *   UploadPartCopy  S3 copies each part's range from the staged object itself: no byte goes through the
 *                   instance, but a part moves in one call, so pacing and pausing happen between parts
 *
 *   node --import tsx bench/s3-copy.ts [MiB=64] [runs=3]
 *
 * Prints wall time and MiB/s per method (median of the runs), each part call's longest time (how late a
 * pause can land with UploadPartCopy), and the RSS growth of the streamed copy.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createServer, type AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'

const MiB = 1024 * 1024
const size = Number(process.argv[2] ?? 64) * MiB
const runs = Number(process.argv[3] ?? 3)
const PART = 5 * MiB
const BUCKET = 'bench'

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

const port = await freePort()
const moto = spawn('python3', ['-m', 'moto.server', '-H', '127.0.0.1', '-p', String(port)], { stdio: 'pipe' })
await new Promise<void>((resolve, reject) => {
  let output = ''
  const look = (chunk: Buffer) => {
    output += chunk.toString()
    if (/Running on http:/.test(output)) resolve()
  }
  moto.stdout.on('data', look)
  moto.stderr.on('data', look)
  moto.once('exit', () => reject(new Error(`moto exited:\n${output}`)))
})

const client = new S3Client({
  endpoint: `http://127.0.0.1:${port}`,
  region: 'us-east-1',
  forcePathStyle: true,
  credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' },
  requestChecksumCalculation: 'WHEN_REQUIRED',
})

try {
  await client.send(new CreateBucketCommand({ Bucket: BUCKET }))
  // The staged object, as an arrival would have left it (lib-storage's Upload: the baseline's own way).
  const data = randomBytes(size)
  await new Upload({ client, params: { Bucket: BUCKET, Key: 'staged', Body: data }, partSize: PART }).done()
  const parts = Math.ceil(size / PART)
  const range = (n: number) => [(n - 1) * PART, Math.min(size, n * PART)] as const

  async function copy(key: string, movePart: (uploadId: string, n: number) => Promise<CompletedPart>) {
    const { UploadId } = await client.send(
      new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key, ChecksumAlgorithm: 'SHA256' }),
    )
    const done: CompletedPart[] = []
    let longest = 0
    for (let n = 1; n <= parts; n++) {
      const started = performance.now()
      done.push(await movePart(UploadId!, n))
      longest = Math.max(longest, performance.now() - started)
    }
    await client.send(
      new CompleteMultipartUploadCommand({
        Bucket: BUCKET,
        Key: key,
        UploadId,
        MultipartUpload: { Parts: done },
      }),
    )
    return longest
  }

  const streamed = (key: string) => async (uploadId: string, n: number) => {
    const [start, end] = range(n)
    const got = await client.send(
      new GetObjectCommand({ Bucket: BUCKET, Key: 'staged', Range: `bytes=${start}-${end - 1}` }),
    )
    const answer = await client.send(
      new UploadPartCommand({
        Bucket: BUCKET,
        Key: key,
        UploadId: uploadId,
        PartNumber: n,
        Body: got.Body as Readable,
        ContentLength: end - start,
        ChecksumAlgorithm: 'SHA256',
      }),
    )
    return { PartNumber: n, ETag: answer.ETag, ChecksumSHA256: answer.ChecksumSHA256 }
  }

  const copied = (key: string) => async (uploadId: string, n: number) => {
    const [start, end] = range(n)
    const answer = await client.send(
      new UploadPartCopyCommand({
        Bucket: BUCKET,
        Key: key,
        UploadId: uploadId,
        PartNumber: n,
        CopySource: `${BUCKET}/staged`,
        CopySourceRange: `bytes=${start}-${end - 1}`,
      }),
    )
    return {
      PartNumber: n,
      ETag: answer.CopyPartResult?.ETag,
      ChecksumSHA256: answer.CopyPartResult?.ChecksumSHA256,
    }
  }

  const median = (values: number[]) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)]!
  const results: Record<string, { ms: number[]; longest: number[]; rss: number[] }> = {
    UploadPart: { ms: [], longest: [], rss: [] },
    UploadPartCopy: { ms: [], longest: [], rss: [] },
  }
  for (let run = 0; run < runs; run++) {
    // Alternated, so a busy moment of the machine falls on both alike.
    for (const [name, method] of [
      ['UploadPart', streamed],
      ['UploadPartCopy', copied],
    ] as const) {
      const key = `${name}-${run}`
      const rssBefore = process.memoryUsage().rss
      let peak = rssBefore
      const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20)
      const started = performance.now()
      const longest = await copy(key, method(key))
      results[name]!.ms.push(performance.now() - started)
      clearInterval(sampler)
      results[name]!.longest.push(longest)
      results[name]!.rss.push((peak - rssBefore) / MiB)
    }
  }
  console.log(
    `${size / MiB} MiB in ${parts} parts of ${PART / MiB} MiB, median of ${runs} runs, moto on loopback`,
  )
  for (const [name, r] of Object.entries(results)) {
    const ms = median(r.ms)
    console.log(
      `${name.padEnd(15)} ${ms.toFixed(0).padStart(6)} ms  ${((size / MiB / ms) * 1000).toFixed(1).padStart(6)} MiB/s  longest part call ${median(r.longest).toFixed(0)} ms  RSS growth ${median(r.rss).toFixed(1)} MiB`,
    )
  }
} finally {
  client.destroy()
  moto.kill('SIGTERM')
}
