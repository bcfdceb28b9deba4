import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { KiB, makeFile, median, MiB, postMultipart, sizeOf, startServer, type Row } from './lib.js'

const post = (url: string) => fetch(url, { method: 'POST' }).then((r) => r.json())

/** 5: bytes written after a pause is answered; time from a resume's answer to the next byte on disk. */
export async function control(runs: number, scratch: string): Promise<Row[]> {
  const server = await startServer()
  const file = join(scratch, 'control')
  const size = 8 * MiB
  await makeFile(file, size)
  const after: number[] = []
  const firstByte: number[] = []
  try {
    const answer = await postMultipart(`${server.url}/api/upload?speed=${256 * KiB}`, [], {
      field: 'file',
      path: file,
      size,
      name: 'data.bin',
    })
    const { upload_id: id } = JSON.parse(answer.text) as { upload_id: string }
    const part = join(server.dir, '.transfers', id)
    for (let run = 0; run < runs; run++) {
      await sleep(200)
      await post(`${server.url}/api/upload/${id}/pause`)
      const atAnswer = await sizeOf(part)
      await sleep(300)
      const later = await sizeOf(part)
      after.push(later - atAnswer)
      await post(`${server.url}/api/upload/${id}/resume`)
      const resumed = performance.now()
      while ((await sizeOf(part)) === later) await sleep(0.2)
      firstByte.push(performance.now() - resumed)
    }
  } finally {
    await server.stop()
  }
  const bytesAfter = Math.max(...after)
  const latency = median(firstByte)
  return [
    {
      figure: '5 control',
      measure: 'bytes written after a pause answer (worst of runs)',
      value: bytesAfter,
      unit: 'B',
      target: '≤ 1 chunk (13 KiB at 256 KiB/s)',
      pass: bytesAfter <= 13 * KiB,
    },
    {
      figure: '5 control',
      measure: 'resume answer → next byte on disk (median)',
      value: latency,
      unit: 'ms',
      target: '≤ 20 ms',
      pass: latency <= 20,
    },
  ]
}
