import { badInput, stateError, type ServiceError } from '../errors.js'
import {
  isFinal,
  isReceiving,
  isStored,
  UPLOAD_STATUSES,
  type UploadRecord,
  type UploadSource,
  type UploadStatus,
} from '../model/record.js'
import type { Notification } from '../hooks/config.js'
import { storedNameFor } from './ingest/filename.js'

/**
 * The upload state machine, pure (no I/O): which command may move an upload from which status, to which one,
 * and what a refusal says. Every other file asks here; none spells a status rule of its own.
 *
 *   RECEIVING ─arrive→ IN_PROGRESS ⇄ PAUSED
 *   RECEIVING | IN_PROGRESS | PAUSED ─cancel→ CANCELED, ─fail→ FAILED; IN_PROGRESS | PAUSED ─complete→ COMPLETED
 *   COMPLETED | CANCELED | FAILED ─delete→ (removed)
 */

/** Where a command leaves the upload: a status, as it was (`same`), or off the record (`removed`). */
export type Target = UploadStatus | 'same' | 'removed'

interface Transition {
  readonly from: readonly UploadStatus[]
  readonly to: Target
  /** "Upload {id} cannot be {action}: {hint}" when refused. */
  readonly action: string
  /** `{status}` in it is the record's status, named by each API in its own words. */
  readonly hint?: string
  /** A refusal with its own hint for some statuses (asked before `from`). */
  readonly refusedWith?: Partial<Record<UploadStatus, string>>
  /** Only an upload that arrives this way may (refused as from a status it is not in otherwise). */
  readonly source?: UploadSource
}

/** While an upload arrives, its sender decides when bytes move: stop sending to pause, send to go on. */
const SENDER_CONTROLS =
  'it is still being received, and its sender controls that: it pauses by not sending, and goes on by sending again'

const UNFINISHED: readonly UploadStatus[] = ['RECEIVING', 'IN_PROGRESS', 'PAUSED']

/** The one transition table. Clients' commands first, then the service's own moves. */
export const TRANSITIONS = {
  pause: {
    from: ['IN_PROGRESS'],
    to: 'PAUSED',
    action: 'paused',
    refusedWith: { RECEIVING: SENDER_CONTROLS },
  },
  resume: {
    from: ['PAUSED'],
    to: 'IN_PROGRESS',
    action: 'resumed',
    refusedWith: { RECEIVING: SENDER_CONTROLS },
  },
  setSpeed: { from: UNFINISHED, to: 'same', action: 'given a new speed' },
  cancel: { from: UNFINISHED, to: 'CANCELED', action: 'canceled' },
  delete: {
    from: ['COMPLETED', 'CANCELED', 'FAILED'],
    to: 'removed',
    action: 'deleted',
    hint: 'cancel it first',
  },
  /** More bytes of a tus upload (a request of it begins, or ends). */
  receive: { from: ['RECEIVING'], to: 'same', action: 'sent more bytes', source: 'tus' },
  /** Every byte is in: its transfer into storage starts. */
  arrive: {
    from: ['RECEIVING'],
    to: 'IN_PROGRESS',
    action: 'stored',
    hint: 'it was {status} while it arrived',
  },
  /** A multipart body that never arrived whole is forgotten (it leaves the record). */
  forget: { from: ['RECEIVING'], to: 'removed', action: 'forgotten' },
  /** Its transfer wrote every byte and they verify (or recovery finds the stored file whole). */
  complete: { from: ['IN_PROGRESS', 'PAUSED'], to: 'COMPLETED', action: 'completed' },
  fail: { from: UNFINISHED, to: 'FAILED', action: 'failed' },
  /** A tus upload whose sender sent nothing for RESUMABLE_EXPIRY. */
  expire: { from: ['RECEIVING'], to: 'FAILED', action: 'expired' },
} as const satisfies Record<string, Transition>

export type MachineCommand = keyof typeof TRANSITIONS

