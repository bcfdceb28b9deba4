import type { Resolvers } from '../generated/graphql.js'
import type { UploadView } from '../uploads/record.js'
import { DateTime, File, SafeInt } from './scalars.js'

/** Thin on purpose: every rule lives in the upload service, so every transport obeys the same ones. */
export const resolvers: Resolvers = {
  SafeInt,
  DateTime,
  File,
  Upload: {
    downloadUrl: (upload, _, { downloadPath }) =>
      upload.status === 'COMPLETED' ? downloadPath(upload.id) : null,
  },
  Query: {
    upload: (_, { id }, { service }) => service.get(id),
    uploads: async (_, __, { service }) => (await service.page({ first: Number.MAX_SAFE_INTEGER })).uploads,
    files: async (_, __, { service }) =>
      (await service.page({ first: Number.MAX_SAFE_INTEGER, status: ['COMPLETED'] })).uploads,
  },
  Mutation: {
    uploadFile: (_, { file, speed }, { service }) => service.create(file, speed),
    pauseUpload: (_, { id }, { service }) => service.pause(id),
    resumeUpload: (_, { id, speed }, { service }) => service.resume(id, speed),
    setSpeed: (_, { id, speed }, { service }) => service.setSpeed(id, speed),
    cancelUpload: (_, { id }, { service }) => service.cancel(id),
    deleteFile: (_, { id }, { service }) => service.delete(id),
  },
  Subscription: {
    uploadProgress: {
      subscribe: (_, { id }, { service }) => service.watch(id ?? undefined),
      resolve: (upload: UploadView) => upload,
    },
  },
}
