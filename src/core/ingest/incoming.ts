import { randomUUID } from 'node:crypto'
import type { Hold } from '../../seams/storage/room.js'

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
  private settle!: { resolve: (file: StagedFile) => void; reject: (error: Error) => void }
  private start!: { resolve: () => void; reject: (error: Error) => void }

  constructor(
    /** The part's field name, for messages. */
    readonly field: string,
  ) {
    this.began = new Promise<void>((resolve, reject) => (this.start = { resolve, reject }))
    this.arrived = new Promise<StagedFile>((resolve, reject) => (this.settle = { resolve, reject }))
    // Nobody may ever await them (a resolver that refused its other arguments first): that is no crash.
    this.began.catch(() => undefined)
    this.arrived.catch(() => undefined)
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
    this.settle.reject(error)
  }
}
