import type { IncomingFile } from '../core/ingest/ingest.js';
import type { GraphQLResolveInfo, GraphQLScalarType, GraphQLScalarTypeConfig } from 'graphql';
import type { UploadView } from '../model/record.js';
import type { Context } from '../graphql/context.js';
export type Maybe<T> = T | null;
export type InputMaybe<T> = Maybe<T>;
export type RequireFields<T, K extends keyof T> = Omit<T, K> & { [P in K]-?: NonNullable<T[P]> };
/** All built-in and custom scalars, mapped to their actual values */
export type Scalars = {
  ID: { input: string; output: string; }
  String: { input: string; output: string; }
  Boolean: { input: boolean; output: boolean; }
  Int: { input: number; output: number; }
  Float: { input: number; output: number; }
  /** An instant in time, as an ISO 8601 string in UTC. */
  DateTime: { input: string; output: string; }
  /**
   * A file part of a GraphQL multipart request (https://github.com/jaydenseric/graphql-multipart-request-spec).
   * The server streams it to a staging file while the request arrives; it is never held in memory.
   */
  File: { input: IncomingFile; output: IncomingFile; }
  /**
   * A whole number between -(2^53 - 1) and 2^53 - 1, sent as a JSON number.
   * Byte counts and speeds use it because GraphQL's Int stops at 2 GiB.
   */
  SafeInt: { input: number; output: number; }
};

export type HookDeliveries = {
  __typename?: 'HookDeliveries';
  deadLetterCount: Scalars['Int']['output'];
  deadLetters: Array<HookDelivery>;
  pending: Array<HookDelivery>;
  pendingCount: Scalars['Int']['output'];
};

/** A notification the user's backend has not acknowledged yet (or, dead-lettered, never did). */
export type HookDelivery = {
  __typename?: 'HookDelivery';
  /** Attempts made and failed so far. */
  attempts: Scalars['Int']['output'];
  /** When the change that caused it happened. */
  createdAt: Scalars['DateTime']['output'];
  /** When it was given up on (dead letters only). */
  deadAt?: Maybe<Scalars['DateTime']['output']>;
  /** The event's id, as sent in its body: the same on every attempt. */
  eventId: Scalars['ID']['output'];
  /** Why the last attempt failed (the receiver's status, or no answer in time). */
  lastError?: Maybe<Scalars['String']['output']>;
  /** When it is next sent (pending ones only). */
  nextAttemptAt?: Maybe<Scalars['DateTime']['output']>;
  /** received, completed, failed, canceled or deleted. */
  type: Scalars['String']['output'];
  uploadId: Scalars['ID']['output'];
};

/** Settings of the whole service, which apply to every transfer. */
export type Limits = {
  __typename?: 'Limits';
  /**
   * Bytes per second for all the transfers of one instance together (0: no cap). Uploads share it max-min
   * fairly: one that asks less than an even share gets its own speed, and the others split the rest.
   */
  maxTotalSpeed: Scalars['SafeInt']['output'];
};

/** Who is calling, as the server sees their token. */
export type Me = {
  __typename?: 'Me';
  /** Whether the token reaches every user's uploads (uploads:admin, or API_TOKEN). */
  admin: Scalars['Boolean']['output'];
  quotas: Quotas;
  /** The scopes the token carries: uploads:read, uploads:write, uploads:admin. */
  scopes: Array<Scalars['String']['output']>;
  /** The token's `sub`: the owner of what this caller creates; null for the operator (API_TOKEN, or no auth). */
  sub?: Maybe<Scalars['String']['output']>;
  usage: Usage;
};

