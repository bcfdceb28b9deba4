import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface S3Gate {
  /** `http://127.0.0.1:{port}`, for S3_ENDPOINT: every request passes through to the S3 behind it... */
  endpoint: string
  /** ...except those whose path and query contain `text`: they get no answer (S3 away for them) until `open()`. */
  hold(text: string): void
  /** Requests held so far. */
  held(): number
  /** Lets everything through again; the requests held are cut off (their clients try them again). */
  open(): void
  close(): Promise<void>
}

/**
 * An HTTP proxy in front of an S3 server (moto) that can make S3 silent for one upload only (its id is in
 * every key of it) while answering everything else: what a server recovering that upload meets when S3 stops
 * answering after its start-up checks passed.
 */
export async function s3Gate(target: string): Promise<S3Gate> {
  const { hostname, port } = new URL(target)
  let holding: string | undefined
  let count = 0
  const waiting = new Set<ServerResponse>()
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (holding !== undefined && req.url?.includes(holding)) {
      count++
      waiting.add(res)
      res.on('close', () => waiting.delete(res))
      return
    }
    const upstream = request(
      { hostname, port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers)
        answer.pipe(res)
      },
    )
    upstream.on('error', () => res.destroy())
    res.on('close', () => upstream.destroy())
    req.pipe(upstream)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const open = () => {
    holding = undefined
    for (const res of waiting) res.destroy()
    waiting.clear()
  }
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    hold: (text) => void (holding = text),
    held: () => count,
    open,
    close: async () => {
      open()
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}
