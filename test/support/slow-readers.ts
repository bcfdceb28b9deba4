import { request, type ClientRequest, type IncomingMessage } from 'node:http'
import WebSocket from 'ws'

/**
 * Subscribers that can stop reading, for the slow-reader claim: each one records every `next` payload it
 * takes off the wire, in order, and `pause()` stops it taking bytes off its socket at all (so the kernel's
 * buffers fill, and then the server's writes wait), as a stalled browser tab or a client on a bad link does.
 */
export interface SlowReader<T> {
  /** Every event read so far, in order. */
  events: T[]
  /** Stops reading from the socket: nothing more is taken off it until `resume()`. */
  pause(): void
  resume(): void
  /** Rejects if the subscription errors or the connection drops before `close()`. */
  failed: Promise<never>
  close(): void
}

/** A graphql-ws (graphql-transport-ws) subscription over a raw `ws` socket, which `pause()` stops reading. */
export function wsSlowReader<T>(
  url: string,
  query: string,
  variables: Record<string, unknown> = {},
): SlowReader<T> {
  const socket = new WebSocket(url.replace(/^http/, 'ws') + '/graphql', 'graphql-transport-ws')
  const events: T[] = []
  let closing = false
  const failed = new Promise<never>((_, reject) => {
    socket.on('open', () => socket.send(JSON.stringify({ type: 'connection_init' })))
    socket.on('message', (data: Buffer) => {
      const message = JSON.parse(data.toString()) as { type: string; payload?: { data?: T } }
      if (message.type === 'connection_ack')
        socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query, variables } }))
      else if (message.type === 'next') events.push(message.payload?.data as T)
      else if (message.type === 'error' || message.type === 'complete')
        reject(new Error(`subscription ended: ${data.toString().slice(0, 500)}`))
    })
    socket.on('error', (error) => reject(error))
    socket.on('close', (code) => {
      if (!closing) reject(new Error(`socket closed with ${code}`))
    })
  })
  failed.catch(() => undefined)
  return {
    events,
    pause: () => socket.pause(),
    resume: () => socket.resume(),
    failed,
    close() {
      closing = true
      socket.terminate()
    },
  }
}

/** The same subscription over SSE (POST with accept: text/event-stream), read with node:http. */
export function sseSlowReader<T>(
  url: string,
  query: string,
  variables: Record<string, unknown> = {},
): SlowReader<T> {
  const events: T[] = []
  let response: IncomingMessage | undefined
  let paused = false
  let closing = false
  let req!: ClientRequest
  const failed = new Promise<never>((_, reject) => {
    req = request(
      `${url}/graphql`,
      { method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/event-stream' } },
      (res) => {
        response = res
        if (paused) res.pause()
        if (res.statusCode !== 200) reject(new Error(`SSE answered ${res.statusCode}`))
        let text = ''
        res.on('data', (chunk: Buffer) => {
          text += chunk.toString()
          // Events are separated by a blank line; a partial one stays in `text` until the rest comes.
          let end: number
          while ((end = text.indexOf('\n\n')) !== -1) {
            const event = text.slice(0, end)
            text = text.slice(end + 2)
            const data = /^event: next\ndata: (.*)$/s.exec(event)?.[1]
            if (data !== undefined) events.push((JSON.parse(data) as { data: T }).data)
            else if (/^event: complete/.test(event)) reject(new Error('subscription completed'))
          }
        })
        res.on('close', () => {
          if (!closing) reject(new Error('SSE stream ended'))
        })
      },
    )
    req.on('error', (error) => {
      if (!closing) reject(error)
    })
    req.end(JSON.stringify({ query, variables }))
  })
  failed.catch(() => undefined)
  return {
    events,
    // A paused IncomingMessage stops taking bytes off the socket once its own small buffer is full.
    pause() {
      paused = true
      response?.pause()
    },
    resume() {
      paused = false
      response?.resume()
    },
    failed,
    close() {
      closing = true
      req.destroy()
    },
  }
}
