import { randomUUID } from 'node:crypto'
import type { HookEventType } from './config.js'

/** The upload as a hook sees it: the protocol's shape (README, "Hooks"), not the record's. */
export interface HookUpload {
  id: string
  filename: string
  /** Declared size; null when a pre-create comes before the client says (a multipart body of unknown length). */
  size: number | null
  speed: number
  status: string
  sha256?: string
  /** The tus metadata, and whatever a pre-create answer asked to keep. */
  metadata: Record<string, string>
  owner?: string
}

/** Every hook's JSON body. Extra members a receiver does not know are to be ignored. */
export interface HookPayload {
  /** Stable across retries: a receiver drops one it has seen. */
  eventId: string
  type: HookEventType
  upload: HookUpload
  requestId?: string
  /** Why a `failed` (or a pre-finish-refused) upload failed. */
  reason?: string
  /** pre-create: `rest`, `graphql` or `tus`. */
  transport?: string
  /** pre-finish and completed: where the file can be read (signed for the hook). */
  downloadUrl?: string
}

export const newEventId = (): string => randomUUID()

/**
 * The exact bytes sent, and signed. A notification keeps these bytes from the state change on, so every
 * retry sends the same body under the same eventId.
 */
export const payloadBody = (payload: HookPayload): string => JSON.stringify(payload)