/** Why `command` cannot be done to `record` now, or undefined when it can. */
export function refusal(command: MachineCommand, record: Subject): ServiceError | undefined {
  const t: Transition = TRANSITIONS[command]
  const special = t.refusedWith?.[record.status]
  if (special !== undefined) return conflict(record, t.action, special)
  const wrongSource = t.source !== undefined && record.source !== undefined && record.source !== t.source
  if (wrongSource || !t.from.includes(record.status)) return conflict(record, t.action, t.hint)
  return undefined
}

/** What the machine asks of an upload: its status, and (where a command cares) how it arrives. */
type Subject = Pick<UploadRecord, 'id' | 'status'> & { source?: UploadSource }

/** Throws the refusal, if any (INVALID_STATE with the record's status). */
export function check(command: MachineCommand, record: Subject): void {
  const refused = refusal(command, record)
  if (refused) throw refused
}

export const may = (command: MachineCommand, status: UploadStatus): boolean =>
  refusal(command, { id: '', status }) === undefined

/** Where `command` takes an upload in `status` (undefined if it may not). */
export function targetOf(
  command: MachineCommand,
  status: UploadStatus,
): UploadStatus | 'removed' | undefined {
  if (!may(command, status)) return undefined
  const to: Target = TRANSITIONS[command].to
  return to === 'same' ? status : to
}

function conflict(record: Subject, action: string, hint = 'it is {status}'): ServiceError {
  return stateError(`Upload ${record.id} cannot be ${action}: ${hint}`, record.status)
}

// ---- questions about a status --------------------------------------------------------------------------

export { isFinal, isReceiving, isStored }
/** Its transfer into storage runs (somewhere). */
export const isRunning = (status: UploadStatus) => status === 'IN_PROGRESS'
/** Its bytes are being received or stored: an owner's live figures matter. */
export const isLive = (status: UploadStatus) => isReceiving(status) || isRunning(status)
/** What start-up recovery and adoption look at. */
export const RUNNING: UploadStatus[] = ['IN_PROGRESS']
export const STILL_RECEIVING: UploadStatus[] = ['RECEIVING']
export const ENDED: readonly UploadStatus[] = TRANSITIONS.delete.from
/** Ended by an error (or an expiry): logged as a warning. */
export const isFailed = (status: UploadStatus) => status === 'FAILED'
/** Ended without its file: its bytes are gone and it cannot go on. */
export const isGone = (status: UploadStatus) => isFinal(status) && !isStored(status)
/** Ended with its file in storage: what a list of files holds. */
export const STORED: UploadStatus[] = UPLOAD_STATUSES.filter(isStored)

/**
 * The notifications (issue 23) that a change from `before` (undefined: no record yet) to `after` causes, in
 * the order they happened: the body arriving whole (leaving RECEIVING for anything but an end without its
 * file), reaching an end, or an ended upload's deletion. A multipart body that never arrived is forgotten
 * (RECEIVING → removed) as if never sent: no event. Writing the same status again causes nothing.
 */
export function notificationsOf(
  before: UploadStatus | undefined,
  after: UploadStatus | 'removed',
): Notification[] {
  if (after === 'removed') return before !== undefined && isFinal(before) ? ['deleted'] : []
  if (before === after) return []
  const events: Notification[] = []
  if ((before === undefined || isReceiving(before)) && !isReceiving(after) && !isGone(after))
    events.push('received')
  if (isStored(after)) events.push('completed')
  else if (isFailed(after)) events.push('failed')
  else if (isGone(after)) events.push('canceled')
  return events
}

// ---- the next record -----------------------------------------------------------------------------------

export const now = () => new Date().toISOString()

/** An upload on record from its first moment: RECEIVING, nothing of it arrived or stored yet. */
export function newRecord(input: {
  id: string
  filename: string
  source: UploadSource
  /** Its length when known up front (tus); 0 until it has arrived otherwise. */
  size: number
  targetSpeed: number
  expiresAt: string | null
  /** What the pre-create hook asked to keep; none without one. */
  metadata?: Readonly<Record<string, string>>
  /** A token's `sub`; null (the default): the operator's. */
  owner?: string | null
  /** What a stored-bytes quota counts a multipart body as while it arrives (see UploadRecord). */
  claimedSize?: number
}): UploadRecord {
  const at = now()
  const { id, filename, source, size, targetSpeed, expiresAt } = input
  return {
    id,
    filename,
    storedName: storedNameFor(id, filename),
    status: 'RECEIVING',
    receivedSize: 0,
    source,
    expiresAt,
    receivedAt: null,
    uploadedSize: 0,
    totalSize: size,
    targetSpeed,
    sha256: '',
    error: null,
    createdAt: at,
    updatedAt: at,
    completedAt: null,
    metadata: input.metadata ?? {},
    owner: input.owner ?? null,
    ...(input.claimedSize === undefined ? {} : { claimedSize: input.claimedSize }),
  }
}

