import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { MemoryLocker, Server } from '@tus/server'
import { NodeRequest, sendNodeResponse } from 'srvx/node'
import { ERRORS } from '@tus/utils'
import type { Locker } from '@tus/utils'
import { principalOf } from '../auth/principal.js'
import { requireScope, type Need } from '../auth/rules.js'
import { OwnedService } from '../core/owned.js'
import { publicMessage, ServiceError, unavailable } from '../errors.js'
import { isReceiving } from '../core/machine.js'
import { log } from '../log.js'
import { requestIdOf } from '../app/request-id.js'
import type { UploadService } from '../core/service.js'
import type { Storage } from '../seams/storage/index.js'
import { resumableMetadata } from './metadata.js'
import { TUS_PATH } from './path.js'
import { KEPT, TusStore } from './store.js'
import { RequestBodies } from './bodies.js'

export interface TusOptions {
  service: UploadService
  storage: Storage
  /** Tus-Max-Size: MAX_UPLOAD_SIZE. */
  maxSize: number
  /** RESUMABLE_EXPIRY: an upload that receives nothing for this long is removed. */
  expiryMs: number
  /** Whether a browser page on `origin` may call (CORS_ORIGINS); same-origin pages need no CORS. */
  corsAllows: (origin: string) => boolean
  /** Who may write an upload now: in this process (the default), or over Redis for several instances. */
  locker?: Locker
}

/**
 * Resumable uploads, tus 1.0 at /files/: @tus/server does the protocol (core, creation,
 * creation-with-upload, termination, expiration; OPTIONS, 412 without Tus-Resumable, 409 on a wrong
 * offset, 413 over Tus-Max-Size), TusStore puts the bytes in staging and tells the upload service, which
 * starts the throttled transfer once the last byte is in. An upload's id, the last segment of its
 * Location, is its id everywhere else.
 */
