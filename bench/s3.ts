import { createReadStream } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { S3Client } from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'
import { startMoto } from '../test/support/moto.js'
import {
  gql,
  KiB,
  makeFile,
  median,
  memoryOf,
  MiB,
  now,
  postMultipart,
  startServer,
  waitDone,
  type BenchServer,
  type Row,
  type Times,
} from './lib.js'
import { startRedis } from './redis.js'

/**
 * Issue 21's S3 figures, against moto on loopback started for the figure: an unthrottled REST upload of
 * `size` bytes into our server storing in S3 (its answer, then its transfer from the bucket's staging to the
 * final object, until COMPLETED), against `@aws-sdk/lib-storage`'s `Upload` of the same file to the same moto
 * in the same run (5 MiB parts, as ours); and our server's peak RSS growth over the transfers.
 *
 * The two do not do the same work: ours stages the body in the bucket as it arrives, then copies it, paced,
 * into the final object, hashing it (sha256 of the whole and of every part) and checkpointing each part; the
 * baseline puts the file once. The ratio is what our promises (resumable, pausable, adoptable) cost on S3.
 */
export async function s3(file: string, size: number, runs: number): Promise<Row[]> {
  const moto = await startMoto()
  const bucket = await moto.createBucket('bench')
  const server = await startServer(moto.env(bucket, 'bench/'))
  const client = new S3Client({
    endpoint: moto.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' },
  })
  try {
    const ours: number[] = []
    const answered: number[] = []
    const theirs: number[] = []
    const before = (await memoryOf(server.pid)).rss
    for (let run = 0; run < runs; run++) {
      // Alternated, so a busy moment of the machine falls on both alike.
      const started = performance.now()
      const answer = await postMultipart(`${server.url}/api/upload?speed=0`, [], {
        field: 'file',
        path: file,
        size,
        name: 'bench.bin',
      })
      if (answer.status !== 200) throw new Error(`upload answered ${answer.status}: ${answer.text}`)
      answered.push(answer.seconds)
      const { upload_id: id } = JSON.parse(answer.text) as { upload_id: string }
      const done = await waitDone(server.url, id, 20)
      if (done.status !== 'COMPLETED') throw new Error(`upload ended ${done.status}`)
      ours.push((performance.now() - started) / 1000)

      const began = performance.now()
      await new Upload({
        client,
        params: { Bucket: bucket, Key: `baseline-${run}`, Body: createReadStream(file) },
        partSize: 5 * MiB,
      }).done()
      theirs.push((performance.now() - began) / 1000)
    }
    const growth = ((await memoryOf(server.pid)).peak - before) / MiB
    const [value, baseline] = [median(ours), median(theirs)]
    return [
      {
        figure: 's3',
        measure: `unthrottled ingest + transfer of ${size / MiB} MiB into moto (s)`,
        value,
        unit: 's',
        baseline: { name: 'lib-storage Upload', value: baseline },
        ratio: baseline / value,
        target: '≥ 0.8x',
        pass: baseline / value >= 0.8,
      },
      {
        figure: 's3',
        measure: 'of which the ingest into staging, to the answer (s)',
        value: median(answered),
        unit: 's',
        target: '',
      },
      {
        figure: 's3',
        measure: `peak RSS growth over ${runs} transfers of ${size / MiB} MiB`,
        value: growth,
        unit: 'MiB',
        target: '≤ 64 MiB',
        pass: growth <= 64,
      },
    ]
  } finally {
    client.destroy()
    await server.stop()
    await moto.stop()
  }
}

const label = (speed: number) => (speed >= MiB ? `${speed / MiB} MiB/s` : `${speed / KiB} KiB/s`)

/**
 * Throttled transfers into moto: at each speed a file that should take `seconds`, and the completion-time
 * error as bench/throttle.ts measures it on disk: from the transfer's start (`receivedAt`: the body is staged
 * in the bucket) to `completedAt` (the object completed and its sha256 checked), against size / speed.
 */
