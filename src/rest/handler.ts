import type { IncomingMessage, ServerResponse } from 'node:http'
import { join } from 'node:path'
import { parse, validate, type ExecutionResult, type GraphQLSchema } from 'graphql'
import { compileQuery, isCompiledQuery } from 'graphql-jit'
import { httpStatusOf, ServiceError } from '../errors.js'
import type { Context } from '../graphql/context.js'
import { codeOf, maskError } from '../graphql/errors.js'
import { receiveMultipart, type IngestLimits } from '../uploads/ingest.js'
import { log } from '../log.js'
import { sendFile } from './download.js'
import { routes, type Route } from './routes.js'

interface CompiledRoute extends Route {
  segments: string[]
  run: (context: Context, variables: Record<string, unknown>) => Promise<ExecutionResult> | ExecutionResult
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const json = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) })
  res.end(json)
}

/** Every error body on /api is `{"detail": "..."}`, as the older service's clients expect. */
function sendError(req: IncomingMessage, res: ServerResponse, status: number, detail: string): void {
  // Answering before the body has arrived (413, 422): close rather than read the rest of it.
  if (!req.complete) res.setHeader('connection', 'close')
  sendJson(res, status, { detail })
}

function compile(schema: GraphQLSchema): CompiledRoute[] {
  return routes.map((route) => {
    const document = parse(route.operation)
    const errors = validate(schema, document)
    if (errors.length > 0)
      throw new Error(`${route.method} ${route.path}: ${errors.map((e) => e.message).join('; ')}`)
    // The documents never change: compiled once to plain functions (graphql-jit), the same resolvers run
    // without graphql-js re-walking the document on every request.
    const compiled = compileQuery(schema, document)
    if (!isCompiledQuery(compiled))
      throw new Error(`${route.method} ${route.path}: ${JSON.stringify(compiled.errors)}`)
    return {
      ...route,
      segments: route.path.split('/'),
      run: (context, variables) => compiled.query(undefined, context, variables),
    }
  })
}

/** The route for a path, with its `:id`; or the methods the path does allow, for a 405. */
type Match = { route: CompiledRoute; id: string | undefined } | { allowed: string[] }

function match(table: CompiledRoute[], method: string, pathname: string): Match {
  const parts = pathname.replace(/\/+$/, '').split('/')
  const allowed: string[] = []
  for (const route of table) {
    if (route.segments.length !== parts.length) continue
    let id: string | undefined
    const same = route.segments.every((segment, i) => {
      if (segment === ':id') return (id = parts[i]) !== ''
      return segment === parts[i]
    })
    if (!same) continue
    // HEAD is GET without the body (Node's http drops it); download managers probe with it.
    if (route.method === method || (method === 'HEAD' && route.method === 'GET'))
      return { route, id: id === undefined ? undefined : decodeURIComponent(id) }
    allowed.push(route.method)
  }
  return { allowed }
}

/**
 * /api/*: finds the route, receives the file for the upload route, runs the route's GraphQL operation
 * against the same schema and context as /graphql, and shapes the answer (or, for a download, streams the
 * stored file). Errors map through the same `maskError` as GraphQL, then from code to HTTP status.
 */
export function createRestHandler(
  schema: GraphQLSchema,
  context: Context,
  limits: IngestLimits,
  uploadDir: string,
) {
  const table = compile(schema)

  return async function handleRest(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    let found: Match
    try {
      found = match(table, req.method ?? 'GET', url.pathname)
    } catch {
      return sendError(req, res, 404, 'Not Found')
    }
    if (!('route' in found)) {
      if (found.allowed.length === 0) return sendError(req, res, 404, 'Not Found')
      res.setHeader('allow', found.allowed.join(', '))
      return sendError(req, res, 405, 'Method Not Allowed')
    }
    const { route, id } = found
    try {
      const variables = route.variables(id, url.searchParams)
      if (route.upload) {
        const body = await receiveMultipart(req, limits)
        res.once('close', () => void body.dispose())
        variables.file = body.files.get('file')
      }
      const result = await route.run(context, variables)
      const [first] = result.errors ?? []
      if (first) {
        const error = maskError(first, 'Unexpected error')
        return sendError(req, res, httpStatusOf(codeOf(error)), error.message)
      }
      if (route.file) {
        const file = route.file(result.data ?? {})
        if ('missing' in file) return sendError(req, res, 404, file.missing)
        return await sendFile(req, res, { ...file, path: join(uploadDir, file.storedName) })
      }
      sendJson(res, 200, route.reply(result.data ?? {}))
    } catch (error) {
      if (error instanceof ServiceError) return sendError(req, res, httpStatusOf(error.code), error.message)
      if (!req.complete) return void res.destroy()
      log('error', 'rest.error', { method: req.method, path: url.pathname, error })
      sendError(req, res, 500, 'Internal Server Error')
    }
  }
}
