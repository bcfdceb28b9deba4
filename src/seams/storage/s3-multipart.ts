import { createHash } from 'node:crypto'
import { CreateMultipartUploadCommand, PutObjectCommand, type Part } from '@aws-sdk/client-s3'
import { TargetChangedError } from './index.js'
import { abortUpload, headObject, listParts, listUploads, type S3Access } from './s3-bucket.js'

/** S3's rules: every part but the last at least 5 MiB, at most 10,000 parts. */
export const MIN_PART = 5 * 1024 * 1024
export const MAX_PARTS = 10_000
const MIB = 1024 * 1024

/**
 * The part size for a file of `total` bytes: the smallest S3 allows, unless the file needs more than 10,000
 * of them. Small parts are what make pause and resume precise: a pause drops the part in flight, and resume
 * sends it again from its start, so at most one part's bytes are sent twice.
 */
export const partSizeFor = (total: number): number =>
  Math.max(MIN_PART, Math.ceil(total / MAX_PARTS / MIB) * MIB)

/**
 * Which bytes each part holds: part n (from 1) is [(n-1)·size, n·size), the last one shorter. Fixed by the
 * file's size alone, so a restart (or another instance) knows every part's range from S3's list of parts
 * without anything of ours having been saved.
 */
export class PartPlan {
  readonly size: number
  readonly count: number
  constructor(
    readonly total: number,
    size = partSizeFor(total),
  ) {
    this.size = size
    this.count = Math.max(1, Math.ceil(total / size))
  }

  start(n: number): number {
    return (n - 1) * this.size
  }

  end(n: number): number {
    return Math.min(this.total, n * this.size)
  }

  partOf(offset: number): number {
    return Math.floor(offset / this.size) + 1
  }
}

/** S3's record of a part it holds, and the sha256 we know its bytes by (base64, as S3 spells it). */
export interface HeldPart {
  etag: string
  sha256: string | undefined
}

/**
 * The multipart upload is gone (completed, or aborted by someone): settled with `settle()`. A kind of
 * TargetChangedError, so the service's recheck (verifiedPrefix, then on from what verifies) handles it.
 */
export class UploadGoneError extends TargetChangedError {
  override readonly name = 'UploadGoneError'
}

/** The bytes did not hash to what they were (at arrival, or per part as S3 holds them). Never retried. */
export class ChecksumMismatchError extends Error {
  override readonly name = 'ChecksumMismatchError'
}

/**
 * Finds the multipart upload S3 holds for `key` (S3's own record, so nothing of ours need have survived a
 * SIGKILL), or starts one. When there are several (a crash between two starts), the one holding the most
 * bytes is kept and the others aborted.
 */
export async function openUpload(
  access: S3Access,
  key: string,
  plan: PartPlan,
  metadata: Record<string, string>,
): Promise<{ uploadId: string; held: Map<number, HeldPart> }> {
  const found = (await listUploads(access, key)).filter((upload) => upload.key === key)
  let best: { uploadId: string; held: Map<number, HeldPart>; bytes: number } | undefined
  for (const upload of found) {
    const parts = await listParts(access, key, upload.uploadId)
    if (parts === undefined) continue
    const held = usable(parts, plan)
    const bytes = [...held.keys()].reduce((sum, n) => sum + plan.end(n) - plan.start(n), 0)
    if (best === undefined || bytes > best.bytes) {
      if (best) await abortUpload(access, key, best.uploadId)
      best = { uploadId: upload.uploadId, held, bytes }
    } else await abortUpload(access, key, upload.uploadId)
  }
  if (best) return best
  const created = await access.client.send(
    new CreateMultipartUploadCommand({
      Bucket: access.bucket,
      Key: key,
      ChecksumAlgorithm: 'SHA256',
      Metadata: metadata,
    }),
  )
  if (created.UploadId === undefined) throw new Error(`S3 started no multipart upload for ${key}`)
  return { uploadId: created.UploadId, held: new Map() }
}

/** The parts that fit the plan (exact size): a part of another size was sent under another plan. */
export function usable(parts: Part[], plan: PartPlan): Map<number, HeldPart> {
  const held = new Map<number, HeldPart>()
  for (const part of parts) {
    const n = part.PartNumber ?? 0
    if (n < 1 || n > plan.count || part.ETag === undefined) continue
    if (part.Size !== plan.end(n) - plan.start(n)) continue
    held.set(n, { etag: part.ETag, sha256: part.ChecksumSHA256 })
  }
  return held
}

/**
 * What NoSuchUpload means for an upload: either it was completed (by this writer before a crash, or by
 * another instance) and the object is there, whole and with the sha256 it was meant to have, or it was
 * aborted and the transfer starts again.
 */
export async function settle(
  access: S3Access,
  key: string,
  expected: { size: number; sha256: string },
): Promise<'completed' | 'restart'> {
  const head = await headObject(access, key)
  return head !== undefined && head.size === expected.size && head.metadata.sha256 === expected.sha256
    ? 'completed'
    : 'restart'
}

/**
 * A whole object in one request: an empty file (S3 takes no multipart upload of no bytes), or a small body
 * stored from memory. S3 checks the bytes against their sha256 as it takes them.
 */
export async function putWhole(
  access: S3Access,
  key: string,
  body: Buffer,
  metadata: Record<string, string>,
): Promise<void> {
  await access.client.send(
    new PutObjectCommand({
      Bucket: access.bucket,
      Key: key,
      Body: body,
      ChecksumSHA256: createHash('sha256').update(body).digest('base64'),
      Metadata: metadata,
    }),
  )
}
