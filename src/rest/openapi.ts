import { routes, type Route } from './routes.js'
import { TUS_PATH } from '../tus/path.js'

/**
 * OpenAPI 3.1 for /api, generated from the route table, so a route cannot exist undocumented. The response
 * schemas are JSON Schema 2020-12 (what OpenAPI 3.1 uses) and the tests validate real answers against them.
 */

type Schema = Record<string, unknown>

const STATUS = { type: 'string', enum: ['in_progress', 'paused', 'completed', 'canceled', 'failed'] }
const int = { type: 'integer', minimum: 0 }
const object = (properties: Record<string, Schema>): Schema => ({
  type: 'object',
  properties,
  required: Object.keys(properties),
  additionalProperties: false,
})
/** An upload's status fields, and `error` (why it failed) on one that has FAILED: the contract's shape plus the reason. */
const withReason = (schema: Schema): Schema => ({
  ...schema,
  properties: {
    ...(schema.properties as Record<string, Schema>),
    error: { type: 'string', description: 'Why the upload failed; present only when its status is failed' },
  },
})
const uploadStatus = {
  status: STATUS,
  filename: { type: 'string' },
  uploaded_size: int,
  total_size: int,
  current_speed: int,
  target_speed: int,
}

export const schemas: Record<string, Schema> = {
  Error: object({ detail: { type: 'string' } }),
  Started: object({
    upload_id: { type: 'string' },
    status: { const: 'started' },
    total_size: int,
    speed: int,
  }),
  Paused: object({ status: { const: 'paused' } }),
  Resumed: object({ status: { const: 'resumed' }, speed: int }),
  Canceled: object({ status: { const: 'canceled' } }),
  SpeedSet: object({ status: STATUS, speed: int }),
  Limits: object({ max_total_speed: int }),
  Status: withReason(object(uploadStatus)),
  Uploads: object({
    uploads: { type: 'array', items: withReason(object({ upload_id: { type: 'string' }, ...uploadStatus })) },
  }),
  Files: object({
    files: {
      type: 'array',
      items: object({ upload_id: { type: 'string' }, filename: { type: 'string' }, status: STATUS }),
    },
  }),
  Deleted: object({
    status: { const: 'deleted' },
    upload_id: { type: 'string' },
    filename: { type: 'string' },
  }),
}

const json = (schema: string, description: string) => ({
  description,
  content: { 'application/json': { schema: { $ref: `#/components/schemas/${schema}` } } },
})
const error = (description: string) => json('Error', description)
const REQUEST_ID = {
  description: 'The id of this request, as the server logged it',
  schema: { type: 'string' },
}

const SPEED = {
  name: 'speed',
  in: 'query',
  description: 'Bytes per second; 0 means unlimited.',
  schema: { type: 'integer', minimum: 0 },
}

/** A list's filter by owner (issue 24): an admin's alone. */
const OWNER = {
  name: 'owner',
  in: 'query',
  description:
    "Only this owner's uploads (a token's `sub`). For an admin token; any other token may name only its own owner, and naming another is 403.",
  schema: { type: 'string', minLength: 1 },
}

/** `/api/upload/:id/pause` → `/api/upload/{upload_id}/pause`. */
export const openApiPath = (route: Route) => route.path.replace(':id', '{upload_id}')

/** Swagger UI's groups, in its order: each REST route is in one, by its path; tus is `resumable`. */
const TAGS = [
  { name: 'uploads', description: 'Send a file, and pause, resume, speed up, cancel or follow its upload' },
  { name: 'files', description: 'The stored files: list, download, delete' },
  { name: 'limits', description: 'Settings for the whole server' },
  {
    name: 'resumable',
    description: `Resumable uploads over tus 1.0 at ${TUS_PATH}/ (plain-text answers, as tus's)`,
  },
]
const tagOf = (route: Route): string =>
  route.path.startsWith('/api/files') ? 'files' : route.path.startsWith('/api/limits') ? 'limits' : 'uploads'

