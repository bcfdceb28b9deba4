/* eslint-disable */
/** Internal type. DO NOT USE DIRECTLY. */
type Exact<T extends { [key: string]: unknown }> = { [K in keyof T]: T[K] };
/** Internal type. DO NOT USE DIRECTLY. */
export type Incremental<T> = T | { [P in keyof T]?: P extends ' $fragmentName' | '__typename' ? T[P] : never };
import type { DocumentTypeDecoration } from '@graphql-typed-document-node/core';
export type UploadStatus =
  /** Stopped on request; its partial bytes were removed. */
  | 'CANCELED'
  /** The stored file is complete and its sha256 matches what was received. */
  | 'COMPLETED'
  /** Stopped by an error; see Upload.error. */
  | 'FAILED'
  /** Bytes are moving from staging into storage. */
  | 'IN_PROGRESS'
  /** Stopped on request; resumeUpload continues from the same byte. */
  | 'PAUSED'
  /**
   * The file is still arriving (receivedSize grows); its transfer into storage starts when the last byte is in.
   * A tus upload stays here across dropped connections and restarts until its sender finishes it, cancels it,
   * or it expires.
   */
  | 'RECEIVING';

export type UploadFileMutationVariables = Exact<{
  file: Blob | null;
  speed?: number | null | undefined;
}>;


export type UploadFileMutation = { uploadFile: { id: string, filename: string, status: UploadStatus, totalSize: number, targetSpeed: number, sha256: string } };

export type PauseUploadMutationVariables = Exact<{
  id: string;
}>;


export type PauseUploadMutation = { pauseUpload: { id: string, status: UploadStatus, uploadedSize: number } };

export type ResumeUploadMutationVariables = Exact<{
  id: string;
  speed?: number | null | undefined;
}>;


export type ResumeUploadMutation = { resumeUpload: { id: string, status: UploadStatus, targetSpeed: number } };

export type UploadProgressSubscriptionVariables = Exact<{
  id: string;
}>;


export type UploadProgressSubscription = { uploadProgress: { id: string, status: UploadStatus, uploadedSize: number, totalSize: number, currentSpeed: number } };

export class TypedDocumentString<TResult, TVariables>
  extends String
  implements DocumentTypeDecoration<TResult, TVariables>
{
  __apiType?: NonNullable<DocumentTypeDecoration<TResult, TVariables>['__apiType']>;
  private value: string;
  public __meta__?: Record<string, any> | undefined;

  constructor(value: string, __meta__?: Record<string, any> | undefined) {
    super(value);
    this.value = value;
    this.__meta__ = __meta__;
  }

  override toString(): string & DocumentTypeDecoration<TResult, TVariables> {
    return this.value;
  }
}

export const UploadFileDocument = new TypedDocumentString(`
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
    `) as unknown as TypedDocumentString<UploadFileMutation, UploadFileMutationVariables>;
export const PauseUploadDocument = new TypedDocumentString(`
    mutation PauseUpload($id: ID!) {
  pauseUpload(id: $id) {
    id
    status
    uploadedSize
  }
}
    `) as unknown as TypedDocumentString<PauseUploadMutation, PauseUploadMutationVariables>;
export const ResumeUploadDocument = new TypedDocumentString(`
    mutation ResumeUpload($id: ID!, $speed: SafeInt) {
  resumeUpload(id: $id, speed: $speed) {
    id
    status
    targetSpeed
  }
}
    `) as unknown as TypedDocumentString<ResumeUploadMutation, ResumeUploadMutationVariables>;
export const UploadProgressDocument = new TypedDocumentString(`
    subscription UploadProgress($id: ID!) {
  uploadProgress(id: $id) {
    id
    status
    uploadedSize
    totalSize
    currentSpeed
  }
}
    `) as unknown as TypedDocumentString<UploadProgressSubscription, UploadProgressSubscriptionVariables>;