export type Mutation = {
  __typename?: 'Mutation';
  /**
   * Stop a RECEIVING, IN_PROGRESS or PAUSED upload for good and remove its partial bytes. A file still arriving
   * is refused: its request ends with an error and no more of it is read.
   */
  cancelUpload: Upload;
  /**
   * Remove every ended upload in `status` (by default all of COMPLETED, CANCELED and FAILED), as deleteFile
   * does, with or without their files. Answers with how many were removed. Running and paused ones are never
   * touched (asking for them is BAD_USER_INPUT).
   */
  clearUploads: Scalars['Int']['output'];
  /**
   * Remove an upload that has ended (COMPLETED, CANCELED or FAILED): its stored file and its record; with
   * `keepFile`, only the record, and a completed upload's file stays in the storage folder under its stored
   * name. A running or paused upload must be canceled first (INVALID_STATE). Answers with the record as it was.
   */
  deleteFile: Upload;
  /**
   * Stop writing bytes. Only an IN_PROGRESS upload can be paused (else INVALID_STATE); one still RECEIVING is
   * paused by its sender, which stops sending.
   */
  pauseUpload: Upload;
  /** Continue a PAUSED upload from where it stopped, at a new speed when one is given. */
  resumeUpload: Upload;
  /**
   * Sends a dead-lettered hook notification again: it goes back at the end of its upload's queue, due at once,
   * with HOOKS_MAX_AGE counted afresh. NOT_FOUND when no dead letter has that id (or without HOOKS_URL).
   */
  retryHookDelivery: HookDelivery;
  /**
   * A new cap on the speed of all transfers together, in bytes per second (0: no cap), on every instance at
   * once; running transfers take it within a few milliseconds. It holds until the next start, when
   * MAX_TOTAL_SPEED sets it. BAD_USER_INPUT for a speed that is not a whole number of 0 or more.
   */
  setMaxTotalSpeed: Limits;
  /**
   * A new speed in bytes per second (0 = unlimited). An IN_PROGRESS upload takes it within one chunk, without
   * a pause; a PAUSED one keeps it for its resume. Errors as resumeUpload does (BAD_USER_INPUT, INVALID_STATE).
   */
  setSpeed: Upload;
  /**
   * Receive a file and start writing it into storage at `speed` bytes per second
   * (the server's default speed when omitted, unlimited when 0). Answers as soon as the file has arrived.
   */
  uploadFile: Upload;
};


export type MutationCancelUploadArgs = {
  id: Scalars['ID']['input'];
};


export type MutationClearUploadsArgs = {
  keepFiles?: InputMaybe<Scalars['Boolean']['input']>;
  status?: InputMaybe<Array<UploadStatus>>;
};


export type MutationDeleteFileArgs = {
  id: Scalars['ID']['input'];
  keepFile?: InputMaybe<Scalars['Boolean']['input']>;
};


export type MutationPauseUploadArgs = {
  id: Scalars['ID']['input'];
};


export type MutationResumeUploadArgs = {
  id: Scalars['ID']['input'];
  speed?: InputMaybe<Scalars['SafeInt']['input']>;
};


export type MutationRetryHookDeliveryArgs = {
  eventId: Scalars['ID']['input'];
};


export type MutationSetMaxTotalSpeedArgs = {
  speed: Scalars['SafeInt']['input'];
};


export type MutationSetSpeedArgs = {
  id: Scalars['ID']['input'];
  speed: Scalars['SafeInt']['input'];
};


export type MutationUploadFileArgs = {
  file: Scalars['File']['input'];
  speed?: InputMaybe<Scalars['SafeInt']['input']>;
};

export type Query = {
  __typename?: 'Query';
  /** The uploads whose complete file is in storage. */
  files: Array<Upload>;
  /**
   * Hook notifications (HOOKS_URL) not delivered yet, and those given up on after HOOKS_MAX_AGE (dead letters),
   * oldest first, at most `first` of each (default 100, at most 1000), with their counts across every instance.
   * Empty without HOOKS_URL.
   */
  hookDeliveries: HookDeliveries;
  /** The server-wide limits now in force. */
  limits: Limits;
  /** Who is calling: their scopes, quotas and usage. */
  me: Me;
  /** One upload by id. Errors with NOT_FOUND when there is none. */
  upload: Upload;
  /** How many uploads are in each state. */
  uploadCounts: UploadCounts;
  /**
   * Uploads, oldest first: all of them by default, or a page. `status` keeps only those states; `first` is the
   * page size (at most 1000); `after` is the `cursor` of the last upload of the previous page. A page shorter
   * than `first` is the last one. A user sees only their own uploads; an admin sees everyone's, or one
   * owner's with `owner` (a user naming another owner is FORBIDDEN).
   */
  uploads: Array<Upload>;
};