function operation(route: Route): Schema {
  const parameters: Schema[] = []
  if (route.path.includes(':id'))
    parameters.push({ name: 'upload_id', in: 'path', required: true, schema: { type: 'string' } })
  if (route.doc.speed) parameters.push(SPEED)
  if (route.list) parameters.push(OWNER)
  const responses: Record<string, unknown> = route.file
    ? {
        200: {
          description: 'The file',
          content: {
            'application/octet-stream': {
              schema: { type: 'string', contentMediaType: 'application/octet-stream' },
            },
          },
        },
        206: { description: 'The requested range of the file' },
        302: {
          description:
            'With S3_PRESIGN_DOWNLOADS: fetch the file from S3 at Location (a presigned GET, valid that long)',
        },
        304: { description: 'Not modified (If-None-Match)' },
        410: error('Recorded as completed, but its stored file is missing from storage: its bytes are lost'),
        416: error('Range not satisfiable'),
        503: error('Storage did not answer (S3 away): try again'),
      }
    : { 200: json(route.doc.schema, route.doc.summary) }
  if (route.path.includes(':id')) responses[404] = error('No such upload, or (download) no complete file')
  if (route.doc.state) responses[400] = error("The upload's state does not allow this")
  if (route.doc.speed || route.upload) responses[422] = error('Invalid input')
  if (route.upload) {
    responses[413] = error('The files of the request together are over MAX_UPLOAD_SIZE')
    responses[507] = error(
      'No room in storage for the file twice (staging, then the copy being written into place)',
    )
  }
  responses[401] = error('Missing or wrong token (only when API_TOKEN is set)')
  responses[403] = error(
    route.list
      ? "A browser page on another origin, a Host this service does not answer to, or another owner's uploads asked for by a token that is not an admin's"
      : 'A browser page on another origin, or a Host this service does not answer to',
  )
  if (route.method !== 'GET')
    responses[503] = error(
      'The change could not be saved now (nothing was changed), or storage did not answer; try again',
    )
  // Every answer names its request, for matching a report with the server's log.
  for (const response of Object.values(responses) as { headers?: unknown }[])
    response.headers = { 'x-request-id': REQUEST_ID }
  return {
    operationId: route.doc.id,
    tags: [tagOf(route)],
    summary: route.doc.summary,
    parameters,
    ...(route.upload
      ? {
          requestBody: {
            required: true,
            content: {
              'multipart/form-data': {
                schema: {
                  type: 'object',
                  properties: {
                    file: { type: 'string', contentMediaType: 'application/octet-stream' },
                    speed: {
                      type: 'integer',
                      minimum: 0,
                      description:
                        'Bytes per second, when the query gives none (both given: they must agree)',
                    },
                  },
                  required: ['file'],
                },
              },
            },
          },
        }
      : {}),
    responses,
  }
}

const TUS = { 'Tus-Resumable': { required: true, schema: { const: '1.0.0' } } }
const tusHeader = (name: string, description: string, schema: Schema = { type: 'integer', minimum: 0 }) => ({
  name,
  in: 'header',
  required: true,
  description,
  schema,
})
const tusAnswer = (description: string, headers: Record<string, string> = {}) => ({
  description,
  headers: {
    ...Object.fromEntries(
      Object.entries(headers).map(([name, about]) => [
        name,
        { description: about, schema: { type: 'string' } },
      ]),
    ),
    'x-request-id': REQUEST_ID,
  },
})
const tusRefusals = {
  401: tusAnswer('Missing or wrong token (only when API_TOKEN is set)'),
  403: tusAnswer('A browser page on another origin, or a Host this service does not answer to'),
  412: tusAnswer('No Tus-Resumable: 1.0.0 header'),
}
const uploadId = {
  name: 'id',
  in: 'path',
  required: true,
  schema: { type: 'string' },
  description: 'The upload id: the last segment of Location',
}

/**
 * tus 1.0 at /files/ (served by @tus/server; see https://tus.io/protocols/resumable-upload): documented
 * here so one description covers every way in. Bodies and errors are tus's (plain text), not JSON.
 */
