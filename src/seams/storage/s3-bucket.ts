import type { Readable } from 'node:stream'
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  S3Client,
  S3ServiceException,
  type Part,
} from '@aws-sdk/client-s3'
import type { S3Settings } from '../../config.js'
import { StorageRefused, StorageUnavailable } from './index.js'
import { S3Keys } from './s3-keys.js'

/** A wrong S3 setting, found at start-up: said in one line, as a bad UPLOAD_DIR is. */
export class S3SetupError extends Error {
  override readonly name = 'S3SetupError'
}

/** What S3 said, by its code (`NoSuchUpload`, `NotFound`...) or, for a HEAD (no body), its status. */
export const s3Code = (error: unknown): string | undefined =>
  error instanceof S3ServiceException ? error.name : undefined

/** The HTTP status S3 answered with: also on an answer the SDK could not parse (moto's HTML 500s). */
const statusOf = (error: unknown): number | undefined =>
  (error as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode

const NOT_FOUND = new Set(['NotFound', 'NoSuchKey', 'NoSuchUpload'])
export const isNotFound = (error: unknown) => NOT_FOUND.has(s3Code(error) ?? '') || statusOf(error) === 404

/**
 * Whether trying again later may succeed: S3 away (no answer, a reset, a timeout), busy (5xx, 429 SlowDown,
 * 408). Anything else S3 answered is about the request itself (4xx: refused, missing, too small) and the
 * same request would be refused again.
 */
export function isTransient(error: unknown): boolean {
  const status = statusOf(error)
  if (status !== undefined) return status >= 500 || status === 429 || status === 408
  if (error instanceof S3ServiceException) return error.$retryable !== undefined
  return isNetwork(error)
}

/** The socket errors of an S3 nobody answers for (refused, reset, silent past S3_TIMEOUT, unresolvable). */
const NETWORK = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'ENOTFOUND',
  'ERR_STREAM_PREMATURE_CLOSE',
])
const NETWORK_NAMES = new Set(['TimeoutError', 'RequestTimeout', 'NetworkingError'])

function isNetwork(error: unknown): boolean {
  if (!(error instanceof Error)) return false
  const code = (error as NodeJS.ErrnoException).code
  if (code !== undefined && NETWORK.has(code)) return true
  if (NETWORK_NAMES.has(error.name)) return true
  // The SDK wraps some socket errors; the socket's own is the cause.
  return error.cause !== undefined && error.cause !== error && isNetwork(error.cause)
}

const CONNECT_TIMEOUT_MS = 5_000

/** What S3 did, counted for /metrics (each also logged where it happens). */
export interface S3Counts {
  /** A request S3 did not answer (or answered busy), tried again after a wait. */
  retries: number
  /** A request S3 did not answer even after the SDK's own tries: reported StorageUnavailable. */
  unavailable: number
  /** A request S3 refused (4xx): reported StorageRefused, the upload fails. */
  refused: number
}

/**
 * The error the rest of the service is told, by what S3 did: away or busy (StorageUnavailable: wait and try
 * again), or refused (StorageRefused, with S3's code, so an operator reads why). Ours pass unchanged.
 */
export function outcome(access: S3Access, error: unknown, what: string): Error {
  if (!(error instanceof S3ServiceException) && statusOf(error) === undefined && !isNetwork(error))
    return error instanceof Error ? error : new Error(String(error))
  if (isTransient(error)) {
    access.counts.unavailable++
    return new StorageUnavailable(`S3 did not answer ${what} (${describe(error)})`)
  }
  access.counts.refused++
  return new StorageRefused(`S3 refused ${what}: ${describe(error)}`)
}

/** S3's code, its HTTP status and its words; or the socket's error code. */
export function describe(error: unknown): string {
  const status = statusOf(error)
  if (status !== undefined && error instanceof Error) {
    const words = error.message.split('\n')[0]
    return `${error.name}, HTTP ${status}${words && words !== error.name ? `: ${words}` : ''}`
  }
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  return code ?? (error instanceof Error ? `${error.name}: ${error.message}` : String(error))
}

const QUIET = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined }

export interface S3Access {
  client: S3Client
  /** For streamed part bodies: one attempt each, since a stream that was read cannot be sent again. */
  streams: S3Client
  bucket: string
  keys: S3Keys
  counts: S3Counts
}

