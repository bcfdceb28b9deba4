import type { IncomingMessage, ServerResponse } from 'node:http'
import { getOperationAST, type GraphQLSchema } from 'graphql'
import { requestContext, type ContextFor } from './context.js'
import { compile, type Run } from './executor.js'
import { MAX_OPERATION_BYTES } from './use-operation-size-limit.js'
import type { GraphQLApp } from './yoga.js'

/** Distinct operations (query text and operation name) kept compiled; the oldest is dropped past it. */
const CACHED_OPERATIONS = 1000
/**
 * Longer query texts go to yoga: the cache keeps each text as its key (refused ones too, so that they are not
 * parsed again), and 1000 texts of up to 1 MiB each would be a gigabyte a stranger could make us hold.
 */
const CACHED_TEXT = 16 * 1024

/** Distinct Accept headers whose answer type is kept; past it the kept ones are forgotten. */
const CACHED_ACCEPTS = 64

/**
 * Why a request takes this path or not, once per distinct operation: a compiled query, or `undefined` for
 * an operation yoga answers every time (a mutation, a subscription, one that does not parse or validate).
 */
type Prepared = Run | undefined

interface Params {
  query: string
  variables: Record<string, unknown> | undefined
  operationName: string | undefined
}

/**
 * The media types a request accepts, most preferred last: yoga's own reading of Accept (graphql-yoga's
 * result-processor/accept.ts), so that this path answers in the type yoga would have chosen.
 */
function acceptedTypes(accept: string | undefined): string[] {
  const types: string[] = []
  for (const item of (accept || '*/*').replace(/\s/g, '').toLowerCase().split(',')) {
    const [type, ...params] = item.split(';')
    if (type === undefined) continue
    const charset = params.find((param) => param.includes('charset=')) ?? 'charset=utf-8'
    if (charset === 'charset=utf-8') types.push(type)
  }
  return types.reverse()
}

const matches = (offered: string, asked: string) => {
  const [pre, suf] = offered.split('/')
  const [askedPre, askedSuf] = asked.split('/')
  return (askedPre === '*' || askedPre === pre) && (askedSuf === '*' || askedSuf === suf)
}

/**
 * What yoga would answer a plain result in, or undefined when it would choose a stream (text/event-stream,
 * multipart/mixed) or refuse: its result processors are tried in its order and the last match wins.
 */
function regularType(accept: string | undefined): string | undefined {
  let chosen: string | undefined
  for (const offered of [
    ['text/event-stream'],
    ['multipart/mixed'],
    ['application/graphql-response+json', 'application/json'],
  ])
    for (const asked of acceptedTypes(accept))
      for (const type of offered) if (matches(type, asked)) chosen = type
  return chosen === 'application/json' || chosen === 'application/graphql-response+json' ? chosen : undefined
}

/**
 * regularType, worked out once per distinct Accept: a client sends the same one with every request (most
 * send none), and reading it anew was about 3 % of a status poll's CPU (bench/round3-profile.md).
 */
function answerTypeCache(): (accept: string | undefined) => string | undefined {
  const kept = new Map<string | undefined, string | undefined>()
  return (accept) => {
    if (kept.has(accept)) return kept.get(accept)
    if (kept.size >= CACHED_ACCEPTS) kept.clear()
    const type = regularType(accept)
    kept.set(accept, type)
    return type
  }
}

function paramsOf(body: string): Params | undefined {
  let parsed: unknown
  try {
    parsed = JSON.parse(body)
  } catch {
    return undefined
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined
  const { query, variables, operationName, ...rest } = parsed as Record<string, unknown>
  if (typeof query !== 'string' || Object.keys(rest).length > 0) return undefined
  if (variables != null && (typeof variables !== 'object' || Array.isArray(variables))) return undefined
  if (operationName != null && typeof operationName !== 'string') return undefined
  return {
    query,
    variables: (variables ?? undefined) as Record<string, unknown> | undefined,
    operationName: operationName ?? undefined,
  }
}

/** The whole body of a request whose length is declared, or undefined if it ended short or failed. */
function readBody(req: IncomingMessage, length: number): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (chunk: Buffer) => {
      chunks.push(chunk)
      size += chunk.length
    })
    req.once('end', () => resolve(size === length ? Buffer.concat(chunks, size) : undefined))
    req.once('error', () => resolve(undefined))
  })
}

