import type { Resolvers } from '../generated/graphql.js'
import type { UploadView } from '../model/record.js'
import { isStored, STORED } from '../core/machine.js'
import { SCOPE_NAMES } from '../auth/principal.js'
import { badInput } from '../errors.js'
import { encodeCursor, sortKey } from '../seams/records/order.js'
import { requireAdmin } from '../auth/rules.js'
import { hookDeliveries, retryHookDelivery } from './hook-deliveries.js'
import { DateTime, File, SafeInt } from './scalars.js'

/** The largest page `uploads(first:)` gives, as the schema says. */
export const MAX_PAGE = 1000

/** No `first`: every upload (the REST list's contract); otherwise a page of 1 to 1000. */
function pageSize(first: number | null | undefined): number {
  if (first == null) return Number.MAX_SAFE_INTEGER
  if (first < 1 || first > MAX_PAGE) throw badInput(`first must be from 1 to ${MAX_PAGE}; got ${first}`)
  return first
}

/** Thin on purpose: every rule lives in the upload service, so every transport obeys the same ones. */
export const resolvers: Resolvers = {
  SafeInt,
  DateTime,
  File,
  Upload: {
    downloadUrl: (upload, _, { downloadUrl, req }) =>
      isStored(upload.status) ? downloadUrl(upload, req) : null,
    cursor: (upload) => encodeCursor(sortKey(upload)),
    source: (upload) => (upload.source === 'tus' ? 'TUS' : 'MULTIPART'),
    removed: (upload) => upload.removed === true,
    acknowledgedSize: (upload, _, { service }) => service.acknowledgedSize(upload),
  },
  Query: {
    upload: (_, { id }, { service }) => service.get(id),
    uploads: async (_, { status, first, after, owner }, { service }) =>
      (
        await service.page({
          status: status ?? undefined,
          first: pageSize(first),
          after: after ?? undefined,
          owner: owner ?? undefined,
        })
      ).uploads,
    uploadCounts: async (_, __, { service }) => service.counts(),
    limits: (_, __, { service }) => service.limits(),
    me: async (_, __, { principal, service }) => ({
      sub: principal.sub,
      admin: principal.scopes.admin,
      scopes: Object.entries(SCOPE_NAMES)
        .filter(([scope]) => principal.scopes[scope as keyof typeof SCOPE_NAMES])
        .map(([, name]) => name),
      quotas: principal.quotas,
      usage: await service.usage(),
    }),
    files: async (_, __, { service }) =>
      (await service.page({ first: Number.MAX_SAFE_INTEGER, status: STORED })).uploads,
    // Every upload's events (and so other users' ids): for admins only.
    hookDeliveries: (_, { first }, { hooks, principal }) => {
      requireAdmin(principal)
      return hookDeliveries(hooks, first)
    },
  },
  Mutation: {
    uploadFile: (_, { file, speed }, { service }) => service.create(file, speed),
    pauseUpload: (_, { id }, { service }) => service.pause(id),
    resumeUpload: (_, { id, speed }, { service }) => service.resume(id, speed),
    setSpeed: (_, { id, speed }, { service }) => service.setSpeed(id, speed),
    cancelUpload: (_, { id }, { service }) => service.cancel(id),
    deleteFile: (_, { id, keepFile }, { service }) => service.delete(id, keepFile ?? false),
    clearUploads: (_, { status, keepFiles }, { service }) =>
      service.clear(status ?? undefined, keepFiles ?? false),
    setMaxTotalSpeed: (_, { speed }, { service }) => service.setMaxTotalSpeed(speed),
    retryHookDelivery: (_, { eventId }, { hooks, principal }) => {
      requireAdmin(principal)
      return retryHookDelivery(hooks, eventId)
    },
  },
  Subscription: {
    uploadProgress: {
      subscribe: (_, { id }, { service }) => service.watch(id ?? undefined),
      resolve: (upload: UploadView) => upload,
    },
  },
}
