/**
 * The floor under the core and the seams: the upload record and its statuses, importing nothing. The
 * GraphQL schema's UploadStatus enum is generated from here (codegen.ts maps it), so the two cannot drift;
 * which status may follow which is the core's machine (core/machine.ts).
 */
export const UPLOAD_STATUSES = [
  'RECEIVING',
  'IN_PROGRESS',
  'PAUSED',
  'COMPLETED',
  'CANCELED',
  'FAILED',
] as const

export type UploadStatus = (typeof UPLOAD_STATUSES)[number]

/** How the bytes arrived: one multipart body, or tus (resumable, over as many requests as it takes). */
export type UploadSource = 'multipart' | 'tus'

/** One upload as the store keeps it: everything needed to answer for it and to carry it on after a restart. */
export interface UploadRecord {
  readonly id: string
  /** As the client sent it; for display only, never a path. */
  readonly filename: string
  /** `{id}_{safe filename}`, the only name its stored file is known by (see seams/storage/local.ts). */
  readonly storedName: string
  readonly status: UploadStatus
  /** Bytes received so far (all of them once it is past RECEIVING). */
  readonly receivedSize: number
  readonly source: UploadSource
  /** A tus upload still receiving is removed at this time unless more bytes arrive (RESUMABLE_EXPIRY). */
  readonly expiresAt: string | null
  /** When its last byte arrived and its transfer could start; null while it is RECEIVING (or never did). */
  readonly receivedAt: string | null
  /** Bytes written into storage so far. */
  readonly uploadedSize: number
  readonly totalSize: number
  readonly targetSpeed: number
  /** Hex sha256 of the bytes received, taken while they arrived; empty until they all have. */
  readonly sha256: string
  readonly error: string | null
  readonly createdAt: string
  readonly updatedAt: string
  readonly completedAt: string | null
  /** What the user's pre-create hook asked to keep on it (HOOKS_URL); empty otherwise. */
  readonly metadata: Readonly<Record<string, string>>
  /**
   * Who created it: a token's `sub` (see src/auth). Null, or absent in a record from before per-user access,
   * is the operator's (API_TOKEN, or no auth at all): only an admin reaches it.
   */
  readonly owner?: string | null
  /**
   * A multipart body still arriving for a user with a stored-bytes quota: its request's Content-Length, which
   * the quota counts it as until its size is known (two uploads at once cannot both take the last room).
   */
  readonly claimedSize?: number
}

/** What clients see: the record with the live byte count and speed of a running transfer. */
export interface UploadView extends UploadRecord {
  /** Bytes per second over about the last second, rounded; 0 unless moving. */
  readonly currentSpeed: number
  /** Set only on the last state published of an upload that has left the record (deleted, or never arrived). */
  readonly removed?: true
}

export const FINAL_STATUSES: ReadonlySet<UploadStatus> = new Set(['COMPLETED', 'CANCELED', 'FAILED'])

/*
 * What a status says about the record's shape, for the seams that check and index records (they stand on this
 * floor, below the core). Which status may follow which is the core's machine (core/machine.ts), which
 * re-exports these.
 */
/** Ended: nothing more happens to it but its deletion. */
export const isFinal = (status: UploadStatus) => FINAL_STATUSES.has(status)
/** Its bytes are still arriving: no sha256 yet, nothing of it in storage. */
export const isReceiving = (status: UploadStatus) => status === 'RECEIVING'
/** Its file is whole in storage (and it has a completedAt). */
export const isStored = (status: UploadStatus) => status === 'COMPLETED'
