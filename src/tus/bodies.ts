import type { IncomingMessage } from 'node:http'
import type { Readable } from 'node:stream'
import { StreamLimiter, type Lock, type Locker } from '@tus/utils'

/** A request's own body, and the signal that stops it (its hold on the upload's lock). */
export interface SentBody {
  req: IncomingMessage
  stop: AbortSignal | undefined
}

/**
 * The bodies of tus POSTs and PATCHes, handed to TusStore.write as the Node streams they are. @tus/server
 * reads a body as a web stream (srvx's `Readable.toWeb`) and makes a Node stream of it again
 * (`Readable.fromWeb`, a PassThrough, a size limiter): four streams and a few promises for every chunk. Here
 * @tus/server is given an empty body, and the store takes the request itself, by its upload's id.
 *
 * @tus/server asks for a body while it holds its upload's lock, just before it calls TusStore.write, so at most
 * one body per upload waits here, and only between those two steps. What it would do to its own stream, this
 * does to the request's: when a newer request wants the lock, @tus/server stops the holder (after
 * lockDrainTimeout) with the signal it locked with, and the body then ends where it is, so the newer one can go on.
 */
export class RequestBodies {
  /** The upload each request is about, as @tus/server said (onIncomingRequest). */
  private readonly ids = new WeakMap<object, string>()
  private readonly waiting = new Map<string, SentBody>()
  /** The stop signal of the request holding each upload's lock. */
  private readonly holders = new Map<string, AbortSignal>()

  /** `inner`, telling this which request holds each upload's lock. */
  watching(inner: Locker): Locker {
    const holders = this.holders
    return {
      newLock(id: string): Lock {
        const lock = inner.newLock(id)
        let held: AbortSignal | undefined
        return {
          async lock(signal, release) {
            await lock.lock(signal, release)
            held = signal
            holders.set(id, signal)
          },
          async unlock() {
            if (held !== undefined && holders.get(id) === held) holders.delete(id)
            await lock.unlock()
          },
        }
      },
    }
  }

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
        // Its sender is gone already: nothing more will come of it (and its 'close' has been and gone).
        if (req.destroyed) return null
        const sent = { req, stop: this.holders.get(id) }
        this.waiting.set(id, sent)
        // Taken at once by the write; if that never comes (the request failed first), let go with the request.
        req.once('close', () => {
          if (this.waiting.get(id) === sent) this.waiting.delete(id)
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
  take(id: string, offset: number): SentBody | undefined {
    const sent = this.waiting.get(id)
    this.waiting.delete(id)
    const said = sent?.req.headers['upload-offset']
    if (sent?.req.method === 'PATCH' && said !== String(offset))
      throw new Error(`The body of a PATCH at ${said} reached a write at ${offset}`)
    return sent
  }
}

/**
 * A request's body, at most `limit` bytes: one more fails it with tus's 413 (@tus/server's own limiter). It
 * ends where it is, keeping what did arrive (and its hash, for the next request), when its sender goes away or
 * `stop` says so, as @tus/server's own reading does. The request itself is never destroyed: its answer can
 * still be sent. It starts flowing at once, before its reader is attached (the store awaits a few steps
 * first): a failure meanwhile is kept by the stream, which its reader then throws, and is not an uncaught
 * 'error' event.
 */
export function bodyOf({ req, stop }: SentBody, limit: number): Readable {
  const body = new StreamLimiter(limit)
  body.on('error', () => undefined)
  const cut = () => {
    req.unpipe(body)
    if (!body.writableEnded) body.end()
  }
  // A request that closes before its end was read never ends (Node drops what it had buffered): even one
  // whose every byte had arrived.
  const closed = () => {
    if (!req.readableEnded) cut()
  }
  req.once('close', closed)
  stop?.addEventListener('abort', cut, { once: true })
  body.once('close', () => {
    req.off('close', closed)
    stop?.removeEventListener('abort', cut)
  })
  if (stop?.aborted || (req.destroyed && !req.readableEnded)) cut()
  else req.pipe(body)
  return body
}