export type QueryHookDeliveriesArgs = {
  first?: InputMaybe<Scalars['Int']['input']>;
};


export type QueryUploadArgs = {
  id: Scalars['ID']['input'];
};


export type QueryUploadsArgs = {
  after?: InputMaybe<Scalars['String']['input']>;
  first?: InputMaybe<Scalars['Int']['input']>;
  owner?: InputMaybe<Scalars['String']['input']>;
  status?: InputMaybe<Array<UploadStatus>>;
};

/** Per-user limits, from the server's AUTH_QUOTA_* defaults or the token's quota claim (0: no limit). */
export type Quotas = {
  __typename?: 'Quotas';
  /** Bytes the caller's uploads may hold at once. */
  bytes: Scalars['SafeInt']['output'];
  /** Uploads of the caller receiving or transferring at once. */
  running: Scalars['Int']['output'];
  /** The highest speed (bytes per second) the caller may ask for. */
  speed: Scalars['SafeInt']['output'];
};

export type Subscription = {
  __typename?: 'Subscription';
  /**
   * Live state of one upload (or, without `id`, of every upload): first its current state, then an event on
   * every status change, about ten a second while bytes move, and one with `removed` when an upload leaves the
   * record. Ends when a followed upload reaches COMPLETED, CANCELED or FAILED. A slow reader gets the latest state of each upload, never a backlog.
   */
  uploadProgress: Upload;
};


export type SubscriptionUploadProgressArgs = {
  id?: InputMaybe<Scalars['ID']['input']>;
};

