import { graphql } from './gql/index.js'

/**
 * The operations this client uses, typed from the server's schema by GraphQL Code Generator's client
 * preset (`npm run codegen` writes ./gql). Each document carries its result and variables types.
 */
export const UploadFile = graphql(`
  mutation UploadFile($file: File!, $speed: SafeInt) {
    uploadFile(file: $file, speed: $speed) {
      id
      filename
      status
      totalSize
      targetSpeed
      sha256
    }
  }
`)

export const PauseUpload = graphql(`
  mutation PauseUpload($id: ID!) {
    pauseUpload(id: $id) {
      id
      status
      uploadedSize
    }
  }
`)

export const ResumeUpload = graphql(`
  mutation ResumeUpload($id: ID!, $speed: SafeInt) {
    resumeUpload(id: $id, speed: $speed) {
      id
      status
      targetSpeed
    }
  }
`)

export const UploadProgress = graphql(`
  subscription UploadProgress($id: ID!) {
    uploadProgress(id: $id) {
      id
      status
      uploadedSize
      totalSize
      currentSpeed
    }
  }
`)
