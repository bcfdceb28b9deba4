import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { chunkSizeFor } from '../src/core/transfer/throttle.js'
import { KiB, makeFile, median, MiB, postMultipart, sizeOf, startServer, waitDone, type Row } from './lib.js'

const SPEEDS = [16 * KiB, 256 * KiB, 4 * MiB, 64 * MiB]
const SECONDS = 2
const SAMPLE_MS = 10

const label = (speed: number) => (speed >= MiB ? `${speed / MiB} MiB/s` : `${speed / KiB} KiB/s`)

/**
 * 4: at each speed, a file that should take 2 s: the completion-time error, and the largest distance between
 * the bytes on disk and the ideal line, sampled every 10 ms from the answer on (in ms of transfer).
 */
export async function throttle(runs: number, scratch: string): Promise<Row[]> {
  const server = await startServer()
  const rows: Row[] = []
  try {
    for (const speed of SPEEDS) {
      const size = speed * SECONDS
      const file = join(scratch, `throttle-${speed}`)
      await makeFile(file, size)
      const errors: number[] = []
      const deviations: number[] = []
      for (let run = 0; run < runs; run++) {
        const answer = await postMultipart(`${server.url}/api/upload?speed=${speed}`, [], {
          field: 'file',
          path: file,
          size,
          name: 'data.bin',
        })
        const t0 = performance.now()
        const { upload_id: id } = JSON.parse(answer.text) as { upload_id: string }
        const part = join(server.dir, '.transfers', id)
        let worst = 0
        for (;;) {
          const bytes = await sizeOf(part)
          if (bytes < 0) break // renamed into place: done
          const ideal = ((performance.now() - t0) / 1000) * speed
          worst = Math.max(worst, Math.abs(bytes - Math.min(size, ideal)))
          await sleep(SAMPLE_MS)
        }
        const done = await waitDone(server.url, id)
        const took = (Date.parse(done.completedAt!) - Date.parse(done.receivedAt!)) / 1000
        errors.push((Math.abs(took - SECONDS) / SECONDS) * 100)
        deviations.push((worst / speed) * 1000)
      }
      const chunkMs = (chunkSizeFor(speed) / speed) * 1000
      const error = median(errors)
      const deviation = median(deviations)
      rows.push(
        {
          figure: '4 throttle',
          measure: `${label(speed)}: completion-time error`,
          value: error,
          unit: '%',
          target: '< 1 %',
          pass: error < 1,
        },
        {
          figure: '4 throttle',
          measure: `${label(speed)}: largest distance from the ideal line`,
          value: deviation,
          unit: 'ms',
          target: `≤ 100 ms + 1 chunk (${chunkMs.toFixed(0)} ms)`,
          pass: deviation <= 100 + chunkMs,
        },
      )
    }
  } finally {
    await server.stop()
  }
  return rows
}