/** Clients for the settings; credentials come from the SDK's default chain (environment, profile, role). */
export function openS3(settings: S3Settings): S3Access {
  const common = {
    ...(settings.endpoint === undefined ? {} : { endpoint: settings.endpoint }),
    ...(settings.region === undefined ? {} : { region: settings.region }),
    forcePathStyle: settings.forcePathStyle,
    // The SDK builds its Node handler from these (no import of @smithy's, which is not our dependency).
    // A socket silent for S3_TIMEOUT is given up (and the request tried again): a frozen S3 is noticed.
    // socketTimeout, not requestTimeout: that one bounds a whole request (a throttled part takes minutes)
    // and, in this SDK, only warns unless told to throw.
    requestHandler: { connectionTimeout: CONNECT_TIMEOUT_MS, socketTimeout: settings.timeoutMs },
    // Checksums only where the service asks for them: part bodies carry theirs explicitly (s3-multipart.ts).
    requestChecksumCalculation: 'WHEN_REQUIRED' as const,
    responseChecksumValidation: 'WHEN_REQUIRED' as const,
  }
  return {
    client: new S3Client(common),
    // The SDK warns on the console of every failed streaming request (a pause aborts one); the sink says
    // what failed itself, so a logger of ours that drops the SDK's words keeps them out of the log.
    streams: new S3Client({ ...common, maxAttempts: 1, logger: QUIET }),
    bucket: settings.bucket,
    keys: new S3Keys(settings.prefix),
    counts: { retries: 0, unavailable: 0, refused: 0 },
  }
}

export function closeS3(access: S3Access): void {
  access.client.destroy()
  access.streams.destroy()
}

/**
 * Refuses, in one line, settings this instance could never store with: an unknown bucket, credentials the
 * bucket refuses, an endpoint that does not answer, no region. HeadBucket is the one call that tells these
 * apart without writing anything.
 */
export async function checkBucket(access: S3Access, settings: S3Settings): Promise<void> {
  const where = settings.endpoint ?? 'AWS'
  try {
    await access.client.send(new HeadBucketCommand({ Bucket: access.bucket }), {
      abortSignal: AbortSignal.timeout(15_000),
    })
  } catch (error) {
    const status = statusOf(error)
    if (status === 404 || s3Code(error) === 'NoSuchBucket')
      throw new S3SetupError(
        `S3_BUCKET ${access.bucket} does not exist at ${where}: create it, or name one that does`,
      )
    if (status === 403 || status === 401)
      throw new S3SetupError(
        `S3 refused the credentials for bucket ${access.bucket} at ${where} (HTTP ${status}): check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, the profile or the role, and its s3:ListBucket permission`,
      )
    if (status === 301 || status === 400)
      throw new S3SetupError(
        `S3 answered HTTP ${status} for bucket ${access.bucket} at ${where}: is S3_REGION the bucket's region${settings.endpoint ? ', and S3_FORCE_PATH_STYLE right for this endpoint' : ''}?`,
      )
    const message = error instanceof Error ? error.message : String(error)
    if (error instanceof Error && error.name === 'CredentialsProviderError')
      throw new S3SetupError(
        'No AWS credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with a role',
      )
    if (/region is missing/i.test(message))
      throw new S3SetupError(
        'S3_REGION is not set, and neither is AWS_REGION nor a profile region: set S3_REGION',
      )
    if (status !== undefined)
      throw new S3SetupError(`S3 answered HTTP ${status} for bucket ${access.bucket} at ${where}`)
    const code = (error as NodeJS.ErrnoException).code ?? (error as Error).name
    throw new S3SetupError(`S3 endpoint ${where} is unreachable (${code}): check S3_ENDPOINT and the network`)
  }
}

export interface ObjectHead {
  size: number
  metadata: Record<string, string>
  etag: string | undefined
  /** S3's own checksum of the object (base64; for a multipart one, of its parts' checksums). */
  checksum: string | undefined
}

export async function headObject(access: S3Access, key: string): Promise<ObjectHead | undefined> {
  try {
    const head = await access.client.send(
      new HeadObjectCommand({ Bucket: access.bucket, Key: key, ChecksumMode: 'ENABLED' }),
    )
    return {
      size: head.ContentLength ?? 0,
      metadata: head.Metadata ?? {},
      etag: head.ETag,
      checksum: head.ChecksumSHA256,
    }
  } catch (error) {
    if (isNotFound(error)) return undefined
    throw error
  }
}

/**
 * The object's bytes from `start` to `end` (exclusive), as a stream: S3 sends them as they are read, so
 * memory stays flat whatever the size. `etag` makes S3 refuse (412) an object replaced since it was looked at.
 */