export type Upload = {
  __typename?: 'Upload';
  /**
   * Of uploadedSize, the bytes storage has acknowledged as kept: a pause, a restart or another instance taking
   * the upload over goes on from at least here. It goes back only if storage turns out not to hold what it
   * acknowledged (changed or removed behind the server), and then those bytes are sent again. In an S3 bucket, the parts S3 has
   * answered for (each part is 5 MiB, more for files over 50 GB): it moves a part at a time, behind
   * uploadedSize, and equals totalSize once the last part is acknowledged. On a local folder every byte sent
   * is kept as it is written, so it equals uploadedSize. 0 while RECEIVING.
   */
  acknowledgedSize: Scalars['SafeInt']['output'];
  completedAt?: Maybe<Scalars['DateTime']['output']>;
  createdAt: Scalars['DateTime']['output'];
  /**
   * Bytes per second over about the last second, rounded to a whole number: arriving while RECEIVING, written
   * into storage while IN_PROGRESS; 0 otherwise.
   */
  currentSpeed: Scalars['SafeInt']['output'];
  /** Where this upload is in the list: pass it as `after` to get the uploads that follow it. */
  cursor: Scalars['String']['output'];
  /**
   * Where to download the stored file (HTTP Range supported); null until the upload is COMPLETED. A full URL
   * when the server knows its public address (PUBLIC_URL, or a trusted proxy's Forwarded / X-Forwarded-*
   * headers: TRUST_PROXY); otherwise a path from the server's root, to join to the address you called.
   */
  downloadUrl?: Maybe<Scalars['String']['output']>;
  /** Why the upload failed, when it did. */
  error?: Maybe<Scalars['String']['output']>;
  /** A tus upload still RECEIVING is removed at this time unless more bytes arrive; null otherwise. */
  expiresAt?: Maybe<Scalars['DateTime']['output']>;
  /** The name the client sent, kept for display. */
  filename: Scalars['String']['output'];
  id: Scalars['ID']['output'];
  /** Who created it: their token's `sub`; null for the operator's (API_TOKEN, or no auth) and older uploads. */
  owner?: Maybe<Scalars['String']['output']>;
  /** When its last byte arrived and its transfer could start; null while RECEIVING. */
  receivedAt?: Maybe<Scalars['DateTime']['output']>;
  /** Bytes received from the client so far; all of them once it is past RECEIVING. */
  receivedSize: Scalars['SafeInt']['output'];
  /**
   * True only in the uploadProgress event that says this upload has left the record: deleted (deleteFile,
   * clearUploads), or a multipart file whose request ended before all of it arrived (that event is FAILED, with
   * the reason). A live list drops it; queries never see it true.
   */
  removed: Scalars['Boolean']['output'];
  /** Hex sha256 of the bytes received; empty while RECEIVING. */
  sha256: Scalars['String']['output'];
  /** How the file arrived: MULTIPART (one request) or TUS (resumable). */
  source: UploadSource;
  status: UploadStatus;
  /** The file's name inside the storage folder: {id}_{sanitised filename}. */
  storedName: Scalars['String']['output'];
  /** Bytes per second asked for; 0 means unlimited. */
  targetSpeed: Scalars['SafeInt']['output'];
  /** The file's size; for a multipart upload still RECEIVING, 0 until it has arrived (its length is not sent). */
  totalSize: Scalars['SafeInt']['output'];
  updatedAt: Scalars['DateTime']['output'];
  /**
   * Bytes sent into storage so far: a smooth count, chunk by chunk at the upload's speed. Storage may not have
   * acknowledged all of them yet (see acknowledgedSize); when a transfer is paused or its server stops, the
   * count goes back to acknowledgedSize, and those bytes are sent again.
   */
  uploadedSize: Scalars['SafeInt']['output'];
};

/** How many uploads are on record in each state. */
export type UploadCounts = {
  __typename?: 'UploadCounts';
  canceled: Scalars['Int']['output'];
  completed: Scalars['Int']['output'];
  failed: Scalars['Int']['output'];
  inProgress: Scalars['Int']['output'];
  paused: Scalars['Int']['output'];
  receiving: Scalars['Int']['output'];
  total: Scalars['Int']['output'];
};

export type UploadSource =
  | 'MULTIPART'
  | 'TUS';

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

/** What the caller holds now, counted over every instance. */
export type Usage = {
  __typename?: 'Usage';
  /** Total size of the caller's uploads that are not canceled or failed. */
  bytesStored: Scalars['SafeInt']['output'];
  /** The caller's uploads receiving or transferring. */
  running: Scalars['Int']['output'];
};

export type WithIndex<TObject> = TObject & Record<string, any>;
export type ResolversObject<TObject> = WithIndex<TObject>;

export type ResolverTypeWrapper<T> = Promise<T> | T;


export type ResolverWithResolve<TResult, TParent, TContext, TArgs> = {
  resolve: ResolverFn<TResult, TParent, TContext, TArgs>;
};
export type Resolver<TResult, TParent = Record<PropertyKey, never>, TContext = Record<PropertyKey, never>, TArgs = Record<PropertyKey, never>> = ResolverFn<TResult, TParent, TContext, TArgs> | ResolverWithResolve<TResult, TParent, TContext, TArgs>;

export type ResolverFn<TResult, TParent, TContext, TArgs> = (
  parent: TParent,
  args: TArgs,
  context: TContext,
  info: GraphQLResolveInfo
) => Promise<TResult> | TResult;

export type SubscriptionSubscribeFn<TResult, TParent, TContext, TArgs> = (
  parent: TParent,
  args: TArgs,
  context: TContext,
  info: GraphQLResolveInfo
) => AsyncIterable<TResult> | Promise<AsyncIterable<TResult>>;

