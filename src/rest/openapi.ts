import { routes, type Route } from './routes.js'

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
  Status: object(uploadStatus),
  Uploads: object({
    uploads: { type: 'array', items: object({ upload_id: { type: 'string' }, ...uploadStatus }) },
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

/** `/api/upload/:id/pause` → `/api/upload/{upload_id}/pause`. */
export const openApiPath = (route: Route) => route.path.replace(':id', '{upload_id}')

function operation(route: Route): Schema {
  const parameters: Schema[] = []
  if (route.path.includes(':id'))
    parameters.push({ name: 'upload_id', in: 'path', required: true, schema: { type: 'string' } })
  if (route.doc.speed) parameters.push(SPEED)
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
        304: { description: 'Not modified (If-None-Match)' },
        416: error('Range not satisfiable'),
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
  responses[403] = error('A browser page on another origin, or a Host this service does not answer to')
  if (route.method !== 'GET')
    responses[503] = error('The change could not be saved now; nothing was changed, try again')
  // Every answer names its request, for matching a report with the server's log.
  for (const response of Object.values(responses) as { headers?: unknown }[])
    response.headers = { 'x-request-id': REQUEST_ID }
  return {
    operationId: route.doc.id,
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

export function openApiDocument(): Schema {
  const paths: Record<string, Record<string, Schema>> = {}
  for (const route of routes)
    (paths[openApiPath(route)] ??= {})[route.method.toLowerCase()] = operation(route)
  return {
    openapi: '3.1.0',
    info: {
      title: 'Throttled upload service: REST API',
      version: '1.0.0',
      description:
        'The /api contract kept for curl users and scripts. Every route runs a GraphQL operation on /graphql’s schema. Speeds are bytes per second; 0 is unlimited.',
    },
    components: {
      schemas,
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'Only when API_TOKEN is set' },
      },
    },
    security: [{}, { bearer: [] }],
    paths,
  }
}