export const tusOperations: Record<string, Record<string, Schema>> = {
  '/files/': {
    options: {
      operationId: 'tusOptions',
      tags: ['resumable'],
      summary: 'What this tus server supports: Tus-Version, Tus-Extension, Tus-Max-Size (= MAX_UPLOAD_SIZE)',
      responses: {
        204: tusAnswer('Capabilities', {
          'Tus-Version': '1.0.0',
          'Tus-Extension': 'creation,creation-with-upload,termination,expiration',
          'Tus-Max-Size': 'MAX_UPLOAD_SIZE',
        }),
        401: tusRefusals[401],
      },
    },
    post: {
      operationId: 'tusCreate',
      tags: ['resumable'],
      summary:
        'Create a resumable upload (RECEIVING from now on); Upload-Metadata: filename (or name), filetype, speed (bytes per second, 0 = unlimited). Bytes may come in the same request (creation-with-upload).',
      parameters: [
        { name: 'Tus-Resumable', in: 'header', ...TUS['Tus-Resumable'] },
        tusHeader('Upload-Length', 'The file’s size in bytes, at most MAX_UPLOAD_SIZE'),
        {
          ...tusHeader('Upload-Metadata', 'Comma-separated `key base64(value)` pairs', { type: 'string' }),
          required: false,
        },
      ],
      responses: {
        201: tusAnswer('Created', {
          Location: '/files/{id}: {id} is the upload’s id everywhere',
          'Upload-Expires': 'RESUMABLE_EXPIRY after the last byte',
          'Upload-Offset': 'With bytes in the request',
        }),
        400: tusAnswer(
          'Bad metadata (such as a speed that is not a whole number), before anything is stored',
        ),
        413: tusAnswer('Upload-Length over MAX_UPLOAD_SIZE'),
        507: tusAnswer('No room in storage for the file twice'),
        ...tusRefusals,
      },
    },
  },
  '/files/{id}': {
    get: {
      operationId: 'tusDownload',
      tags: ['resumable'],
      summary: 'The stored file: answered as GET /api/files/{id}/download is (same headers, ranges, errors)',
      parameters: [uploadId],
      responses: {
        200: tusAnswer('The file, with ETag (its sha256), Content-Disposition and Accept-Ranges'),
        206: tusAnswer('The requested range of the file'),
        304: tusAnswer('Not modified (If-None-Match)'),
        404: tusAnswer('No such upload, or not stored yet: {"detail"} says which'),
        410: tusAnswer('Recorded as completed, but its stored file is missing: {"detail"}'),
        416: tusAnswer('Range not satisfiable'),
        401: tusRefusals[401],
        403: tusRefusals[403],
      },
    },
    head: {
      operationId: 'tusOffset',
      tags: ['resumable'],
      summary:
        'Where to go on from: Upload-Offset is what the server has (after a dropped connection or a restart)',
      parameters: [uploadId, { name: 'Tus-Resumable', in: 'header', ...TUS['Tus-Resumable'] }],
      responses: {
        200: tusAnswer('The upload', {
          'Upload-Offset': 'Bytes received',
          'Upload-Length': 'Its size',
          'Upload-Expires': 'While it is receiving',
        }),
        404: tusAnswer('No such upload'),
        410: tusAnswer('Canceled, failed or expired: start again'),
        ...tusRefusals,
      },
    },
    patch: {
      operationId: 'tusAppend',
      tags: ['resumable'],
      summary:
        'Send bytes from Upload-Offset on (Content-Type: application/offset+octet-stream); the bytes that arrive are kept even if the connection drops. With the last byte, the throttled transfer starts.',
      parameters: [
        uploadId,
        { name: 'Tus-Resumable', in: 'header', ...TUS['Tus-Resumable'] },
        tusHeader('Upload-Offset', 'Must equal the server’s offset (HEAD)'),
      ],
      requestBody: {
        required: true,
        content: {
          'application/offset+octet-stream': {
            schema: { type: 'string', contentMediaType: 'application/octet-stream' },
          },
        },
      },
      responses: {
        204: tusAnswer('Stored', {
          'Upload-Offset': 'The new offset',
          'Upload-Expires': 'While more bytes are due',
        }),
        404: tusAnswer('No such upload'),
        409: tusAnswer('Upload-Offset is not the server’s offset'),
        410: tusAnswer('Canceled (possibly while this request arrived), failed or expired'),
        413: tusAnswer('More bytes than Upload-Length'),
        507: tusAnswer('No room in storage for the rest of the file twice'),
        ...tusRefusals,
      },
    },
    delete: {
      operationId: 'tusTerminate',
      tags: ['resumable'],
      summary: 'Termination: cancels the upload (as cancelUpload does) and removes its bytes',
      parameters: [uploadId, { name: 'Tus-Resumable', in: 'header', ...TUS['Tus-Resumable'] }],
      responses: {
        204: tusAnswer('Canceled'),
        400: tusAnswer('It has ended already'),
        404: tusAnswer('No such upload'),
        ...tusRefusals,
      },
    },
  },
}

export function openApiDocument(): Schema {
  const paths: Record<string, Record<string, Schema>> = { ...tusOperations }
  for (const route of routes)
    (paths[openApiPath(route)] ??= {})[route.method.toLowerCase()] = operation(route)
  return {
    openapi: '3.1.0',
    info: {
      title: 'Throttled upload service: REST API',
      version: '1.0.0',
      description:
        'The /api contract kept for curl users and scripts (every route runs a GraphQL operation on /graphql’s schema), and resumable uploads over tus 1.0 at /files/. Speeds are bytes per second; 0 is unlimited.',
    },
    components: {
      schemas,
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'Only when API_TOKEN is set' },
      },
    },
    security: [{}, { bearer: [] }],
    tags: TAGS,
    paths,
  }
}
