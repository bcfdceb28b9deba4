import { isFinal, isReceiving, isStored, UPLOAD_STATUSES, type UploadStatus } from '../../model/record.js'

/**
 * What every record store checks of a record it reads back (a state file, a journal line, a Redis hash):
 * stored data is not trusted until it is a whole record.
 */

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/
const HEX64 = /^[0-9a-f]{64}$/
const count = (value: unknown) => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0

/**
 * What is wrong with a record read back from storage, or undefined when it is whole. A state file is
 * trusted with paths (the stored name is joined to the folder), so a record that could point outside it is
 * as wrong as one that is missing a field.
 */
export function recordProblem(value: unknown, id?: string): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'is not an object'
  const r = value as Record<string, unknown>
  if (typeof r.id !== 'string' || r.id === '') return 'has no id'
  if (id !== undefined && r.id !== id)
    return `is filed under ${JSON.stringify(id)} but has id ${JSON.stringify(r.id)}`
  if (typeof r.filename !== 'string') return 'has no filename'
  if (
    typeof r.storedName !== 'string' ||
    !r.storedName.startsWith(`${r.id}_`) ||
    /[/\\\0]/.test(r.storedName)
  )
    return 'has a storedName that is not {id}_{name}'
  if (typeof r.status !== 'string' || !UPLOAD_STATUSES.includes(r.status as UploadStatus))
    return `has an unknown status ${JSON.stringify(r.status)}`
  for (const field of ['uploadedSize', 'totalSize', 'targetSpeed'] as const)
    if (!count(r[field])) return `has no whole, non-negative ${field}`
  if ((r.uploadedSize as number) > (r.totalSize as number)) return 'has more bytes uploaded than its size'
  if (!count(r.receivedSize)) return 'has no whole, non-negative receivedSize'
  if (r.claimedSize !== undefined && !count(r.claimedSize))
    return 'has a claimedSize that is not a byte count'
  if (r.source !== 'multipart' && r.source !== 'tus')
    return `has an unknown source ${JSON.stringify(r.source)}`
  for (const field of ['expiresAt', 'receivedAt'] as const)
    if (r[field] !== null && (typeof r[field] !== 'string' || !ISO.test(r[field])))
      return `has a ${field} that is not a time`
  // Known once every byte is in: an upload still arriving, or one that ended before it all did, has none.
  const status = r.status as UploadStatus // checked above
  const mayLackHash = isReceiving(status) || (isFinal(status) && !isStored(status))
  if (typeof r.sha256 !== 'string' || !(HEX64.test(r.sha256) || (mayLackHash && r.sha256 === '')))
    return 'has no sha256'
  if (r.error !== null && typeof r.error !== 'string') return 'has an error that is not text'
  for (const field of ['createdAt', 'updatedAt'] as const)
    if (typeof r[field] !== 'string' || !ISO.test(r[field] as string)) return `has no ${field}`
  if (r.completedAt !== null && (typeof r.completedAt !== 'string' || !ISO.test(r.completedAt)))
    return 'has a completedAt that is not a time'
  if (r.owner !== undefined && r.owner !== null && (typeof r.owner !== 'string' || r.owner === ''))
    return 'has an owner that is not a name'
  if (isStored(status) && r.completedAt === null) return 'is completed but has no completedAt'
  if (
    typeof r.metadata !== 'object' ||
    r.metadata === null ||
    Array.isArray(r.metadata) ||
    !Object.values(r.metadata).every((v) => typeof v === 'string')
  )
    return 'has metadata that is not an object of strings'
  return undefined
}

/**
 * A record as stored before uploads could be received over time (no receivedSize, source, expiresAt or receivedAt):
 * it had arrived whole, over multipart. One from before pre-create hooks has no metadata: it has none. Applied before a record read back is checked.
 */
export function withDefaults(value: unknown): unknown {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return value
  // Filled in where it stands: a record read back is always a fresh parse, and copying each of 100k records
  // (twice, for one from before hooks) was a tenth of a start-up.
  const r = value as Record<string, unknown>
  // Kept since pre-create hooks (issue 23); a record from before them has none.
  if (!('metadata' in r)) r.metadata = {}
  if ('receivedSize' in r && 'source' in r && 'expiresAt' in r && 'receivedAt' in r) return r
  // It had arrived whole when it was recorded (or, with the rest of these fields, ended before receivedAt was kept).
  if (!('receivedSize' in r)) r.receivedSize = r.totalSize
  if (!('source' in r)) r.source = 'multipart'
  if (!('expiresAt' in r)) r.expiresAt = null
  if (!('receivedAt' in r))
    r.receivedAt = isReceiving(r.status as UploadStatus) || r.sha256 === '' ? null : r.createdAt
  return r
}