export type SubscriptionResolveFn<TResult, TParent, TContext, TArgs> = (
  parent: TParent,
  args: TArgs,
  context: TContext,
  info: GraphQLResolveInfo
) => TResult | Promise<TResult>;

export interface SubscriptionSubscriberObject<TResult, TKey extends string, TParent, TContext, TArgs> {
  subscribe: SubscriptionSubscribeFn<{ [key in TKey]: TResult }, TParent, TContext, TArgs>;
  resolve?: SubscriptionResolveFn<TResult, { [key in TKey]: TResult }, TContext, TArgs>;
}

export interface SubscriptionResolverObject<TResult, TParent, TContext, TArgs> {
  subscribe: SubscriptionSubscribeFn<any, TParent, TContext, TArgs>;
  resolve: SubscriptionResolveFn<TResult, any, TContext, TArgs>;
}

export type SubscriptionObject<TResult, TKey extends string, TParent, TContext, TArgs> =
  | SubscriptionSubscriberObject<TResult, TKey, TParent, TContext, TArgs>
  | SubscriptionResolverObject<TResult, TParent, TContext, TArgs>;

export type SubscriptionResolver<TResult, TKey extends string, TParent = Record<PropertyKey, never>, TContext = Record<PropertyKey, never>, TArgs = Record<PropertyKey, never>> =
  | ((...args: any[]) => SubscriptionObject<TResult, TKey, TParent, TContext, TArgs>)
  | SubscriptionObject<TResult, TKey, TParent, TContext, TArgs>;

export type TypeResolveFn<TTypes, TParent = Record<PropertyKey, never>, TContext = Record<PropertyKey, never>> = (
  parent: TParent,
  context: TContext,
  info: GraphQLResolveInfo
) => Maybe<TTypes> | Promise<Maybe<TTypes>>;

export type IsTypeOfResolverFn<T = Record<PropertyKey, never>, TContext = Record<PropertyKey, never>> = (obj: T, context: TContext, info: GraphQLResolveInfo) => boolean | Promise<boolean>;

export type NextResolverFn<T> = () => Promise<T>;

export type DirectiveResolverFn<TResult = Record<PropertyKey, never>, TParent = Record<PropertyKey, never>, TContext = Record<PropertyKey, never>, TArgs = Record<PropertyKey, never>> = (
  next: NextResolverFn<TResult>,
  parent: TParent,
  args: TArgs,
  context: TContext,
  info: GraphQLResolveInfo
) => TResult | Promise<TResult>;





/** Mapping between all available schema types and the resolvers types */
export type ResolversTypes = ResolversObject<{
  Boolean: ResolverTypeWrapper<Scalars['Boolean']['output']>;
  DateTime: ResolverTypeWrapper<Scalars['DateTime']['output']>;
  File: ResolverTypeWrapper<Scalars['File']['output']>;
  HookDeliveries: ResolverTypeWrapper<HookDeliveries>;
  HookDelivery: ResolverTypeWrapper<HookDelivery>;
  ID: ResolverTypeWrapper<Scalars['ID']['output']>;
  Int: ResolverTypeWrapper<Scalars['Int']['output']>;
  Limits: ResolverTypeWrapper<Limits>;
  Me: ResolverTypeWrapper<Me>;
  Mutation: ResolverTypeWrapper<Record<PropertyKey, never>>;
  Query: ResolverTypeWrapper<Record<PropertyKey, never>>;
  Quotas: ResolverTypeWrapper<Quotas>;
  SafeInt: ResolverTypeWrapper<Scalars['SafeInt']['output']>;
  String: ResolverTypeWrapper<Scalars['String']['output']>;
  Subscription: ResolverTypeWrapper<Record<PropertyKey, never>>;
  Upload: ResolverTypeWrapper<UploadView>;
  UploadCounts: ResolverTypeWrapper<UploadCounts>;
  UploadSource: UploadSource;
  UploadStatus: UploadStatus;
  Usage: ResolverTypeWrapper<Usage>;
}>;

