import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { median, now, startServer, type Row } from './lib.js'

const FIGURE = '16 hooks'

/**
 * 16: what a pre-create hook costs an upload. Two servers in one run, one with HOOKS_URL (pre-create only)
 * pointing at a receiver in this process that answers 204 at once, one without; `uploads` REST uploads
 * of 16 bytes to each, one at a time and alternating between them so both see the same machine. Each
 * upload is timed from its request to its answer; the figure is the difference of the medians.
 */
export async function hooks(uploads = 400): Promise<Row[]> {
  let asked = 0
  const receiver = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      asked++
      res.writeHead(204).end()
    })
  })
  receiver.listen(0, '127.0.0.1')
  await once(receiver, 'listening')
  const hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`
  const withHooks = await startServer({
    HOOKS_URL: hookUrl,
    HOOKS_SECRET: 'bench-hooks-secret-0123456789',
    HOOKS_EVENTS: 'pre-create',
  })
  const without = await startServer()
  const body = new Uint8Array(16)
  const upload = async (url: string) => {
    const form = new FormData()
    form.append('file', new Blob([body]), 'tiny.bin')
    const started = now()
    const response = await fetch(`${url}/api/upload?speed=0`, { method: 'POST', body: form })
    await response.arrayBuffer()
    if (response.status !== 200) throw new Error(`upload answered ${response.status}`)
    return now() - started
  }
  try {
    // Warm both (connections, the lazily loaded API, the JIT) before timing.
    for (let i = 0; i < 50; i++) await Promise.all([upload(withHooks.url), upload(without.url)])
    const timed = { hooks: [] as number[], plain: [] as number[] }
    for (let i = 0; i < uploads; i++) {
      timed.hooks.push(await upload(withHooks.url))
      timed.plain.push(await upload(without.url))
    }
    if (asked < uploads) throw new Error(`the hook was asked ${asked} times for ${uploads} uploads`)
    const plain = median(timed.plain)
    const added = median(timed.hooks) - plain
    return [
      {
        figure: FIGURE,
        measure: `pre-create added per upload (REST, 16 B, ${uploads} uploads each, hook answering at once)`,
        value: added,
        unit: 'ms',
        baseline: { name: 'no hooks, median per upload', value: plain },
        target: '≤ 2 ms over loopback',
        pass: added <= 2,
      },
    ]
  } finally {
    await withHooks.stop()
    await without.stop()
    receiver.closeAllConnections()
    receiver.close()
  }
}
