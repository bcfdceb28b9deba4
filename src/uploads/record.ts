import type { UploadStatus } from '../generated/graphql.js'

export type { UploadStatus }

export const UPLOAD_STATUSES: readonly UploadStatus[] = ['IN_PROGRESS', 'PAUSED', 'COMPLETED', 'CANCELED', 'FAILED']

/** One upload as the store keeps it: everything needed to answer for it and to carry it on after a restart. */
export interface UploadRecord {
  readonly id: string
  /** As the client sent it; for display only, never a path. */
  readonly filename: string
  /** `{id}_{safe filename}`, the only name used on disk (see storage.ts). */
  readonly storedName: string
  readonly status: UploadStatus
  readonly uploadedSize: number
  readonly totalSize: number
  readonly targetSpeed: number
  /** Hex sha256 of the bytes received, taken while they arrived. */
  readonly sha256: string
  readonly error: string | null
  readonly createdAt: string
  readonly updatedAt: string
  readonly completedAt: string | null
}

/** What clients see: the record with the live byte count and speed of a running transfer. */
export interface UploadView extends UploadRecord {
  /** Bytes per second over about the last second, rounded; 0 unless moving. */
  readonly currentSpeed: number
}

export const FINAL_STATUSES: ReadonlySet<UploadStatus> = new Set(['COMPLETED', 'CANCELED', 'FAILED'])

export const isFinal = (status: UploadStatus) => FINAL_STATUSES.has(status)
