import { createGraphQLError, type Plugin } from 'graphql-yoga'
import { httpStatusOf } from '../errors.js'
import { isMultipart } from '../core/ingest/ingest.js'
import type { NodeServerContext } from './context.js'

/** JSON and form bodies (not file uploads) larger than this are refused as they arrive. */
export const MAX_OPERATION_BYTES = 1024 * 1024

export interface OperationSizeLimitOptions {
  /**
   * The most bytes a JSON or form body (anything but a multipart upload) may hold; one more is a 413.
   *
   * @default 1048576 (MAX_OPERATION_BYTES, 1 MiB)
   */
  maxBytes?: number
}

const tooLarge = (maxBytes: number) =>
  createGraphQLError(`Request body is larger than ${maxBytes} bytes`, {
    extensions: { code: 'PAYLOAD_TOO_LARGE', http: { status: httpStatusOf('PAYLOAD_TOO_LARGE') } },
  })

/**
 * yoga's own body limit has to be off (it would also wrap multipart bodies, whose bytes busboy reads): this
 * one applies to every other body, and counts the bytes as they arrive, so a chunked body (no
 * Content-Length) is cut off at the limit too, never read whole into memory.
 */
export function useOperationSizeLimit({
  maxBytes = MAX_OPERATION_BYTES,
}: OperationSizeLimitOptions = {}): Plugin<Record<string, unknown>, NodeServerContext> {
  return {
    onRequestParse({ request, requestParser, setRequestParser, serverContext, fetchAPI }) {
      if (isMultipart(request.headers.get('content-type'))) return
      const refuse = () => {
        // The rest of the body is not wanted: the connection ends after the answer (closeInStages).
        serverContext?.res.setHeader('connection', 'close')
        return tooLarge(maxBytes)
      }
      const declared = request.headers.get('content-length')
      if (Number(declared ?? 0) > maxBytes) throw refuse()
      // A declared length is all the body there can be (Node's parser holds the client to it): only a
      // chunked body needs counting. The counting stream would cost most requests a third of their time.
      if (declared !== null) return
      const body = request.body
      if (!requestParser || !body) return
      let bytes = 0
      // As yoga's own limit does: a native body needs the native TransformStream, a ponyfilled one its own.
      const Transform = body instanceof ReadableStream ? globalThis.TransformStream : fetchAPI.TransformStream
      const counted = body.pipeThrough(
        new Transform<Uint8Array, Uint8Array>({
          transform(chunk, controller) {
            bytes += chunk.byteLength
            if (bytes > maxBytes) controller.error(refuse())
            else controller.enqueue(chunk)
          },
        }),
      )
      const limited = new fetchAPI.Request(request.url, {
        method: request.method,
        headers: request.headers,
        body: counted,
        // @ts-expect-error Node's fetch needs `duplex` for a streamed body; lib.dom's RequestInit lacks it.
        duplex: 'half',
      })
      setRequestParser(() => requestParser(limited))
    },
  }
}
