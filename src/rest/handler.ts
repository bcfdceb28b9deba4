import { once } from 'node:events'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { parse, validate, type ExecutionResult, type GraphQLSchema } from 'graphql'
import { methodNotAllowed, notFound, sendDetail, sendInternalError } from '../app/answers.js'
import { sendJson } from '../app/http-json.js'
import { badInput, bodyError, httpStatusOf, quote, ServiceError } from '../errors.js'
import { principalOf } from '../auth/principal.js'
import type { ContextFor } from '../graphql/context.js'
import { codeOf, maskError } from '../graphql/errors.js'
import { compile, type Run } from '../graphql/executor.js'
import {
  callerOf,
  IncomingFile,
  receiveMultipart,
  RequestEnded,
  type IngestOptions,
} from '../core/ingest/ingest.js'
import { log } from '../log.js'
import { requestIdOf } from '../app/request-id.js'
import { sendFile, StoredFileMissing } from './download.js'
import { parseSpeed, restStatus, routes, SET_SPEED, type Route, type Upload } from './routes.js'

interface CompiledRoute extends Route {
  segments: string[]
  run: Run
}

/** Every error body on /api is `{"detail": "..."}`, as the older service's clients expect (see answers.ts). */
const sendError = (
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  detail: string,
  error?: unknown,
) => sendDetail(req, res, status, detail, { event: 'rest.error', error: error ?? detail })

/** Uploads per page of a streamed list: each page is a few milliseconds of work at most. */
const LIST_PAGE = 500

/**
 * A long list, answered a page at a time (see Route.list): between pages the event loop serves everyone
 * else, and a client that reads slowly holds back only its own next page. A failure before the first
 * byte is an error answer; after it, the connection is cut (the JSON is left unfinished, never wrong).
 */
