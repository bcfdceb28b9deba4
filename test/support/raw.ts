import { connect, type Socket } from 'node:net'

/**
 * An HTTP/1.1 request written by hand on a socket, for what real clients do but fetch will not: a body that
 * arrives piece by piece, or never finishes. `answer` resolves with the status and body the server sent,
 * whether or not the request body was finished.
 */
export interface RawRequest {
  socket: Socket
  write(chunk: string | Buffer): boolean
  /** Resolves once the server has answered (status line, headers and whatever body it sent), or closed. */
  answer: Promise<{ status: number; headers: string; body: string; closed: boolean }>
  end(): void
}

export function openRequest(url: string, head: string): RawRequest {
  const { port } = new URL(url)
  const socket = connect(Number(port), '127.0.0.1')
  socket.on('error', () => undefined) // a server that closes mid-body resets us; the answer says what came
  let text = ''
  const answer = new Promise<{ status: number; headers: string; body: string; closed: boolean }>(
    (resolve) => {
      const settle = (closed: boolean) => {
        const split = text.indexOf('\r\n\r\n')
        const headers = split === -1 ? text : text.slice(0, split)
        const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)
        resolve({ status, headers, body: split === -1 ? '' : text.slice(split + 4), closed })
      }
      socket.on('data', (chunk: Buffer) => {
        text += chunk.toString()
        const split = text.indexOf('\r\n\r\n')
        const length = /\r\ncontent-length: (\d+)/i.exec(text)?.[1]
        if (split !== -1 && length !== undefined && text.length - split - 4 >= Number(length)) settle(false)
      })
      socket.on('close', () => settle(true))
    },
  )
  socket.write(head)
  return {
    socket,
    write: (chunk) => socket.write(chunk),
    answer,
    end: () => socket.destroy(),
  }
}

/** Request head for a multipart POST whose body is `length` bytes (it may never all be sent). */
export const multipartHead = (path: string, length: number, boundary = 'b0undary') =>
  `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: ${length}\r\n\r\n`

export const partHead = (name: string, filename?: string, boundary = 'b0undary') =>
  `--${boundary}\r\nContent-Disposition: form-data; name="${name}"${filename === undefined ? '' : `; filename="${filename}"`}\r\n\r\n`
