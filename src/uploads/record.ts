import type { UploadStatus } from '../generated/graphql.js'

export type { UploadStatus }

/** One upload as the store keeps it: everything needed to answer for it and to carry it on after a restart. */
export interface UploadRecord {
  id: string
  /** As the client sent it; for display only, never a path. */
  filename: string
  /** `{id}_{safe filename}`, the only name used on disk. */
  storedName: string
  status: UploadStatus
  uploadedSize: number
  totalSize: number
  targetSpeed: number
  /** Hex sha256 of the bytes received, taken while they arrived. */
  sha256: string
  error: string | null
  createdAt: string
  updatedAt: string
  completedAt: string | null
}

/** What clients see: the record plus the live speed, which is measured, not stored. */
export interface UploadView extends UploadRecord {
  currentSpeed: number
}

export const FINAL_STATUSES: ReadonlySet<UploadStatus> = new Set(['COMPLETED', 'CANCELED', 'FAILED'])

export const isFinal = (status: UploadStatus) => FINAL_STATUSES.has(status)
