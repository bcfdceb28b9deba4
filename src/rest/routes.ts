import { isReceiving } from '../core/machine.js'
import { badInput, quote } from '../errors.js'
import type { UploadStatus } from '../model/record.js'

/**
 * The /api contract of the older service, as a table: each route names the GraphQL operation it runs and how
 * its result is reshaped into the documented JSON. No rule lives here; the resolvers and the upload service
 * decide everything, exactly as they do for /graphql.
 */

type Data = Record<string, unknown>
/** An upload as the REST operations select it. */
export interface Upload {
  id: string
  filename: string
  status: UploadStatus
  uploadedSize: number
  totalSize: number
  currentSpeed: number
  targetSpeed: number
  error: string | null
}

export interface Route {
  method: 'GET' | 'POST' | 'DELETE'
  /** Segments; `:id` captures one. */
  path: string
  /** For the OpenAPI description (openapi.ts): the answer's schema, and which errors the route can give. */
  doc: { id: string; summary: string; schema: string; speed?: true; state?: true }
  operation: string
  /** The request body is multipart/form-data with the file in the `file` field. */
  upload?: true
  variables: (id: string | undefined, query: URLSearchParams) => Data
  reply: (data: Data) => unknown
  /**
   * A list that may be long (100k uploads): its operation takes `$first` and `$after` and its GraphQL
   * `field` is a page of uploads with their `cursor`; the answer `{"<key>": [...]}` is streamed a page at a
   * time, each item made by `item`, so no answer holds the event loop for long.
   */
  list?: { field: string; key: string; item: (upload: Upload) => unknown }
  /** For a download: the stored file to stream instead of a JSON answer, or a reason there is none. */
  file?: (data: Data) => { id: string; size: number; sha256: string; filename: string } | { missing: string }
}

const STATUS_FIELDS = 'id filename status uploadedSize totalSize currentSpeed targetSpeed error'

/**
 * GraphQL enum values are UPPER_CASE; the REST contract has always used lower case, and knows five states:
 * an upload still arriving is `in_progress` (with nothing stored yet) to it.
 */
export const restStatus = (status: UploadStatus) =>
  isReceiving(status) ? 'in_progress' : status.toLowerCase()

const listedUpload = (upload: Upload) => ({ upload_id: upload.id, ...statusOf(upload) })
const listedFile = (file: Upload) => ({
  upload_id: file.id,
  filename: file.filename,
  status: restStatus(file.status),
})

const statusOf = (upload: Upload) => ({
  status: restStatus(upload.status),
  filename: upload.filename,
  uploaded_size: upload.uploadedSize,
  total_size: upload.totalSize,
  current_speed: upload.currentSpeed,
  target_speed: upload.targetSpeed,
  // Why it failed (a hook's refusal, a mismatch, storage): what a script needs to act on a failure.
  ...(upload.status === 'FAILED' && upload.error ? { error: upload.error } : {}),
})

/**
 * A speed as curl users write it: a whole number of bytes per second. Refused in the words of the REST
 * contract (the parameter's name and what it takes), before any body is read; GraphQL's scalar checks it
 * again, but its wording (variables, types) is not for curl users.
 */
export function parseSpeed(raw: string, name = 'speed'): number {
  const text = raw.trim()
  const value = Number(text)
  if (!/^\d+$/.test(text)) {
    throw badInput(
      `${name} must be a whole number of bytes per second, 0 or more (0 = unlimited), such as ${name}=1048576 for 1 MiB/s; got ${quote(raw)}`,
    )
  }
  if (!Number.isSafeInteger(value))
    throw badInput(`${name} must be at most ${Number.MAX_SAFE_INTEGER}; got ${text.slice(0, 80)}`)
  return value
}

function speedParam(query: URLSearchParams): Data {
  const speed = query.get('speed')
  return speed === null ? {} : { speed: parseSpeed(speed) }
}

const idVar = (id: string | undefined) => ({ id })
/** `?owner=` of a list: whose uploads an admin lists. */
const ownerVar = (_id: string | undefined, query: URLSearchParams) =>
  query.has('owner') ? { owner: query.get('owner') } : {}

/** Run after an upload whose `speed` form field came after its file part (see handler.ts). */
export const SET_SPEED = `mutation SetSpeed($id: ID!, $speed: SafeInt!) { setSpeed(id: $id, speed: $speed) { targetSpeed } }`

