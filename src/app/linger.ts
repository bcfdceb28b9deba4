import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'

/**
 * How long, and how much of a body, the server goes on reading after answering before that body arrived.
 * Enough for a proxy or a client to read the answer (nginx stops sending the moment it has it), not enough
 * for a stranger to keep a connection and a read loop for long with a body no one will use.
 */
export interface LingerBound {
  bytes: number
  ms: number
}

export const LINGER: LingerBound = { bytes: 16 * 1024 ** 2, ms: 5_000 }

/**
 * Every answer given before its request's body has all arrived (a 413 or 422 refusal, a 403, a tus 409)
 * reaches the client, directly or through a proxy, instead of a reset.
 *
 * Node answers `Connection: close` by shutting the socket's writing side and destroying it as soon as the
 * answer is flushed. Bytes of the body still on their way then meet a closed socket, and the kernel resets
 * the connection; a reset throws away whatever the peer had not read yet, the answer included. A proxy
 * that is still writing the body (nginx with request buffering off) gets "broken pipe" instead of the
 * answer, gives its client a 502, and counts it as a failure of this instance. So the connection closes in
 * stages (RFC 9112, section 9.6): the writing side shuts after the answer, the rest of the body is read
 * and dropped until the peer closes its side too, and only after the bound is the connection cut. An
 * answer that keeps the connection alive is drained within the same bound, and cut past it.
 *
 * This is the one place that decides it, for every route (REST, GraphQL, tus, the origin checks): the
 * routes only say `Connection: close` when they answer early.
 */
export function closeInStages(server: Server, bound: LingerBound = LINGER): void {
  server.on('connection', (socket: Socket) => {
    // Node's http server calls destroySoon() once a `Connection: close` answer is written; the only caller.
    socket.destroySoon = () => linger(socket, bound)
  })
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    // Node's own 'finish' listener (added before this one) has run: the socket is shutting or kept alive.
    res.once('finish', () => {
      if (!req.complete) drain(req, bound)
    })
  })
}

/** Shut the writing side now; destroy once the peer closes its side (Node does then), or past the bound. */
function linger(socket: Socket, bound: LingerBound): void {
  if (socket.writable) socket.end()
  if (socket.destroyed) return
  const cut = setTimeout(() => socket.destroy(), bound.ms)
  cut.unref()
  socket.once('close', () => clearTimeout(cut))
}

/** How often a drain looks at what it has read: it may run over the byte bound by what arrives meanwhile. */
const DRAIN_CHECK_MS = 20

/** Read the rest of a body no one wants, and drop it; past the bound, cut the connection. */
function drain(req: IncomingMessage, bound: LingerBound): void {
  // Node lets go of the socket once the connection is over (the client went, an answer that closed it
  // was written): nothing left to drain. Its type says otherwise; it is null then.
  const socket = req.socket as Socket | null
  if (!socket || socket.destroyed) return
  // Counted on the socket: Node's parser drops a dumped body's bytes itself, and they never reach `req`.
  const from = socket.bytesRead
  const started = performance.now()
  const check = setInterval(() => {
    // All of it in (a kept-alive connection goes on serving), or the connection is over.
    if (req.complete || socket.destroyed) return clearInterval(check)
    if (socket.bytesRead - from > bound.bytes || performance.now() - started > bound.ms) {
      clearInterval(check)
      socket.destroy()
    }
  }, DRAIN_CHECK_MS)
  check.unref()
  // Whoever read the body before the answer (busboy, a tus store) has let go of it; nothing else will.
  req.unpipe()
  req.resume()
}
