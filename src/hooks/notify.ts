import { createHash } from 'node:crypto'
import type { UploadRecord } from '../model/record.js'
import type { HookEvent } from '../seams/outbox/index.js'
import { wants, type HooksConfig, type Notification } from './config.js'
import { payloadBody, type HookPayload, type HookUpload } from './payload.js'

/**
 * Builds the notifications a state change causes, for the record store to write with that change
 * (core/writes.ts): the payload is fixed here, once, so every retry sends the same bytes.
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

export const hookUpload = (record: UploadRecord): HookUpload => ({
  id: record.id,
  filename: record.filename,
  size: record.totalSize,
  speed: record.targetSpeed,
  status: record.status,
  ...(record.sha256 ? { sha256: record.sha256 } : {}),
  metadata: {},
})

export function notifier(
  config: HooksConfig,
  /** Where the hook can fetch a completed upload's file. */
  downloadUrl: (id: string) => string,
  written: () => void,
): Notifier {
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
            ...(type === 'completed' ? { downloadUrl: downloadUrl(record.id) } : {}),
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