export async function readObject(
  access: S3Access,
  key: string,
  {
    start = 0,
    end,
    etag,
    signal,
  }: { start?: number; end?: number; etag?: string; signal?: AbortSignal } = {},
): Promise<Readable> {
  const range =
    start === 0 && end === undefined ? undefined : `bytes=${start}-${end === undefined ? '' : end - 1}`
  const answer = await access.client.send(
    new GetObjectCommand({ Bucket: access.bucket, Key: key, Range: range, IfMatch: etag }),
    signal ? { abortSignal: signal } : {},
  )
  return answer.Body as Readable
}

export async function removeObject(access: S3Access, key: string): Promise<void> {
  // DeleteObject of a missing key succeeds: removing twice is fine.
  await access.client.send(new DeleteObjectCommand({ Bucket: access.bucket, Key: key }))
}

/** Every part S3 holds of a multipart upload, in order; undefined when the upload is gone (NoSuchUpload). */
export async function listParts(
  access: S3Access,
  key: string,
  uploadId: string,
  /** Parts per page: S3's own (1000) unless a test wants to see several pages of a few parts. */
  pageSize?: number,
): Promise<Part[] | undefined> {
  const parts: Part[] = []
  let marker: string | undefined
  for (;;) {
    let page
    try {
      page = await access.client.send(
        new ListPartsCommand({
          Bucket: access.bucket,
          Key: key,
          UploadId: uploadId,
          PartNumberMarker: marker,
          MaxParts: pageSize,
        }),
      )
    } catch (error) {
      if (s3Code(error) === 'NoSuchUpload' || isNotFound(error)) return undefined
      throw error
    }
    parts.push(...(page.Parts ?? []))
    const next = page.NextPartNumberMarker
    // moto says IsTruncated on the last page too; an empty page, or a marker that does not move, ends it.
    if (!page.IsTruncated || !page.Parts?.length || next === undefined || next === marker) break
    marker = next
  }
  return parts.sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0))
}

/** A multipart upload S3 holds open. */
export interface OpenUpload {
  key: string
  uploadId: string
  initiated: number
}

/** The multipart uploads open under `prefix` (every page), oldest first. */
export async function listUploads(access: S3Access, prefix: string): Promise<OpenUpload[]> {
  const uploads: OpenUpload[] = []
  let keyMarker: string | undefined
  let idMarker: string | undefined
  for (;;) {
    const page = await access.client.send(
      new ListMultipartUploadsCommand({
        Bucket: access.bucket,
        Prefix: prefix,
        KeyMarker: keyMarker,
        UploadIdMarker: idMarker,
      }),
    )
    for (const { Key, UploadId, Initiated } of page.Uploads ?? [])
      if (Key !== undefined && UploadId !== undefined)
        uploads.push({ key: Key, uploadId: UploadId, initiated: Initiated?.getTime() ?? 0 })
    if (!page.IsTruncated || !page.Uploads?.length) break
    if (page.NextKeyMarker === keyMarker && page.NextUploadIdMarker === idMarker) break
    keyMarker = page.NextKeyMarker
    idMarker = page.NextUploadIdMarker
  }
  return uploads.sort((a, b) => a.initiated - b.initiated)
}

/** Aborting one that is gone already (completed, aborted) is done. */
export async function abortUpload(access: S3Access, key: string, uploadId: string): Promise<void> {
  try {
    await access.client.send(
      new AbortMultipartUploadCommand({ Bucket: access.bucket, Key: key, UploadId: uploadId }),
    )
  } catch (error) {
    if (!isNotFound(error)) throw error
  }
}

/** An object as a listing shows it. */
export interface Listed {
  key: string
  size: number
  /** LastModified, ms since the epoch. */
  modified: number
}

/** Every object under `prefix` (every page), in key order. */
export async function listObjects(access: S3Access, prefix: string): Promise<Listed[]> {
  const found: Listed[] = []
  let token: string | undefined
  do {
    const page = await access.client.send(
      new ListObjectsV2Command({ Bucket: access.bucket, Prefix: prefix, ContinuationToken: token }),
    )
    for (const item of page.Contents ?? [])
      if (item.Key !== undefined)
        found.push({ key: item.Key, size: item.Size ?? 0, modified: item.LastModified?.getTime() ?? 0 })
    token = page.IsTruncated ? page.NextContinuationToken : undefined
  } while (token)
  return found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
}

/** Every key under `prefix` (every page). */
export async function listKeys(access: S3Access, prefix: string): Promise<string[]> {
  return (await listObjects(access, prefix)).map((item) => item.key)
}
