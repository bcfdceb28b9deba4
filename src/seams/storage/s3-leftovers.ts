import type { Leftover } from './index.js'
import { abortUpload, listObjects, listUploads, removeObject, type S3Access } from './s3-bucket.js'

/**
 * What the bucket holds of uploads nobody finishes (S3Storage.leftovers): their open multipart uploads and
 * staging objects, found by the upload id every key carries (see s3-keys.ts), and their removal.
 */

/** A leftover as S3 holds it: objects, and multipart uploads of them. */
export interface S3Leftover extends Leftover {
  keys: string[]
  uploads: { key: string; uploadId: string }[]
}

/**
 * By upload: its open multipart uploads and its staging objects that no upload in `owned` owns, with the
 * instance a body arrives at (its marker) and when the oldest of them was begun.
 */
export async function findLeftovers(access: S3Access, owned: ReadonlySet<string>): Promise<S3Leftover[]> {
  const { keys } = access
  const found = new Map<string, S3Leftover & { since: number; arrivingAt?: string }>()
  const of = (id: string) => {
    let item = found.get(id)
    if (!item) found.set(id, (item = { name: '', id, keys: [], uploads: [], since: Infinity }))
    return item
  }
  const arriving = new Map<string, { key: string; instance: string; modified: number }>()
  for (const item of await listObjects(access, keys.arrivingPrefix)) {
    const marker = keys.parseArriving(item.key)
    if (marker) arriving.set(marker.id, { key: item.key, instance: marker.instance, modified: item.modified })
  }
  for (const open of await listUploads(access, keys.prefix)) {
    const parsed = keys.parse(open.key)
    if (!parsed || owned.has(parsed.id)) continue
    const item = of(parsed.id)
    item.uploads.push({ key: open.key, uploadId: open.uploadId })
    item.since = Math.min(item.since, open.initiated)
  }
  for (const listed of await listObjects(access, keys.stagingPrefix)) {
    const parsed = keys.parse(listed.key)
    if (!parsed || owned.has(parsed.id)) continue
    const item = of(parsed.id)
    item.keys.push(listed.key)
    item.since = Math.min(item.since, listed.modified)
  }
  for (const [id, marker] of arriving) {
    if (owned.has(id)) continue
    const item = of(id)
    item.keys.push(marker.key)
    item.arrivingAt = marker.instance
    item.since = Math.min(item.since, marker.modified)
  }
  return [...found.values()].map((item) => ({
    ...item,
    name: [...item.keys, ...item.uploads.map((u) => `${u.key} (multipart ${u.uploadId})`)].join(', '),
  }))
}

export async function removeLeftovers(access: S3Access, leftovers: readonly Leftover[]): Promise<void> {
  for (const item of leftovers as readonly S3Leftover[]) {
    for (const open of item.uploads) await abortUpload(access, open.key, open.uploadId)
    for (const key of item.keys) await removeObject(access, key)
  }
}

/** Whether the bucket holds any upload's staging or transfer (a state file gone missing would orphan them). */
export async function holdsTransfers(access: S3Access): Promise<boolean> {
  const { keys } = access
  const open = await listUploads(access, keys.prefix)
  if (open.some((upload) => keys.parse(upload.key) !== undefined)) return true
  return (await listObjects(access, keys.stagingPrefix)).some((item) => keys.parse(item.key) !== undefined)
}