async function sendList(
  req: IncomingMessage,
  res: ServerResponse,
  list: NonNullable<Route['list']>,
  run: (page: { first: number; after?: string }) => ExecutionResult | Promise<ExecutionResult>,
): Promise<void> {
  let after: string | undefined
  for (let first = true; ; first = false) {
    const result = await run({ first: LIST_PAGE, ...(after === undefined ? {} : { after }) })
    const failure = failureOf(result)
    if (failure) {
      if (first) return sendError(req, res, failure.status, failure.detail, failure.error)
      return sendInternalError(req, res, { event: 'rest.error', error: failure.error })
    }
    const page = (result.data?.[list.field] ?? []) as (Upload & { cursor: string })[]
    if (first) res.writeHead(200, { 'content-type': 'application/json' })
    const items = page.map((upload) => JSON.stringify(list.item(upload))).join(',')
    const text = `${first ? `{${JSON.stringify(list.key)}:[` : page.length > 0 ? ',' : ''}${items}`
    // Only an empty page ends it: one may come short (an upload deleted while it was read) with more after.
    if (page.length === 0) return void res.end(`${text}]}\n`)
    if (!res.write(text)) await Promise.race([once(res, 'drain'), once(res, 'close')])
    if (res.destroyed) return
    after = page.at(-1)?.cursor
    await new Promise((resolve) => setImmediate(resolve))
  }
}

/**
 * The documents never change: each is validated now, and compiled by the executor GraphQL's queries share
 * (executor.ts) the first time it runs; after that a request runs the compiled code without waiting.
 */
function compileOperation(schema: GraphQLSchema, name: string, operation: string): Run {
  const document = parse(operation)
  const errors = validate(schema, document)
  if (errors.length > 0) throw new Error(`${name}: ${errors.map((e) => e.message).join('; ')}`)
  let compiled: Run | undefined
  let compiling: Promise<Run> | undefined
  return (context, variables) => {
    if (compiled) return compiled(context, variables)
    compiling ??= compile(schema, document).then(
      (run) => (compiled = run),
      (error: unknown) => {
        throw new Error(`${name}: ${(error as Error).message}`)
      },
    )
    return compiling.then((run) => run(context, variables))
  }
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
 * A GraphQL error, masked as everywhere, becomes an HTTP status and a detail (and the error, for the log).
 * The detail names statuses in REST's words (`in_progress`), not the GraphQL enum's.
 */
function failureOf(result: ExecutionResult): { status: number; detail: string; error: unknown } | undefined {
  const [first] = result.errors ?? []
  if (!first) return undefined
  const error = maskError(first, 'Internal Server Error')
  const service = first.originalError instanceof ServiceError ? first.originalError : undefined
  return {
    // A hook's rejection carries its own status (a 409, say): said as the hook said it.
    status: service ? service.httpStatus : httpStatusOf(codeOf(error)),
    detail: service ? service.in(restStatus) : error.message,
    error: first.originalError ?? first,
  }
}

const describePart = ([name, kind]: [string, string]) => `${quote(name, 40)} (${kind})`

/**
 * The upload route's body: multipart, with the file in the `file` part and, optionally, a `speed` field.
 * The query string was checked before this (a bad `?speed` never costs a byte of upload); the operation
 * runs as soon as the `file` part begins, so the resolver checks the rest before the bytes arrive, and
 * answers once they have.
 */
async function receiveUpload(
  req: IncomingMessage,
  res: ServerResponse,
  limits: IngestOptions,
  variables: Record<string, unknown>,
  run: (variables: Record<string, unknown>) => Promise<ExecutionResult>,
  setSpeed: (id: string, speed: number) => Promise<ExecutionResult>,
): Promise<ExecutionResult> {
  const querySpeed = variables.speed as number | undefined
  let formSpeed: number | undefined
  let file: IncomingFile | undefined
  const seen: [string, string][] = []
  let begun!: () => void
  const fileBegan = new Promise<void>((resolve) => (begun = resolve))
  const session = receiveMultipart(req, limits, {
    onField(name, value) {
      seen.push([name, 'a text field, not a file'])
      if (name !== 'speed') return
      // Checked as it arrives, wherever it is in the body.
      const speed = parseSpeed(value, 'the speed field')
      if (querySpeed !== undefined && speed !== querySpeed)
        throw badInput(
          `speed is given twice and the two disagree (?speed=${querySpeed}, and the form field speed=${speed}); give one`,
        )
      if (formSpeed !== undefined && speed !== formSpeed)
        throw badInput('The speed field was sent twice with different values')
      formSpeed = speed
    },
    fileFor(field) {
      seen.push([field, 'a file'])
      if (field !== 'file') return undefined // read and dropped, never stored
      if (file)
        throw bodyError('BAD_USER_INPUT', 'The "file" part was sent more than once; send one file per upload')
      file = new IncomingFile(field)
      file.caller = callerOf(req, 'rest', requestIdOf(req))
      begun()
      return file
    },
  })
  res.once('close', () => {
    session.abort()
    void session.dispose()
  })

  await Promise.race([fileBegan, session.done])
  if (!file) {
    const parts = seen.length === 0 ? 'none' : seen.map(describePart).join(', ')
    throw bodyError(
      'BAD_USER_INPUT',
      `The body has no "file" part holding a file; send it as curl -F "file=@path/to/file". Parts received: ${parts}`,
    )
  }
  const speedAtStart = querySpeed ?? formSpeed
  // The upload is taken only once the whole body has arrived (see IncomingFile): if what comes after the
  // file part is bad, the request is refused whole, and the upload its file began is undone.
  const result = await run({ ...variables, file, speed: speedAtStart })
  if (result.errors?.length) return result
  const id = (result.data?.uploadFile as { id: string } | undefined)?.id
  // A speed field may have come after the file part.
  await session.done
  if (id !== undefined && formSpeed !== undefined && formSpeed !== speedAtStart) {
    const changed = await setSpeed(id, formSpeed)
    if (changed.errors?.length) return changed
    const created = result.data?.uploadFile as { targetSpeed: number } | undefined
    if (created) created.targetSpeed = formSpeed
  }
  return result
}

/**
 * /api/*: finds the route, receives the file for the upload route, runs the route's GraphQL operation
 * against the same schema and context as /graphql, and shapes the answer (or, for a download, streams the
 * stored file). Errors map through the same `maskError` as GraphQL, then from code to HTTP status.
 */
export function createRestHandler(schema: GraphQLSchema, contextFor: ContextFor, limits: IngestOptions) {
  const table: CompiledRoute[] = routes.map((route) => ({
    ...route,
    segments: route.path.split('/'),
    run: compileOperation(schema, `${route.method} ${route.path}`, route.operation),
  }))
  const setSpeed = compileOperation(schema, 'setSpeed', SET_SPEED)

  return async function handleRest(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    let found: Match
    try {
      found = match(table, req.method ?? 'GET', url.pathname)
    } catch {
      return notFound(req, res)
    }
    if (!('route' in found)) {
      if (found.allowed.length === 0) return notFound(req, res)
      return methodNotAllowed(req, res, found.allowed)
    }
    const { route, id } = found
    // Links in REST answers stay relative to the root (no req), as before per-user access.
    const length = Number(req.headers['content-length'] ?? NaN)
    const context = contextFor(principalOf(req), undefined, Number.isSafeInteger(length) ? length : undefined)
    try {
      const variables = route.variables(id, url.searchParams)
      if (route.list)
        return await sendList(req, res, route.list, (page) => route.run(context, { ...variables, ...page }))
      const result = route.upload
        ? await receiveUpload(
            req,
            res,
            limits,
            variables,
            async (v) => route.run(context, v),
            async (upload, speed) => setSpeed(context, { id: upload, speed }),
          )
        : await route.run(context, variables)
      const failure = failureOf(result)
      // The resolver heard that the client went away mid-body: there is no one to answer.
      if (failure?.error instanceof RequestEnded) return void res.destroy()
      if (failure) return sendError(req, res, failure.status, failure.detail, failure.error)
      if (route.file) {
        const file = route.file(result.data ?? {})
        if ('missing' in file) return sendError(req, res, 404, file.missing)
        try {
          return await sendFile(req, res, {
            ...file,
            open: () => context.service.openStored(file.id),
            elsewhere: () => context.service.downloadLocation(file.id),
          })
        } catch (error) {
          if (!(error instanceof StoredFileMissing)) throw error
          // The record says completed, but its bytes are gone for good (removed by hand, a lost disk): said
          // as such, not as a server hiccup to retry; the operator hears of it in the log.
          log('error', 'download.file_missing', { requestId: requestIdOf(req), id: file.id, error })
          return sendError(
            req,
            res,
            410,
            `Upload ${file.id} is recorded as completed, but its stored file is missing from the server's storage: its bytes are lost; upload the file again`,
          )
        }
      }
      sendJson(res, 200, route.reply(result.data ?? {}))
    } catch (error) {
      // The client went away, or was answered already: there is no one to tell, and nothing went wrong here.
      if (error instanceof RequestEnded || res.writableEnded || res.destroyed) return void res.destroy()
      if (error instanceof ServiceError)
        return sendError(req, res, error.httpStatus, error.in(restStatus), error)
      // The client (and any proxy) hears what happened, even with its body still arriving (the connection
      // then closes in stages, see app/linger.ts); half an answer is cut.
      sendInternalError(req, res, { event: 'rest.error', error })
    }
  }
}