export async function s3Throttle(scratch: string, runs: number, seconds = 3): Promise<Row[]> {
  const moto = await startMoto()
  const bucket = await moto.createBucket('bench-throttle')
  const server = await startServer(moto.env(bucket, 'bench/'))
  const rows: Row[] = []
  try {
    for (const speed of [256 * KiB, 4 * MiB]) {
      const size = speed * seconds
      const file = join(scratch, `s3-throttle-${speed}`)
      await makeFile(file, size)
      const errors: number[] = []
      const sending: number[] = []
      const tails: number[] = []
      try {
        for (let run = 0; run < runs; run++) {
          const answer = await postMultipart(`${server.url}/api/upload?speed=${speed}`, [], {
            field: 'file',
            path: file,
            size,
            name: 'data.bin',
          })
          if (answer.status !== 200) throw new Error(`upload answered ${answer.status}: ${answer.text}`)
          const { upload_id: id } = JSON.parse(answer.text) as { upload_id: string }
          // When every byte had been sent (seen by polling, within 20 ms): what comes after is the last
          // part's answer, CompleteMultipartUpload and the sha256 check.
          let sent: number | undefined
          let done: Times
          for (;;) {
            const { upload } = await gql<{ upload: Times & { uploadedSize: number } }>(
              server.url,
              `{ upload(id: "${id}") { status uploadedSize createdAt receivedAt completedAt } }`,
            )
            if (sent === undefined && upload.uploadedSize >= size) sent = Date.now()
            done = upload
            if (!['RECEIVING', 'IN_PROGRESS', 'PAUSED'].includes(upload.status)) break
            await sleep(20)
          }
          if (done.status !== 'COMPLETED') throw new Error(`upload ended ${done.status}`)
          const took = (Date.parse(done.completedAt!) - Date.parse(done.receivedAt!)) / 1000
          errors.push((Math.abs(took - seconds) / seconds) * 100)
          if (sent !== undefined) {
            sending.push(sent - Date.parse(done.receivedAt!))
            tails.push(Date.parse(done.completedAt!) - sent)
          }
        }
      } finally {
        await rm(file, { force: true })
      }
      const error = median(errors)
      rows.push({
        figure: 's3',
        measure: `throttled into moto at ${label(speed)} (${seconds} s): completion-time error`,
        value: error,
        unit: '%',
        target: `< 1 % (runs ${errors.map((e) => e.toFixed(2)).join(', ')} %; last byte sent at ${median(sending).toFixed(0)} ms, then ${median(tails).toFixed(0)} ms to COMPLETED, medians)`,
        pass: error < 1,
      })
    }
  } finally {
    await server.stop()
    await moto.stop()
  }
  return rows
}

/** The lease an owner holds on a running upload (README, Several instances). */
const LEASE_S = 5

/**
 * SIGKILL of the owner, two instances sharing only Redis (AOF, fsync always) and moto, each with its own
 * folder: from the SIGKILL to (a) the other's `upload.adopted` log line and (b) the first status past what
 * the killed one had reported (the adopter goes back to the last part S3 acknowledged, so this includes
 * sending again what S3 did not hold). Each trial kills a fresh owner, after its first part (5 MiB) is
 * acknowledged.
 */
