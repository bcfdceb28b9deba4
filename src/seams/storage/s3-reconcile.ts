import { createHash } from 'node:crypto'
import type { Readable } from 'node:stream'
import { CompleteMultipartUploadCommand } from '@aws-sdk/client-s3'
import { StoredBytesMismatch, type Verified } from './index.js'
import { headObject, listUploads, removeObject, type S3Access } from './s3-bucket.js'
import { type HeldPart, openUpload, type PartPlan } from './s3-multipart.js'
import type { S3Mark } from './s3-sink.js'

/**
 * S3's own record of a transfer set against the staged bytes: what a restart or an adoption goes on from
 * (`reconcile`), and the completion that makes the parts one object only if they are what arrived.
 */

/**
 * S3's own record (ListParts, every page), checked part by part against the staged bytes' same range: by
 * the part's sha256 where S3 lists it, else by its ETag where that is the part's MD5 (AWS without KMS,
 * MinIO, moto), else by its size alone (a compatible that lists neither; S3 checked each part's sha256
 * trailer when it took it). The staged prefix is read once, to hash it for the transfer to go on from.
 */
export async function reconcile(
  access: S3Access,
  key: string,
  plan: PartPlan,
  sha256: string,
  staged: (start: number, end: number) => Readable,
): Promise<Verified> {
  const hash = createHash('sha256')
  const found = (await listUploads(access, key)).filter((u) => u.key === key)
  if (found.length === 0) return { offset: 0, hash }
  const { uploadId, held } = await openUpload(access, key, plan, { sha256 })
  const parts: HeldPart[] = []
  for (let n = 1, listed = held.get(1); listed !== undefined; listed = held.get(++n)) {
    const [sha, md5] = [createHash('sha256'), createHash('md5')]
    const before = hash.copy()
    for await (const chunk of staged(plan.start(n), plan.end(n))) {
      sha.update(chunk as Buffer)
      md5.update(chunk as Buffer)
      hash.update(chunk as Buffer)
    }
    const ours = sha.digest('base64')
    const etag = listed.etag.replaceAll('"', '')
    const same =
      listed.sha256 !== undefined
        ? listed.sha256 === ours
        : /^[0-9a-f]{32}$/.test(etag)
          ? etag === md5.digest('hex')
          : true
    if (!same) {
      const mark: S3Mark = { kind: 's3', uploadId, parts }
      return { offset: plan.start(n), hash: before, mark }
    }
    parts.push({ etag: listed.etag, sha256: ours })
  }
  const mark: S3Mark = { kind: 's3', uploadId, parts }
  return { offset: parts.length === plan.count ? plan.total : parts.length * plan.size, hash, mark }
}

/**
 * Completes the multipart upload with exactly the mark's parts, then checks the object S3 made of them: its
 * size, and its composite sha256 where S3 says one. An object that is not what the parts were is removed.
 */
export async function completeParts(
  access: S3Access,
  key: string,
  mark: S3Mark,
  expected: { size: number; sha256: string },
): Promise<void> {
  await access.client.send(
    new CompleteMultipartUploadCommand({
      Bucket: access.bucket,
      Key: key,
      UploadId: mark.uploadId,
      MultipartUpload: {
        Parts: mark.parts.map((part, i) => ({
          PartNumber: i + 1,
          ETag: part.etag,
          ChecksumSHA256: part.sha256,
        })),
      },
    }),
  )
  const head = await headObject(access, key)
  const composite = createHash('sha256')
  for (const part of mark.parts) composite.update(Buffer.from(part.sha256 ?? '', 'base64'))
  const theirs = head?.checksum?.replace(/-\d+$/, '')
  if (
    !head ||
    head.size !== expected.size ||
    (theirs !== undefined && theirs !== composite.digest('base64'))
  ) {
    await removeObject(access, key)
    throw new StoredBytesMismatch(`object of ${head?.size ?? 0} bytes, checksum ${theirs}`, expected.sha256)
  }
}