export function createTusHandler(
  options: TusOptions,
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const { service, expiryMs } = options
  const callerOf = (req: unknown) => new OwnedService(service, principalOf(nodeResponse(req)?.req))
  // Who is creating each upload while its POST is under way: the store records it through that caller, so
  // its quotas are asked (exactly: tus declares the size) before it is on record and before any byte.
  const creators = new Map<string, OwnedService>()
  // Its creator is gone only if its POST ended before the store got to it (its sender went): then nothing is
  // created, rather than an upload on the operator's account, outside its sender's quotas.
  const store = Object.assign(Object.create(service) as UploadService, {
    createResumable: (input: Parameters<UploadService['createResumable']>[0]) => {
      const creator = creators.get(input.id)
      if (creator === undefined)
        throw unavailable('The request that created this upload ended first; nothing was created')
      return creator.createResumable(input)
    },
  })
  const bodies = new RequestBodies()
  // The upload each POST under way creates: if the POST then fails, its sender never hears where it is.
  const creating = new WeakMap<object, string>()
  const abandon = (id: string, why: string) =>
    service
      .abandonResumable(id, `The upload was not created: ${why}, and its sender was never told where it is`)
      .catch((error: unknown) => log('error', 'tus.abandon_failed', { id, error }))
  const tus = new Server({
    path: TUS_PATH,
    datastore: new TusStore(store, options.storage, bodies),
    maxSize: options.maxSize,
    namingFunction: () => randomUUID(),
    locker: bodies.watching(options.locker ?? new MemoryLocker()),
    allowedOrigins: options.corsAllows,
    // tus's own list lacks Upload-Expires, which browsers must be able to read too.
    exposedHeaders: ['Upload-Expires', 'X-Request-Id'],
    // Whose upload this is, and whether they may reach it: another user's answers exactly as a missing one
    // (the store's own FILE_NOT_FOUND), so ids never leak; a token without the scope is refused first.
    onIncomingRequest: async (req, id) => {
      bodies.expect(req, id)
      const caller = callerOf(req)
      if (req.method === 'POST') {
        requireScope(caller.principal, 'write')
        creators.set(id, caller)
        creating.set(req, id)
        return void nodeResponse(req)?.once('close', () => creators.delete(id))
      }
      await caller.reach(id, req.method === 'HEAD' ? headNeed(caller) : 'write').catch((error: unknown) => {
        throw error instanceof ServiceError && error.code === 'NOT_FOUND' ? ERRORS.FILE_NOT_FOUND : error
      })
    },
    // Checked before anything is stored: a bad speed is a 400 with the reason; then the pre-create hook
    // (HOOKS_URL) decides, and what it changed or asked to keep goes on to TusStore.create.
    onUploadCreate: async (req, upload) => {
      const metadata = resumableMetadata(upload.metadata)
      const caller = callerOf(req)
      const node = nodeResponse(req)?.req
      const authorization = req.headers.get('authorization') ?? undefined
      const approved = await caller.approveResumable({
        id: upload.id,
        filename: metadata.filename,
        size: upload.size ?? null,
        speed: metadata.speed == null ? undefined : Number(metadata.speed),
        metadata: Object.fromEntries(
          Object.entries(upload.metadata ?? {}).map(([key, value]) => [key, value ?? '']),
        ),
        owner: caller.principal.sub,
        caller: {
          transport: 'tus',
          ...(node ? { requestId: requestIdOf(node) } : {}),
          ...(authorization === undefined ? {} : { authorization }),
        },
      })
      return {
        metadata: {
          ...metadata,
          filename: approved.filename,
          speed: String(approved.speed),
          [KEPT]: JSON.stringify(approved.metadata),
          // The owner is the caller's own (the sender's Upload-Metadata cannot name one).
          owner: caller.principal.sub,
        },
      }
    },
    // A finished upload expires no more (see below).
    onUploadFinish: async (req) => {
      nodeResponse(req)?.removeHeader('upload-expires')
      return {}
    },
    onResponseError: async (req, error) => {
      const status =
        error instanceof ServiceError ? error.httpStatus : 'status_code' in error ? error.status_code : 500
      // A creation refused after its upload was recorded (a body longer than Upload-Length, a full disk): its
      // sender gets no Location, so the upload goes with the refusal. (One cut short by its sender is kept, as
      // any cut-short request's bytes are: its owner finds it in their list, and HEAD says where it got to.)
      const created = creating.get(req)
      if (created !== undefined) await abandon(created, `its creation was answered ${status}`)
      if (status >= 500) {
        const node = nodeResponse(req)
        log('error', 'tus.error', {
          requestId: node ? requestIdOf(node.req) : undefined,
          method: req.method,
          error,
        })
      }
      if (error instanceof ServiceError) return { status_code: status, body: `${error.message}\n` }
      // tus's own errors say what the protocol wants; anything else would go out with its message (a path).
      if (!('status_code' in error)) return { status_code: 500, body: `${publicMessage(error)}\n` }
      return undefined
    },
  })

  return async (req, res) => {
    // Upload-Expires: RESUMABLE_EXPIRY after the last byte. A request that brings bytes ends about now;
    // a HEAD says what the record says.
    if (req.headers['tus-resumable'] !== undefined) {
      if (req.method === 'POST' || req.method === 'PATCH')
        res.setHeader('upload-expires', new Date(Date.now() + expiryMs).toUTCString())
      if (req.method === 'HEAD') {
        const caller = new OwnedService(service, principalOf(req))
        const record = await caller.reach(idIn(req.url), headNeed(caller)).catch(() => undefined)
        if (record && isReceiving(record.status) && record.expiresAt)
          res.setHeader('upload-expires', new Date(record.expiresAt).toUTCString())
      }
    }
    // What @tus/server's own handle does, but a POST's or PATCH's body reaches TusStore.write as the Node
    // stream it is (see bodies.ts).
    const request = new NodeRequest({ req, res })
    if (req.method === 'POST' || req.method === 'PATCH') bodies.handOver(request, req)
    await sendNodeResponse(res, await tus.handleWeb(request))
  }
}

/**
 * What a HEAD needs of its upload. It is part of uploading (a tus client asks it before it resumes, and drops the
 * upload on a 4xx), so a caller who may write their upload may ask it; a read-only one may too.
 */
function headNeed(caller: OwnedService): Need {
  const { scopes } = caller.principal
  return scopes.write || scopes.admin ? 'write' : 'read'
}

/** The upload id in /files/{id}, or '' (which no upload has). */
function idIn(url: string | undefined): string {
  try {
    return decodeURIComponent(/^\/files\/([^/?]+)/.exec(url ?? '')?.[1] ?? '')
  } catch {
    return ''
  }
}

/** The Node response behind @tus/server's web request (srvx keeps it there). */
function nodeResponse(req: unknown): ServerResponse | undefined {
  return (req as { runtime?: { node?: { res?: ServerResponse } } }).runtime?.node?.res
}