/** Mapping between all available schema types and the resolvers parents */
export type ResolversParentTypes = ResolversObject<{
  Boolean: Scalars['Boolean']['output'];
  DateTime: Scalars['DateTime']['output'];
  File: Scalars['File']['output'];
  HookDeliveries: HookDeliveries;
  HookDelivery: HookDelivery;
  ID: Scalars['ID']['output'];
  Int: Scalars['Int']['output'];
  Limits: Limits;
  Me: Me;
  Mutation: Record<PropertyKey, never>;
  Query: Record<PropertyKey, never>;
  Quotas: Quotas;
  SafeInt: Scalars['SafeInt']['output'];
  String: Scalars['String']['output'];
  Subscription: Record<PropertyKey, never>;
  Upload: UploadView;
  UploadCounts: UploadCounts;
  Usage: Usage;
}>;

export interface DateTimeScalarConfig extends GraphQLScalarTypeConfig<ResolversTypes['DateTime'], any> {
  name: 'DateTime';
}

export interface FileScalarConfig extends GraphQLScalarTypeConfig<ResolversTypes['File'], any> {
  name: 'File';
}

export type HookDeliveriesResolvers<ContextType = Context, ParentType extends ResolversParentTypes['HookDeliveries'] = ResolversParentTypes['HookDeliveries']> = ResolversObject<{
  deadLetterCount?: Resolver<ResolversTypes['Int'], ParentType, ContextType>;
  deadLetters?: Resolver<Array<ResolversTypes['HookDelivery']>, ParentType, ContextType>;
  pending?: Resolver<Array<ResolversTypes['HookDelivery']>, ParentType, ContextType>;
  pendingCount?: Resolver<ResolversTypes['Int'], ParentType, ContextType>;
}>;

export type HookDeliveryResolvers<ContextType = Context, ParentType extends ResolversParentTypes['HookDelivery'] = ResolversParentTypes['HookDelivery']> = ResolversObject<{
  attempts?: Resolver<ResolversTypes['Int'], ParentType, ContextType>;
  createdAt?: Resolver<ResolversTypes['DateTime'], ParentType, ContextType>;
  deadAt?: Resolver<Maybe<ResolversTypes['DateTime']>, ParentType, ContextType>;
  eventId?: Resolver<ResolversTypes['ID'], ParentType, ContextType>;
  lastError?: Resolver<Maybe<ResolversTypes['String']>, ParentType, ContextType>;
  nextAttemptAt?: Resolver<Maybe<ResolversTypes['DateTime']>, ParentType, ContextType>;
  type?: Resolver<ResolversTypes['String'], ParentType, ContextType>;
  uploadId?: Resolver<ResolversTypes['ID'], ParentType, ContextType>;
}>;

export type LimitsResolvers<ContextType = Context, ParentType extends ResolversParentTypes['Limits'] = ResolversParentTypes['Limits']> = ResolversObject<{
  maxTotalSpeed?: Resolver<ResolversTypes['SafeInt'], ParentType, ContextType>;
}>;

export type MeResolvers<ContextType = Context, ParentType extends ResolversParentTypes['Me'] = ResolversParentTypes['Me']> = ResolversObject<{
  admin?: Resolver<ResolversTypes['Boolean'], ParentType, ContextType>;
  quotas?: Resolver<ResolversTypes['Quotas'], ParentType, ContextType>;
  scopes?: Resolver<Array<ResolversTypes['String']>, ParentType, ContextType>;
  sub?: Resolver<Maybe<ResolversTypes['String']>, ParentType, ContextType>;
  usage?: Resolver<ResolversTypes['Usage'], ParentType, ContextType>;
}>;

