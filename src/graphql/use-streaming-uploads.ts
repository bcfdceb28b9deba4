import { createGraphQLError, type GraphQLParams, type Plugin } from 'graphql-yoga'
import { badInput, bodyError, httpStatusOf, ServiceError } from '../errors.js'
import { IncomingFile, isMultipart, receiveMultipart, type IngestOptions } from '../core/ingest/ingest.js'

import type { NodeServerContext } from './context.js'

export interface StreamingUploadsOptions {
  /**
   * Where arriving files are staged (the storage), and the most bytes of files one request may carry
   * (MAX_UPLOAD_SIZE: one byte more is a 413, and nothing is kept).
   *
   * @default none: required (the server's storage and MAX_UPLOAD_SIZE)
   */
  limits: IngestOptions
}

const FORBIDDEN_KEYS = new Set(['__proto__', 'prototype', 'constructor'])

/** Puts `value` where a multipart `map` path ("variables.file", "0.variables.files.1") points. */
function placeAt(root: unknown, path: string, value: unknown): void {
  const keys = path.split('.')
  const last = keys.pop()
  let node = root
  for (const key of keys) {
    if (FORBIDDEN_KEYS.has(key) || typeof node !== 'object' || node === null || !Object.hasOwn(node, key)) {
      throw badInput(`map path ${JSON.stringify(path)} does not point into operations`)
    }
    node = (node as Record<string, unknown>)[key]
  }
  if (last === undefined || FORBIDDEN_KEYS.has(last) || typeof node !== 'object' || node === null) {
    throw badInput(`map path ${JSON.stringify(path)} does not point into operations`)
  }
  ;(node as Record<string, unknown>)[last] = value
}

function parseJson(text: string, name: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    throw badInput(`The "${name}" field is not valid JSON`)
  }
}

/**
 * GraphQL multipart request spec: `operations` (with null where files go), then `map` (file part → paths),
 * then the file parts. Each mapped part becomes an IncomingFile placed into the variables at once.
 */
function placeFiles(operations: unknown, mapText: string): Map<string, IncomingFile> {
  if (typeof operations !== 'object' || operations === null || Array.isArray(operations)) {
    throw badInput('"operations" must be a JSON object (batched operations are not supported)')
  }
  const map = parseJson(mapText, 'map')
  if (typeof map !== 'object' || map === null || Array.isArray(map))
    throw badInput('"map" must be a JSON object')
  const files = new Map<string, IncomingFile>()
  for (const [part, paths] of Object.entries(map)) {
    if (!Array.isArray(paths) || paths.length === 0)
      throw badInput(`"map" entry ${JSON.stringify(part)} must be a non-empty array of paths`)
    // The spec allows one part in several places; each upload needs bytes of its own, so it is refused.
    if (paths.length > 1)
      throw badInput(
        `"map" sends file part ${JSON.stringify(part)} to ${paths.length} places; send one file part per variable`,
      )
    const file = new IncomingFile(part)
    placeAt(operations, String(paths[0]), file)
    files.set(part, file)
  }
  return files
}

/** An ingest error becomes the HTTP answer: 413, 422 or 507 (the body itself was at fault). */
function asHttpError(error: unknown): unknown {
  if (!(error instanceof ServiceError)) return error
  return createGraphQLError(error.message, {
    extensions: { code: error.code, http: { status: httpStatusOf(error.code) } },
  })
}

/**
 * Streams GraphQL multipart requests to staging files instead of letting yoga collect them in memory, and
 * hands the operation to yoga as soon as `map` has arrived: it is parsed, validated and its other variables
 * checked (a bad speed, a broken query) before the first byte of any file is read. Resolvers get
 * IncomingFiles and await their arrival.
 *
 * Needs `maxRequestBodySize: false`: yoga's limit re-reads the body as a web stream, which would take the
 * bytes from under busboy. The limits are enforced in the stream instead (see ingest.ts).
 */
export function useStreamingUploads({
  limits,
}: StreamingUploadsOptions): Plugin<Record<string, unknown>, NodeServerContext> {
  return {
    onRequestParse({ request, serverContext, setRequestParser }) {
      if (!isMultipart(request.headers.get('content-type'))) return
      const { req, res } = serverContext
      setRequestParser(async () => {
        let operations: unknown
        let files: Map<string, IncomingFile> | undefined
        const taken = new Set<string>()
        let ready!: { resolve: (params: GraphQLParams) => void; reject: (error: unknown) => void }
        const params = new Promise<GraphQLParams>((resolve, reject) => (ready = { resolve, reject }))
        const session = receiveMultipart(req, limits, {
          onField(name, value) {
            if (files) return // nothing is expected after map; ignored, but bounded by the ingest
            if (name === 'operations') {
              if (operations !== undefined) throw badInput('"operations" was sent twice')
              operations = parseJson(value, 'operations')
            } else if (name === 'map') {
              if (operations === undefined) throw badInput('"operations" must come before "map"')
              files = placeFiles(operations, value)
              ready.resolve(operations as GraphQLParams)
            }
          },
          fileFor(field) {
            if (!files) throw badInput('File parts must come after the "operations" and "map" fields')
            const file = files.get(field)
            if (file) taken.add(field)
            // A part the map does not name is read and dropped, never stored.
            return file
          },
        })
        // Answered (early, or on error) before the body finished: stop reading it and remove what it left.
        res.once('close', () => {
          session.abort()
          void session.dispose()
        })
        session.done.then(
          () => {
            if (!files)
              return ready.reject(badInput('The multipart request has no "operations" and "map" fields'))
            for (const [field, file] of files)
              if (!taken.has(field))
                file.reject(
                  bodyError(
                    'BAD_USER_INPUT',
                    `"map" names file part ${JSON.stringify(field)}, which the request does not contain`,
                  ),
                )
          },
          (error: unknown) => {
            ready.reject(error)
            // The operation may be running already, waiting for a file part that will never come now.
            for (const [field, file] of files ?? []) if (!taken.has(field)) file.reject(error as Error)
          },
        )
        try {
          return await params
        } catch (error) {
          throw asHttpError(error)
        }
      })
    },
    onResponse({ serverContext, response }) {
      // Answering before the whole body arrived (an early refusal): the connection ends after it, once the
      // rest of the body has been read and dropped, within a bound (closeInStages, src/linger.ts).
      if (serverContext && !serverContext.req.complete) serverContext.res.setHeader('connection', 'close')
      // An event stream goes out as it happens, even through a proxy that buffers answers (nginx's default).
      if (response.headers.get('content-type')?.startsWith('text/event-stream'))
        response.headers.set('x-accel-buffering', 'no')
    },
  }
}
