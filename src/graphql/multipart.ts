import type { IncomingMessage, ServerResponse } from 'node:http'
import { createGraphQLError, type GraphQLParams, type Plugin } from 'graphql-yoga'
import { badInput, httpStatusOf, ServiceError } from '../errors.js'
import { isMultipart, receiveMultipart, type IngestLimits, type MultipartBody } from '../uploads/ingest.js'

export interface NodeServerContext {
  req: IncomingMessage
  res: ServerResponse
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

function parseJsonField(body: MultipartBody, name: string): unknown {
  const text = body.fields.get(name)
  if (text === undefined) throw badInput(`Multipart request has no "${name}" field`)
  try {
    return JSON.parse(text)
  } catch {
    throw badInput(`The "${name}" field is not valid JSON`)
  }
}

/** GraphQL multipart request spec: `operations` with null placeholders, `map` from file parts to them. */
function operationsOf(body: MultipartBody): GraphQLParams {
  const operations = parseJsonField(body, 'operations')
  const map = parseJsonField(body, 'map')
  if (typeof operations !== 'object' || operations === null || Array.isArray(operations)) {
    throw badInput('"operations" must be a JSON object (batched operations are not supported)')
  }
  if (typeof map !== 'object' || map === null || Array.isArray(map))
    throw badInput('"map" must be a JSON object')
  for (const [part, paths] of Object.entries(map)) {
    const file = body.files.get(part)
    if (!file)
      throw badInput(`"map" names file part ${JSON.stringify(part)}, which the request does not contain`)
    if (!Array.isArray(paths)) throw badInput(`"map" entry ${JSON.stringify(part)} must be an array of paths`)
    for (const path of paths) placeAt(operations, String(path), file)
  }
  return operations as GraphQLParams
}

/**
 * Streams GraphQL multipart requests to staging files instead of letting yoga collect them in memory.
 * Needs `maxRequestBodySize: false`: yoga's limit re-reads the body as a web stream, which would take the
 * bytes from under busboy. The size limit is enforced in the stream instead.
 */
export function useStreamingUploads(
  limits: IngestLimits,
): Plugin<Record<string, unknown>, NodeServerContext> {
  return {
    onRequestParse({ request, serverContext, setRequestParser }) {
      if (!isMultipart(request.headers.get('content-type'))) return
      const { req, res } = serverContext
      setRequestParser(async () => {
        try {
          const body = await receiveMultipart(req, limits)
          // Whatever the operation did not take over is removed once the answer has gone out.
          res.once('close', () => void body.dispose())
          try {
            return operationsOf(body)
          } catch (error) {
            await body.dispose()
            throw error
          }
        } catch (error) {
          if (!(error instanceof ServiceError)) throw error
          if (!req.complete) res.setHeader('connection', 'close')
          throw createGraphQLError(error.message, {
            extensions: { code: error.code, http: { status: httpStatusOf(error.code) } },
          })
        }
      })
    },
  }
}