export type MutationResolvers<ContextType = Context, ParentType extends ResolversParentTypes['Mutation'] = ResolversParentTypes['Mutation']> = ResolversObject<{
  cancelUpload?: Resolver<ResolversTypes['Upload'], ParentType, ContextType, RequireFields<MutationCancelUploadArgs, 'id'>>;
  clearUploads?: Resolver<ResolversTypes['Int'], ParentType, ContextType, RequireFields<MutationClearUploadsArgs, 'keepFiles'>>;
  deleteFile?: Resolver<ResolversTypes['Upload'], ParentType, ContextType, RequireFields<MutationDeleteFileArgs, 'id' | 'keepFile'>>;
  pauseUpload?: Resolver<ResolversTypes['Upload'], ParentType, ContextType, RequireFields<MutationPauseUploadArgs, 'id'>>;
  resumeUpload?: Resolver<ResolversTypes['Upload'], ParentType, ContextType, RequireFields<MutationResumeUploadArgs, 'id'>>;
  retryHookDelivery?: Resolver<ResolversTypes['HookDelivery'], ParentType, ContextType, RequireFields<MutationRetryHookDeliveryArgs, 'eventId'>>;
  setMaxTotalSpeed?: Resolver<ResolversTypes['Limits'], ParentType, ContextType, RequireFields<MutationSetMaxTotalSpeedArgs, 'speed'>>;
  setSpeed?: Resolver<ResolversTypes['Upload'], ParentType, ContextType, RequireFields<MutationSetSpeedArgs, 'id' | 'speed'>>;
  uploadFile?: Resolver<ResolversTypes['Upload'], ParentType, ContextType, RequireFields<MutationUploadFileArgs, 'file'>>;
}>;

export type QueryResolvers<ContextType = Context, ParentType extends ResolversParentTypes['Query'] = ResolversParentTypes['Query']> = ResolversObject<{
  files?: Resolver<Array<ResolversTypes['Upload']>, ParentType, ContextType>;
  hookDeliveries?: Resolver<ResolversTypes['HookDeliveries'], ParentType, ContextType, Partial<QueryHookDeliveriesArgs>>;
  limits?: Resolver<ResolversTypes['Limits'], ParentType, ContextType>;
  me?: Resolver<ResolversTypes['Me'], ParentType, ContextType>;
  upload?: Resolver<ResolversTypes['Upload'], ParentType, ContextType, RequireFields<QueryUploadArgs, 'id'>>;
  uploadCounts?: Resolver<ResolversTypes['UploadCounts'], ParentType, ContextType>;
  uploads?: Resolver<Array<ResolversTypes['Upload']>, ParentType, ContextType, Partial<QueryUploadsArgs>>;
}>;

export type QuotasResolvers<ContextType = Context, ParentType extends ResolversParentTypes['Quotas'] = ResolversParentTypes['Quotas']> = ResolversObject<{
  bytes?: Resolver<ResolversTypes['SafeInt'], ParentType, ContextType>;
  running?: Resolver<ResolversTypes['Int'], ParentType, ContextType>;
  speed?: Resolver<ResolversTypes['SafeInt'], ParentType, ContextType>;
}>;

export interface SafeIntScalarConfig extends GraphQLScalarTypeConfig<ResolversTypes['SafeInt'], any> {
  name: 'SafeInt';
}

export type SubscriptionResolvers<ContextType = Context, ParentType extends ResolversParentTypes['Subscription'] = ResolversParentTypes['Subscription']> = ResolversObject<{
  uploadProgress?: SubscriptionResolver<ResolversTypes['Upload'], "uploadProgress", ParentType, ContextType, Partial<SubscriptionUploadProgressArgs>>;
}>;

