import { createReadStream } from 'node:fs'
import { S3Client } from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'
import { startMoto } from '../test/support/moto.js'
import { median, memoryOf, MiB, postMultipart, startServer, waitDone, type Row } from './lib.js'

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
