import type { IncomingMessage } from 'node:http'
import { Transform, type Readable } from 'node:stream'
import { ERRORS } from '@tus/utils'

/**
 * The bodies of tus POSTs and PATCHes, handed to TusStore.write as the Node streams they are. @tus/server
 * reads a body as a web stream (srvx's `Readable.toWeb`) and makes a Node stream of it again
 * (`Readable.fromWeb`, a PassThrough, a size limiter): four streams and a few promises for every chunk. Here
 * @tus/server is given an empty body, and the store takes the request itself, by its upload's id.
 *
 * @tus/server asks for a body while it holds its upload's lock, just before it calls TusStore.write, so at most
 * one body per upload waits here, and only between those two steps.
 */
export class RequestBodies {
  /** The upload each request is about, as @tus/server said (onIncomingRequest). */
  private readonly ids = new WeakMap<object, string>()
  private readonly waiting = new Map<string, IncomingMessage>()

  /** `request` (the web request @tus/server is handling) is about upload `id`. */
  expect(request: object, id: string): void {
    this.ids.set(request, id)
  }

  /**
   * When @tus/server asks for `request`'s body: `req` is kept for its upload's write, and the body it gets is
   * empty. A request whose upload it never named keeps its body as srvx reads it.
   */
  handOver(request: object, req: IncomingMessage): void {
    const own = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(request) as object, 'body')
    Object.defineProperty(request, 'body', {
      get: () => {
        const id = this.ids.get(request)
        if (id === undefined) return own?.get?.call(request)
        this.waiting.set(id, req)
        // Taken at once by the write; if that never comes (the request failed first), let go with the request.
        req.once('close', () => {
          if (this.waiting.get(id) === req) this.waiting.delete(id)
        })
        return null
      },
    })
  }

  /**
   * The request whose body @tus/server has just asked for, for upload `id` at `offset`, if it was handed over.
   * A PATCH that says another offset is not this write's: a version of @tus/server that asked for bodies
   * outside the lock could mix two requests' up, so that is refused rather than written.
   */
  take(id: string, offset: number): IncomingMessage | undefined {
    const req = this.waiting.get(id)
    this.waiting.delete(id)
    if (req?.method === 'PATCH' && req.headers['upload-offset'] !== String(offset))
      throw new Error(`The body of a PATCH at ${req.headers['upload-offset']} reached a write at ${offset}`)
    return req
  }
}

/**
 * `req`'s body, at most `limit` bytes: one more fails it with tus's 413, as @tus/server's limiter does. A sender
 * that goes away ends it where it stopped, as @tus/server's own reading does, so what did arrive is kept (and
 * its hash, for the next request). The request itself is never destroyed: its answer can still be sent.
 */
export function bodyOf(req: IncomingMessage, limit: number): Readable {
  let seen = 0
  const body = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      seen += chunk.length
      if (seen > limit)
        done(Object.assign(new Error(ERRORS.ERR_MAX_SIZE_EXCEEDED.body), ERRORS.ERR_MAX_SIZE_EXCEEDED))
      else done(null, chunk)
    },
  })
  req.once('close', () => {
    if (req.complete) return
    req.unpipe(body)
    body.end()
  })
  req.pipe(body)
  return body
}