export async function s3Adoption(trials: number): Promise<Row[]> {
  const moto = await startMoto()
  const bucket = await moto.createBucket('bench-adoption')
  const redis = await startRedis()
  const dirs: string[] = []
  const servers: BenchServer[] = []
  const adoptedAt = new Map<string, number>()
  let named = 0
  const instance = async (onLine?: (line: string) => void) => {
    const dir = await mkdtemp(join(tmpdir(), 'bench-s3-adoption-'))
    dirs.push(dir)
    const server = await startServer(
      {
        ...moto.env(bucket, 'bench/'),
        REDIS_URL: redis.url,
        UPLOAD_DIR: dir,
        INSTANCE_ID: `bench-s3-${named++}`,
      },
      { onLine },
    )
    servers.push(server)
    return server
  }
  const statusOf = async (url: string, id: string) => {
    const response = await fetch(`${url}/api/upload/${id}/status`)
    if (response.status !== 200) return undefined // Redis busy, say: no reading
    return (await response.json()) as { status: string; uploaded_size: number }
  }
  const size = 12 * MiB
  const scratch = await mkdtemp(join(tmpdir(), 'bench-s3-adoption-file-'))
  const file = join(scratch, 'data.bin')
  const logged: number[] = []
  const moved: number[] = []
  try {
    await makeFile(file, size)
    const watcher = await instance((line) => {
      if (!line.includes('"event":"upload.adopted"')) return
      const id = /"id":"([^"]+)"/.exec(line)?.[1]
      if (id && !adoptedAt.has(id)) adoptedAt.set(id, now())
    })
    for (let trial = 0; trial < trials; trial++) {
      const victim = await instance()
      const answer = await postMultipart(`${victim.url}/api/upload?speed=${2 * MiB}`, [], {
        field: 'file',
        path: file,
        size,
        name: 'data.bin',
      })
      if (answer.status !== 200) throw new Error(`upload answered ${answer.status}: ${answer.text}`)
      const { upload_id: id } = JSON.parse(answer.text) as { upload_id: string }
      const deadline = now() + 30_000
      while (((await statusOf(watcher.url, id))?.uploaded_size ?? 0) <= 6 * MiB) {
        if (now() > deadline) throw new Error(`trial ${trial + 1}: not past its first part within 30 s`)
        await sleep(20)
      }
      const exited = new Promise((resolve) => victim.child.once('exit', resolve))
      victim.child.kill('SIGKILL')
      const killed = now()
      await exited
      servers.splice(servers.indexOf(victim), 1)
      // What the killed one had reported last, as the record holds it.
      let last: number | undefined
      while (last === undefined) last = (await statusOf(watcher.url, id))?.uploaded_size
      let past: number | undefined
      while (now() - killed < 60_000) {
        const current = await statusOf(watcher.url, id)
        if (current && (current.uploaded_size > last || current.status === 'completed')) {
          past = now() - killed
          break
        }
        await sleep(20)
      }
      if (past === undefined) throw new Error(`trial ${trial + 1}: not moved past ${last} within 60 s`)
      const adopted = adoptedAt.get(id)
      if (adopted === undefined) throw new Error(`trial ${trial + 1}: moved without an upload.adopted line`)
      logged.push(adopted - killed)
      moved.push(past)
      await fetch(`${watcher.url}/api/upload/${id}/cancel`, { method: 'POST' }).then((r) => r.text())
    }
    const runs = (xs: number[]) => xs.map((x) => (x / 1000).toFixed(2)).join(', ')
    return [
      {
        figure: 's3',
        measure: `SIGKILL of the owner (Redis + moto) → the other's upload.adopted line (median of ${trials})`,
        value: median(logged) / 1000,
        unit: 's',
        target: `< lease + 5 s (${LEASE_S + 5} s); runs ${runs(logged)} s`,
        pass: median(logged) / 1000 < LEASE_S + 5,
      },
      {
        figure: 's3',
        measure: `SIGKILL of the owner (Redis + moto) → progress past the killed one's (median of ${trials})`,
        value: median(moved) / 1000,
        unit: 's',
        target: `< lease + 5 s (${LEASE_S + 5} s); runs ${runs(moved)} s`,
        pass: median(moved) / 1000 < LEASE_S + 5,
      },
    ]
  } finally {
    await Promise.all(servers.map((server) => server.stop()))
    await redis.stop()
    await moto.stop()
    await Promise.all([scratch, ...dirs].map((dir) => rm(dir, { recursive: true, force: true })))
  }
}
