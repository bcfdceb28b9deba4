import { asServiceError, callBlocking } from '../hooks/call.js'
import { wants } from '../hooks/config.js'
import { hookFilePath } from '../hooks/file-link.js'
import { hookUpload } from '../hooks/notify.js'
import type { UploadRecord } from '../model/record.js'
import type { Caller } from './ingest/incoming.js'
import type { Context } from './context.js'
import { checkSpeed } from './machine.js'

/**
 * The blocking hooks (issue 23), asked by the core where it decides: pre-create before an upload is
 * recorded (and before any byte of it is read or stored), pre-finish once its transfer has written them all,
 * before they are put in place and it becomes COMPLETED. Without HOOKS_URL (or with the event left out of HOOKS_EVENTS) nobody is asked.
 */

/** What a new upload is, as its sender declared it: what pre-create is asked about. */
export interface Proposal {
  id: string
  filename: string
  /** Declared length; null when not known before the bytes come (a multipart body). */
  size: number | null
  speed: number
  metadata: Record<string, string>
  caller?: Caller
  /** Whose it will be: the caller's token's `sub`; null or absent for the operator's. */
  owner?: string | null
}

/** What the upload will be: the proposal, with whatever the hook changed, and the metadata it asked to keep. */
export interface Approved {
  filename: string
  speed: number
  /** Only what the hook answered: a sender's own metadata is shown to the hook, never kept unasked. */
  metadata: Record<string, string>
}

/** Asks pre-create; throws the refusal (REJECTED with the hook's status, or UNAVAILABLE) as a ServiceError. */
export async function askPreCreate(ctx: Context, proposal: Proposal): Promise<Approved> {
  const asked = { filename: proposal.filename, speed: proposal.speed, metadata: {} }
  if (!wants(ctx.hooks?.config, 'pre-create')) return asked
  const config = ctx.hooks.config
  const { caller } = proposal
  const verdict = await callBlocking(config, {
    type: 'pre-create',
    upload: {
      id: proposal.id,
      filename: proposal.filename,
      size: proposal.size,
      speed: proposal.speed,
      status: 'RECEIVING',
      metadata: proposal.metadata,
      ...(proposal.owner ? { owner: proposal.owner } : {}),
    },
    ...(caller?.requestId === undefined ? {} : { requestId: caller.requestId }),
    ...(caller === undefined ? {} : { transport: caller.transport }),
    ...(caller?.authorization === undefined || ctx.hooks.forwards?.(caller.authorization) === false
      ? {}
      : { authorization: caller.authorization }),
  })
  if (!verdict.accepted) throw asServiceError(verdict.rejection)
  const { changes } = verdict
  return {
    filename: changes.filename ?? asked.filename,
    speed: changes.speed === undefined ? asked.speed : checkSpeed(changes.speed),
    metadata: changes.metadata ?? {},
  }
}

/**
 * Asks pre-finish about an upload whose transfer has written all its bytes: the reason it is refused (it
 * then ends FAILED with it), or undefined to complete it. The hook reads the file through a link signed
 * with HOOKS_SECRET (hooks/file-link.ts). A hook that cannot be asked refuses too, unless
 * HOOKS_ON_ERROR=accept: nothing completes that the hook did not pass.
 */
export async function askPreFinish(ctx: Context, record: UploadRecord): Promise<string | undefined> {
  if (!wants(ctx.hooks?.config, 'pre-finish')) return undefined
  const { config, publicUrl } = ctx.hooks
  const verdict = await callBlocking(config, {
    type: 'pre-finish',
    upload: hookUpload(record),
    downloadUrl: publicUrl(hookFilePath(config.secret, record.id)),
  })
  return verdict.accepted ? undefined : verdict.rejection.message
}
