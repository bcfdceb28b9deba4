import { connect, createServer, type AddressInfo, type Socket } from 'node:net'

export interface CutProxy {
  /** Where a page reaches the server through the proxy. */
  url: string
  /** The network drops: every connection through it is reset, and new ones are refused until `restore`. */
  cut(): void
  restore(): void
  close(): Promise<void>
}

/**
 * A TCP proxy in front of `target` (http://host:port) whose network can be dropped and brought back: what a
 * browser sees of a flaky connection, while the server itself stays up (it sees its requests cut off).
 */
export async function cutProxy(target: string): Promise<CutProxy> {
  const { hostname, port } = new URL(target)
  const open = new Set<Socket>()
  let down = false
  const server = createServer((client) => {
    if (down) return void client.resetAndDestroy()
    const upstream = connect(Number(port), hostname)
    open.add(client)
    open.add(upstream)
    const drop = () => {
      client.destroy()
      upstream.destroy()
      open.delete(client)
      open.delete(upstream)
    }
    for (const socket of [client, upstream]) socket.on('error', drop).on('close', drop)
    client.pipe(upstream)
    upstream.pipe(client)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const cut = () => {
    down = true
    for (const socket of open) socket.resetAndDestroy()
    open.clear()
  }
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    cut,
    restore: () => void (down = false),
    close: async () => {
      cut()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}