export type UploadResolvers<ContextType = Context, ParentType extends ResolversParentTypes['Upload'] = ResolversParentTypes['Upload']> = ResolversObject<{
  acknowledgedSize?: Resolver<ResolversTypes['SafeInt'], ParentType, ContextType>;
  completedAt?: Resolver<Maybe<ResolversTypes['DateTime']>, ParentType, ContextType>;
  createdAt?: Resolver<ResolversTypes['DateTime'], ParentType, ContextType>;
  currentSpeed?: Resolver<ResolversTypes['SafeInt'], ParentType, ContextType>;
  cursor?: Resolver<ResolversTypes['String'], ParentType, ContextType>;
  downloadUrl?: Resolver<Maybe<ResolversTypes['String']>, ParentType, ContextType>;
  error?: Resolver<Maybe<ResolversTypes['String']>, ParentType, ContextType>;
  expiresAt?: Resolver<Maybe<ResolversTypes['DateTime']>, ParentType, ContextType>;
  filename?: Resolver<ResolversTypes['String'], ParentType, ContextType>;
  id?: Resolver<ResolversTypes['ID'], ParentType, ContextType>;
  owner?: Resolver<Maybe<ResolversTypes['String']>, ParentType, ContextType>;
  receivedAt?: Resolver<Maybe<ResolversTypes['DateTime']>, ParentType, ContextType>;
  receivedSize?: Resolver<ResolversTypes['SafeInt'], ParentType, ContextType>;
  removed?: Resolver<ResolversTypes['Boolean'], ParentType, ContextType>;
  sha256?: Resolver<ResolversTypes['String'], ParentType, ContextType>;
  source?: Resolver<ResolversTypes['UploadSource'], ParentType, ContextType>;
  status?: Resolver<ResolversTypes['UploadStatus'], ParentType, ContextType>;
  storedName?: Resolver<ResolversTypes['String'], ParentType, ContextType>;
  targetSpeed?: Resolver<ResolversTypes['SafeInt'], ParentType, ContextType>;
  totalSize?: Resolver<ResolversTypes['SafeInt'], ParentType, ContextType>;
  updatedAt?: Resolver<ResolversTypes['DateTime'], ParentType, ContextType>;
  uploadedSize?: Resolver<ResolversTypes['SafeInt'], ParentType, ContextType>;
}>;

export type UploadCountsResolvers<ContextType = Context, ParentType extends ResolversParentTypes['UploadCounts'] = ResolversParentTypes['UploadCounts']> = ResolversObject<{
  canceled?: Resolver<ResolversTypes['Int'], ParentType, ContextType>;
  completed?: Resolver<ResolversTypes['Int'], ParentType, ContextType>;
  failed?: Resolver<ResolversTypes['Int'], ParentType, ContextType>;
  inProgress?: Resolver<ResolversTypes['Int'], ParentType, ContextType>;
  paused?: Resolver<ResolversTypes['Int'], ParentType, ContextType>;
  receiving?: Resolver<ResolversTypes['Int'], ParentType, ContextType>;
  total?: Resolver<ResolversTypes['Int'], ParentType, ContextType>;
}>;

export type UsageResolvers<ContextType = Context, ParentType extends ResolversParentTypes['Usage'] = ResolversParentTypes['Usage']> = ResolversObject<{
  bytesStored?: Resolver<ResolversTypes['SafeInt'], ParentType, ContextType>;
  running?: Resolver<ResolversTypes['Int'], ParentType, ContextType>;
}>;

export type Resolvers<ContextType = Context> = ResolversObject<{
  DateTime?: GraphQLScalarType;
  File?: GraphQLScalarType;
  HookDeliveries?: HookDeliveriesResolvers<ContextType>;
  HookDelivery?: HookDeliveryResolvers<ContextType>;
  Limits?: LimitsResolvers<ContextType>;
  Me?: MeResolvers<ContextType>;
  Mutation?: MutationResolvers<ContextType>;
  Query?: QueryResolvers<ContextType>;
  Quotas?: QuotasResolvers<ContextType>;
  SafeInt?: GraphQLScalarType;
  Subscription?: SubscriptionResolvers<ContextType>;
  Upload?: UploadResolvers<ContextType>;
  UploadCounts?: UploadCountsResolvers<ContextType>;
  Usage?: UsageResolvers<ContextType>;
}>;