/**
 * /graphql over HTTP. A single JSON query whose result has no errors (most of what dashboards and scripts
 * send: status polls) is run by the executor REST uses (executor.ts) and answered with one `res.end`,
 * exactly as yoga would answer it; yoga's per-request work (its fetch-API Request and Response, the envelop's
 * hooks, result processing) was most of such a request's cost. The operation is parsed and validated by
 * yoga's own envelop (the same plugins and limits) the first time its text is seen, and kept compiled.
 *
 * Everything else goes to yoga as it came: GET, multipart, subscriptions, mutations, batches, extensions,
 * an Accept that asks for a stream, and any result with errors (a query reads and changes nothing, so yoga
 * running it again answers it with its own masking, codes, status and logging).
 */
export function createGraphQLHandler(yoga: GraphQLApp, schema: GraphQLSchema, contextFor: ContextFor) {
  const answerType = answerTypeCache()
  /** Each operation once prepared, or its preparation while it runs (see Prepared). */
  const prepared = new Map<string, { run: Prepared } | Promise<Prepared>>()

  /** Its Prepared, at once when it is known (a request that need not wait is not made to). */
  const prepare = (
    params: Params,
    req: IncomingMessage,
    res: ServerResponse,
  ): Prepared | Promise<Prepared> => {
    const key = `${params.operationName ?? ''}\n${params.query}`
    const known = prepared.get(key)
    if (known) return known instanceof Promise ? known : known.run
    const found = (async (): Promise<Prepared> => {
      const enveloped = yoga.getEnveloped({ req, res })
      const document = enveloped.parse(params.query)
      if (enveloped.validate(enveloped.schema, document).length > 0) return undefined
      if (getOperationAST(document, params.operationName)?.operation !== 'query') return undefined
      return compile(schema, document, params.operationName)
    })().catch(() => undefined)
    void found.then((run) => {
      // Unless it was dropped from the cache meanwhile.
      if (prepared.get(key) === found) prepared.set(key, { run })
    })
    const oldest = prepared.size >= CACHED_OPERATIONS ? prepared.keys().next().value : undefined
    if (oldest !== undefined) prepared.delete(oldest)
    prepared.set(key, found)
    return found
  }

  const toYoga = (req: IncomingMessage, res: ServerResponse, body?: Buffer) => {
    // A body already read is handed over as such (@whatwg-node reads `req.body` when it is set).
    if (body) (req as IncomingMessage & { body?: Buffer }).body = body
    return yoga(req, res)
  }

  async function direct(req: IncomingMessage, res: ServerResponse, length: number, type: string) {
    const body = await readBody(req, length)
    if (!body) return void res.destroy()
    const params = paramsOf(body.toString('utf8'))
    let run = params && params.query.length <= CACHED_TEXT ? prepare(params, req, res) : undefined
    if (run instanceof Promise) run = await run
    if (!params || !run) return toYoga(req, res, body)
    // The caller's own context, as yoga would build it: their OwnedService, one per request.
    const context = requestContext(contextFor, { req })
    const result = await Promise.resolve(run({ ...context, req, res }, params.variables)).catch(
      () => undefined,
    )
    if (!result || result.errors?.length) return toYoga(req, res, body)
    const json = JSON.stringify(result)
    res.writeHead(200, {
      'content-type': `${type}; charset=utf-8`,
      'content-length': Buffer.byteLength(json),
    })
    res.end(json)
  }

  return function handleGraphQL(req: IncomingMessage, res: ServerResponse): unknown {
    const declared = req.headers['content-length']
    const length = declared === undefined ? NaN : Number(declared)
    const type = req.method === 'POST' ? answerType(req.headers.accept) : undefined
    if (
      type === undefined ||
      !(length > 0 && length <= MAX_OPERATION_BYTES) ||
      !/^application\/json\s*(;|$)/i.test(req.headers['content-type'] ?? '') ||
      req.url?.includes('?') ||
      req.headers['content-encoding'] !== undefined
    )
      return toYoga(req, res)
    // Nothing in it throws on a request's account; should it anyway, the connection is cut, never half-answered.
    return direct(req, res, length, type).catch((error: unknown) => res.destroy(error as Error))
  }
}