export const routes: Route[] = [
  {
    method: 'GET',
    path: '/api/limits',
    doc: { id: 'limits', summary: 'The server-wide limits now in force', schema: 'Limits' },
    operation: `query Limits { limits { maxTotalSpeed } }`,
    variables: () => ({}),
    reply: ({ limits }) => ({ max_total_speed: (limits as { maxTotalSpeed: number }).maxTotalSpeed }),
  },
  {
    method: 'POST',
    path: '/api/limits/total-speed',
    doc: {
      id: 'setMaxTotalSpeed',
      summary: 'Cap the speed of all transfers together (0: no cap), shared fairly; until the next start',
      schema: 'Limits',
      speed: true,
    },
    operation: `mutation SetMaxTotalSpeed($speed: SafeInt!) { setMaxTotalSpeed(speed: $speed) { maxTotalSpeed } }`,
    variables: (_, query) => {
      const speed = query.get('speed')
      if (speed === null)
        throw badInput(
          'speed is required: POST /api/limits/total-speed?speed=10485760 (bytes per second; 0 = no cap)',
        )
      return { speed: parseSpeed(speed) }
    },
    reply: ({ setMaxTotalSpeed }) => ({
      max_total_speed: (setMaxTotalSpeed as { maxTotalSpeed: number }).maxTotalSpeed,
    }),
  },
  {
    method: 'POST',
    path: '/api/upload',
    doc: {
      id: 'startUpload',
      summary: 'Upload a file; it is stored at `speed` in the background',
      schema: 'Started',
      speed: true,
    },
    upload: true,
    operation: `mutation Upload($file: File!, $speed: SafeInt) {
      uploadFile(file: $file, speed: $speed) { id totalSize targetSpeed }
    }`,
    variables: (_, query) => speedParam(query),
    reply: ({ uploadFile: u }) => {
      const upload = u as Upload
      return {
        upload_id: upload.id,
        status: 'started',
        total_size: upload.totalSize,
        speed: upload.targetSpeed,
      }
    },
  },
  {
    method: 'POST',
    path: '/api/upload/:id/pause',
    doc: { id: 'pauseUpload', summary: 'Pause a running upload', schema: 'Paused', state: true },
    operation: `mutation Pause($id: ID!) { pauseUpload(id: $id) { id } }`,
    variables: idVar,
    reply: () => ({ status: 'paused' }),
  },
  {
    method: 'POST',
    path: '/api/upload/:id/resume',
    doc: {
      id: 'resumeUpload',
      summary: 'Resume a paused upload, at a new speed if given',
      schema: 'Resumed',
      speed: true,
      state: true,
    },
    operation: `mutation Resume($id: ID!, $speed: SafeInt) { resumeUpload(id: $id, speed: $speed) { targetSpeed } }`,
    variables: (id, query) => ({ id, ...speedParam(query) }),
    reply: ({ resumeUpload }) => ({ status: 'resumed', speed: (resumeUpload as Upload).targetSpeed }),
  },
  {
    method: 'POST',
    path: '/api/upload/:id/speed',
    doc: {
      id: 'setSpeed',
      summary: 'Change the speed of a running upload (at once, no pause) or of a paused one (for its resume)',
      schema: 'SpeedSet',
      speed: true,
      state: true,
    },
    operation: `mutation SetSpeed($id: ID!, $speed: SafeInt!) { setSpeed(id: $id, speed: $speed) { status targetSpeed } }`,
    variables: (id, query) => {
      const speed = query.get('speed')
      if (speed === null)
        throw badInput(
          'speed is required: POST /api/upload/{upload_id}/speed?speed=1048576 (bytes per second; 0 = unlimited)',
        )
      return { id, speed: parseSpeed(speed) }
    },
    reply: ({ setSpeed }) => {
      const upload = setSpeed as Upload
      return { status: restStatus(upload.status), speed: upload.targetSpeed }
    },
  },
  {
    method: 'POST',
    path: '/api/upload/:id/cancel',
    doc: {
      id: 'cancelUpload',
      summary: 'Cancel a running or paused upload and remove its bytes',
      schema: 'Canceled',
      state: true,
    },
    operation: `mutation Cancel($id: ID!) { cancelUpload(id: $id) { id } }`,
    variables: idVar,
    reply: () => ({ status: 'canceled' }),
  },
  {
    method: 'GET',
    path: '/api/upload/:id/status',
    doc: { id: 'uploadStatus', summary: "An upload's state", schema: 'Status' },
    operation: `query Status($id: ID!) { upload(id: $id) { ${STATUS_FIELDS} } }`,
    variables: idVar,
    reply: ({ upload }) => statusOf(upload as Upload),
  },
  {
    method: 'GET',
    path: '/api/uploads',
    doc: { id: 'listUploads', summary: 'Every upload, oldest first', schema: 'Uploads' },
    // An admin lists one owner's with ?owner=; a user, only their own (naming another is FORBIDDEN).
    operation: `query Uploads($first: Int, $after: String, $owner: String) { uploads(first: $first, after: $after, owner: $owner) { cursor ${STATUS_FIELDS} } }`,
    variables: ownerVar,
    reply: ({ uploads }) => ({ uploads: (uploads as Upload[]).map(listedUpload) }),
    list: { field: 'uploads', key: 'uploads', item: listedUpload },
  },
  {
    method: 'GET',
    path: '/api/files',
    doc: { id: 'listFiles', summary: 'The uploads whose complete file is stored', schema: 'Files' },
    // The uploads whose complete file is stored: `files` in GraphQL, read here a page at a time.
    operation: `query Files($first: Int, $after: String, $owner: String) { uploads(status: [COMPLETED], first: $first, after: $after, owner: $owner) { cursor id filename status } }`,
    variables: ownerVar,
    reply: ({ uploads }) => ({ files: (uploads as Upload[]).map(listedFile) }),
    list: { field: 'uploads', key: 'files', item: listedFile },
  },
  {
    method: 'GET',
    path: '/api/files/:id/download',
    doc: {
      id: 'downloadFile',
      summary: 'Download a stored file (Range, If-Range, If-None-Match)',
      schema: 'Error',
    },
    operation: `query Download($id: ID!) { upload(id: $id) { id status downloadUrl totalSize sha256 filename } }`,
    variables: idVar,
    reply: () => undefined,
    file: ({ upload }) => {
      const u = upload as Upload & { downloadUrl: string | null; sha256: string }
      if (u.downloadUrl === null)
        return { missing: `Upload ${u.id} has no complete file (it is ${restStatus(u.status)})` }
      return { id: u.id, size: u.totalSize, sha256: u.sha256, filename: u.filename }
    },
  },
  {
    method: 'DELETE',
    path: '/api/files/:id',
    doc: {
      id: 'deleteFile',
      summary: "Delete an ended upload's file and record",
      schema: 'Deleted',
      state: true,
    },
    operation: `mutation Delete($id: ID!) { deleteFile(id: $id) { id filename } }`,
    variables: idVar,
    reply: ({ deleteFile }) => {
      const upload = deleteFile as Upload
      return { status: 'deleted', upload_id: upload.id, filename: upload.filename }
    },
  },
]
