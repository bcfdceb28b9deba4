/* eslint-disable */
import * as types from './graphql.js';



/**
 * Map of all GraphQL operations in the project.
 *
 * This map has several performance disadvantages:
 * 1. It is not tree-shakeable, so it will include all operations in the project.
 * 2. It is not minifiable, so the string of a GraphQL query will be multiple times inside the bundle.
 * 3. It does not support dead code elimination, so it will add unused operations.
 *
 * Therefore it is highly recommended to use the babel or swc plugin for production.
 * Learn more about it here: https://the-guild.dev/graphql/codegen/plugins/presets/preset-client#reducing-bundle-size
 */
type Documents = {
    "\n  mutation UploadFile($file: File!, $speed: SafeInt) {\n    uploadFile(file: $file, speed: $speed) {\n      id\n      filename\n      status\n      totalSize\n      targetSpeed\n      sha256\n    }\n  }\n": typeof types.UploadFileDocument,
    "\n  mutation PauseUpload($id: ID!) {\n    pauseUpload(id: $id) {\n      id\n      status\n      uploadedSize\n    }\n  }\n": typeof types.PauseUploadDocument,
    "\n  mutation ResumeUpload($id: ID!, $speed: SafeInt) {\n    resumeUpload(id: $id, speed: $speed) {\n      id\n      status\n      targetSpeed\n    }\n  }\n": typeof types.ResumeUploadDocument,
    "\n  subscription UploadProgress($id: ID!) {\n    uploadProgress(id: $id) {\n      id\n      status\n      uploadedSize\n      totalSize\n      currentSpeed\n    }\n  }\n": typeof types.UploadProgressDocument,
};
const documents: Documents = {
    "\n  mutation UploadFile($file: File!, $speed: SafeInt) {\n    uploadFile(file: $file, speed: $speed) {\n      id\n      filename\n      status\n      totalSize\n      targetSpeed\n      sha256\n    }\n  }\n": types.UploadFileDocument,
    "\n  mutation PauseUpload($id: ID!) {\n    pauseUpload(id: $id) {\n      id\n      status\n      uploadedSize\n    }\n  }\n": types.PauseUploadDocument,
    "\n  mutation ResumeUpload($id: ID!, $speed: SafeInt) {\n    resumeUpload(id: $id, speed: $speed) {\n      id\n      status\n      targetSpeed\n    }\n  }\n": types.ResumeUploadDocument,
    "\n  subscription UploadProgress($id: ID!) {\n    uploadProgress(id: $id) {\n      id\n      status\n      uploadedSize\n      totalSize\n      currentSpeed\n    }\n  }\n": types.UploadProgressDocument,
};

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation UploadFile($file: File!, $speed: SafeInt) {\n    uploadFile(file: $file, speed: $speed) {\n      id\n      filename\n      status\n      totalSize\n      targetSpeed\n      sha256\n    }\n  }\n"): typeof import('./graphql.js').UploadFileDocument;
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation PauseUpload($id: ID!) {\n    pauseUpload(id: $id) {\n      id\n      status\n      uploadedSize\n    }\n  }\n"): typeof import('./graphql.js').PauseUploadDocument;
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation ResumeUpload($id: ID!, $speed: SafeInt) {\n    resumeUpload(id: $id, speed: $speed) {\n      id\n      status\n      targetSpeed\n    }\n  }\n"): typeof import('./graphql.js').ResumeUploadDocument;
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  subscription UploadProgress($id: ID!) {\n    uploadProgress(id: $id) {\n      id\n      status\n      uploadedSize\n      totalSize\n      currentSpeed\n    }\n  }\n"): typeof import('./graphql.js').UploadProgressDocument;


export function graphql(source: string) {
  return (documents as any)[source] ?? {};
}
