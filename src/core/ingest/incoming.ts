import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { Hold } from '../../seams/storage/room.js'

/** Who sent a file, for the pre-create hook: the transport, the request's id, its Authorization header. */
export interface Caller {
  transport: 'rest' | 'graphql' | 'tus'
  requestId?: string
  /** Forwarded to the hook when HOOKS_FORWARD_AUTH allows; never logged. */
  authorization?: string
}

/** The Caller of a request that brings files. */
export function callerOf(
  req: IncomingMessage,
  transport: Caller['transport'],
  requestId: string | undefined,
): Caller {
  const { authorization } = req.headers
  return {
    transport,
    ...(requestId === undefined ? {} : { requestId }),
    ...(authorization === undefined ? {} : { authorization }),
  }
}

/** The request ended before its body did: the client went away, or was answered early. Nobody to tell. */
export class RequestEnded extends Error {
  override readonly name = 'RequestEnded'
}

/** A file that has arrived whole in storage's staging, hashed on the way. */
export interface StagedFile {
  readonly filename: string
  readonly mimeType: string
  readonly size: number
  /** Hex sha256 of the bytes as they arrived. */
  readonly sha256: string
  /** The room promised for its second copy (see room.ts): whoever moves the file takes it over. */
  readonly room: Hold
  /**
   * Takes the file over: it becomes its upload's staged bytes (Storage.receive). Whatever nobody kept is
   * removed (and its room let go) when its request ends.
   */
  keep(): Promise<void>
  /** The whole body, when it ended within SMALL_BODY bytes (see ingest.ts): not in staging until kept. */
  readonly bytes?: Buffer
  /**
   * With `bytes`: its taker is about to store them itself (Storage.storeWhole), so nothing needs staging, and
   * its room is theirs (let go twice is let go once). Throws RequestEnded as `keep` does, if the request let it
   * go first. Keeping it still stages it, if storing it whole does not work out.
   */
  stored?(): void
}

/**
 * A file part of a request that is still arriving. Transports hand it to resolvers as soon as the request
 * says a file will come (GraphQL: at `map`; REST: when the `file` part begins), so every other argument is
 * checked, and refused, before the file's bytes are read. `arrived` settles once the whole request has
 * arrived (a request is taken whole or refused whole: a file whose request is refused later, for a later
 * part, a limit or a cut connection, is never kept), or with the error that stopped the request.
 */
export class IncomingFile {
  /**
   * The id of the upload it becomes: chosen before its first byte, so storage stages the bytes under it
   * from the start (an object store cannot rename them later).
   */
  readonly id = randomUUID()
  filename = ''
  mimeType = ''
  /** Bytes of it received so far. */
  received = 0
  /** Settles once the part begins (its filename known), or with what stopped the request first. */
  readonly began: Promise<void>
  readonly arrived: Promise<StagedFile>
  /** Stops the request that carries it (the upload was canceled while it arrived); set by the ingest. */
  abort: (reason: Error) => void = () => {}
  /** Set by the transport that received it. */
  caller?: Caller
  /** Settles once its taker lets its bytes be read (see IngestOptions.approveFirst), or with what stopped it. */
  readonly approved: Promise<void>
  private settle!: { resolve: (file: StagedFile) => void; reject: (error: Error) => void }
  private start!: { resolve: () => void; reject: (error: Error) => void }
  private approval!: { resolve: () => void; reject: (error: Error) => void }

  constructor(
    /** The part's field name, for messages. */
    readonly field: string,
  ) {
    this.began = new Promise<void>((resolve, reject) => (this.start = { resolve, reject }))
    this.arrived = new Promise<StagedFile>((resolve, reject) => (this.settle = { resolve, reject }))
    this.approved = new Promise<void>((resolve, reject) => (this.approval = { resolve, reject }))
    // Nobody may ever await them (a resolver that refused its other arguments first): that is no crash.
    this.began.catch(() => undefined)
    this.arrived.catch(() => undefined)
    this.approved.catch(() => undefined)
  }

  /** Its bytes may be read now (its taker asked whoever decides; see IngestOptions.approveFirst). */
  approve(): void {
    this.approval.resolve()
  }

  /** @internal the ingest, as the part begins */
  begin(): void {
    this.start.resolve()
  }

  /** @internal the ingest */
  resolve(file: StagedFile): void {
    this.settle.resolve(file)
  }

  /** @internal the ingest, or a transport whose request ended without this part */
  reject(error: Error): void {
    this.start.reject(error)
    this.approval.reject(error)
    this.settle.reject(error)
  }
}
