import { createHash } from 'node:crypto'
import type { UploadRecord } from '../model/record.js'
import type { HookEvent, PendingEvent } from '../seams/outbox/index.js'
import { wants, type HooksConfig, type Notification } from './config.js'
import { payloadBody, type HookPayload, type HookUpload } from './payload.js'

/**
 * Builds the notifications a state change causes, for the record store to write with that change
 * (core/writes.ts): the payload is fixed here, once, so every retry sends the same event (a `completed`
 * event's link alone is added at each attempt: see attemptBody).
 */
export interface Notifier {
  /** The events of `types` about `record` (as it is after the change; as it was, for `deleted`) that HOOKS_EVENTS lets through. */
  events(types: readonly Notification[], record: UploadRecord, at: number, requestId?: string): HookEvent[]
  /** Events were just written: look for them now rather than at the next poll. */
  written(): void
}

/**
 * One eventId per upload and type, derived rather than drawn: an upload is received, completed, failed,
 * canceled or deleted at most once, so a change written twice (its store's answer lost, then retried) or
 * re-derived by recovery carries the same id, is queued once, and a receiver that dedupes by id hears it once.
 */
export function notificationId(uploadId: string, type: Notification): string {
  const hex = createHash('sha256').update(`upload-hook:${uploadId}:${type}`).digest('hex')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`
}

/** The upload as every hook about an existing one sees it: with the metadata kept on it, and its owner. */
export const hookUpload = (record: UploadRecord): HookUpload => ({
  id: record.id,
  filename: record.filename,
  size: record.totalSize,
  speed: record.targetSpeed,
  status: record.status,
  ...(record.sha256 ? { sha256: record.sha256 } : {}),
  metadata: { ...record.metadata },
  ...(record.owner ? { owner: record.owner } : {}),
})

/** Where a receiver reads a completed upload's file: a link signed now, for as long as links last. */
export type DownloadLink = (upload: { id: string; owner?: string | null }) => string

/**
 * The bytes of one delivery attempt: the event's body as written, with a `completed` event's `downloadUrl`
 * signed at this attempt. A link signed when the event was written would have expired by a retry hours
 * later, or by the time an operator resends a dead letter.
 */
export function attemptBody(event: PendingEvent, downloadUrl: DownloadLink): string {
  if (event.type !== 'completed') return event.body
  const payload = JSON.parse(event.body) as HookPayload
  return payloadBody({ ...payload, downloadUrl: downloadUrl(payload.upload) })
}

export function notifier(config: HooksConfig, written: () => void): Notifier {
  return {
    events(types, record, at, requestId) {
      return types
        .filter((type) => wants(config, type))
        .map((type) => {
          const payload: HookPayload = {
            eventId: notificationId(record.id, type),
            type,
            upload: hookUpload(record),
            ...(requestId === undefined ? {} : { requestId }),
            ...(type === 'failed' && record.error !== null ? { reason: record.error } : {}),
          }
          return {
            eventId: payload.eventId,
            uploadId: record.id,
            type,
            body: payloadBody(payload),
            createdAt: at,
            ...(requestId === undefined ? {} : { requestId }),
          }
        })
    },
    written,
  }
}
