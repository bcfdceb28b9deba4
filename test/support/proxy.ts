import { createServer, connect, type Server, type Socket } from 'node:net'

/**
 * A TCP proxy in front of a server, for what a test must see of a client from outside: every byte the client
 * sends (counted and kept) and gets back (counted), at a pace the test sets (to make a transfer slow enough to
 * interrupt, or stop it where it is).
 */
export interface Proxy {
  url: string
  /** Sends new connections to another server (one restarted on another port). */
  retarget(target: string): void
  /** Bytes per second from the client to the server; 0 = as fast as they come. */
  setRate(bytesPerSecond: number): void
  /** Bytes per second from the server back to the client (a slow download); 0 = as fast as they come. */
  setReturnRate(bytesPerSecond: number): void
  /** Passes nothing more from clients to the server, until cut(). */
  hold(): void
  /** What clients sent since the last reset, as latin1 text (request heads can be read in it). */
  sent(): string
  /** How many bytes clients sent since the last reset. */
  sentBytes(): number
  /** How many bytes the server sent back since the last reset. */
  receivedBytes(): number
  reset(): void
  /**
   * Drops every open connection at once, with what is still in flight (as a cable pulled out): a client that
   * has gone leaves nothing behind for the server to read later. New connections pass freely again.
   */
  cut(): void
  close(): Promise<void>
}

export async function startProxy(target: string): Promise<Proxy> {
  let { hostname, port } = new URL(target)
  let rate = 0
  let returnRate = 0
  let held = false
  let chunks: Buffer[] = []
  let count = 0
  let back = 0
  const sockets = new Set<Socket>()
  const timers = new Set<NodeJS.Timeout>()
  const server: Server = createServer((client) => {
    const upstream = connect(Number(port), hostname)
    sockets.add(client)
    sockets.add(upstream)
    const end = () => {
      client.destroy()
      upstream.destroy()
      sockets.delete(client)
      sockets.delete(upstream)
    }
    client.on('error', end)
    upstream.on('error', end)
    client.on('close', end)
    upstream.on('close', end)
    upstream.on('data', (chunk: Buffer) => {
      back += chunk.length
      client.write(chunk)
      if (returnRate > 0) {
        upstream.pause()
        const timer = setTimeout(
          () => {
            timers.delete(timer)
            upstream.resume()
          },
          (chunk.length / returnRate) * 1000,
        )
        timers.add(timer)
      }
    })
    client.on('data', (chunk: Buffer) => {
      if (held) {
        // Read but never passed on: cut() drops it with the connection.
        client.pause()
        return
      }
      chunks.push(chunk)
      count += chunk.length
      upstream.write(chunk)
      if (rate > 0) {
        client.pause()
        const timer = setTimeout(
          () => {
            timers.delete(timer)
            if (!held) client.resume()
          },
          (chunk.length / rate) * 1000,
        )
        timers.add(timer)
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('the proxy has no port')
  const dropAll = () => {
    for (const timer of timers) clearTimeout(timer)
    timers.clear()
    for (const socket of sockets) socket.destroy()
    sockets.clear()
  }
  return {
    url: `http://127.0.0.1:${address.port}`,
    retarget: (next) => {
      ;({ hostname, port } = new URL(next))
    },
    setRate: (bytesPerSecond) => (rate = bytesPerSecond),
    setReturnRate: (bytesPerSecond) => (returnRate = bytesPerSecond),
    hold: () => (held = true),
    sent: () => Buffer.concat(chunks).toString('latin1'),
    sentBytes: () => count,
    receivedBytes: () => back,
    reset: () => {
      chunks = []
      count = 0
      back = 0
    },
    cut: () => {
      dropAll()
      held = false
    },
    close: async () => {
      dropAll()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