/** Moves `record` by `command` with `changes`: the table decides the status (the caller has checked it may). */
function next(
  command: MachineCommand,
  record: UploadRecord,
  changes: Partial<UploadRecord> = {},
): UploadRecord {
  const to = targetOf(command, record.status)
  if (to === undefined || to === 'removed')
    throw new Error(`upload ${record.id}: ${command} from ${record.status}`)
  return { ...record, ...changes, status: to, updatedAt: now() }
}

/** All of its bytes are in staging, with their sha256: on its way into storage. */
export const arrived = (record: UploadRecord, size: number, sha256: string): UploadRecord =>
  next('arrive', record, { receivedSize: size, totalSize: size, sha256, expiresAt: null, receivedAt: now() })

/** More of a tus upload is in; it expires at `expiresAt` unless more comes. */
export const receivedMore = (record: UploadRecord, receivedSize: number, expiresAt: string): UploadRecord =>
  next('receive', record, { receivedSize, expiresAt })

export const paused = (record: UploadRecord, uploadedSize: number): UploadRecord =>
  next('pause', record, { uploadedSize })

export const resumed = (record: UploadRecord, targetSpeed: number, uploadedSize: number): UploadRecord =>
  next('resume', record, { targetSpeed, uploadedSize })

export const withSpeed = (record: UploadRecord, targetSpeed: number, uploadedSize: number): UploadRecord =>
  next('setSpeed', record, { targetSpeed, uploadedSize })

/** The count reached is kept (scripts that follow progress read a drop as corruption); `received` while arriving. */
export const canceled = (
  record: UploadRecord,
  counts: Partial<Pick<UploadRecord, 'uploadedSize' | 'receivedSize'>>,
): UploadRecord => next('cancel', record, counts)

export function completed(record: UploadRecord): UploadRecord {
  const at = now()
  return { ...next('complete', record, { uploadedSize: record.totalSize, completedAt: at }), updatedAt: at }
}

export const failed = (record: UploadRecord, reason: string): UploadRecord =>
  next('fail', record, { error: reason })

export const expired = (record: UploadRecord, reason: string): UploadRecord =>
  next('expire', record, { error: reason })

/** Where a running transfer got to (same status). */
export const progressed = (record: UploadRecord, uploadedSize: number): UploadRecord => ({
  ...record,
  uploadedSize,
  updatedAt: now(),
})

/** How a multipart body that never arrived is told to its watchers as it leaves the record. */
export const notReceived = (record: UploadRecord, reason: string, receivedSize: number): UploadRecord => {
  if (!may('forget', record.status)) throw new Error(`upload ${record.id}: forget from ${record.status}`)
  return { ...record, status: 'FAILED', error: reason, receivedSize, updatedAt: now() }
}

// ---- rules -------------------------------------------------------------------------------------------

/** A speed in bytes per second: a whole number, 0 or more (0: unlimited). */
export function checkSpeed(value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw badInput(
      `speed must be a whole number of bytes per second, 0 or more (0 = unlimited); got ${value}`,
    )
  }
  return value
}

/**
 * The one room rule: a file is kept twice until its transfer completes (the staging copy it arrived in, then
 * the transfer's copy in `.transfers/{id}`), so an upload of `size` bytes needs `2 × size`, less what of
 * it is on disk already. (The ledger that keeps the promises is RoomLedger, in storage's room.ts.)
 */
export const roomFor = (size: number, onDisk = 0): number => Math.max(0, 2 * size - onDisk)
