import { createHash, type Hash } from 'node:crypto'
import type { Readable, Writable } from 'node:stream'
import type { RoomLedger } from './room.js'

/**
 * The storage seam: everything the service does with an upload's bytes, and nothing else. Three places hold
 * an upload's bytes, one after the other:
 *
 *   staged     the bytes as they arrived (one multipart body, or a tus upload's requests), kept until the
 *              transfer completes; the transfer reads them from here
 *   transfer   the copy being written at the upload's speed; paused, resumed, verified after a crash
 *   stored     the whole, verified file, made so in one step (`complete`); what a download reads
 *
 * Only an implementation knows where those are (LocalStorage: a folder; S3Storage: keys in a bucket, see
 * issue 21): callers name an upload by its id (and `storedName`), never by a path or a key.
 *
 * Shaped for object storage as well as a folder, after tusd's s3store and @tus/s3-store:
 * - bytes are written as parts, not only appended at any offset: a transfer's sink says its `partSize`, and
 *   the copy never hands it one write across a part's end;
 * - a whole object appears only when completed (`complete`), never while it is written;
 * - a resume asks storage what it holds and checks it against the staged bytes (`verifiedPrefix`: on S3,
 *   ListParts with each part's sha256, compared with the staged bytes' same range) rather than trusting a
 *   count kept elsewhere;
 * - what a transfer has written and what storage has acknowledged may differ (bytes of a part still being
 *   filled): see TransferSink.
 */
export interface Storage {
  /** What kind of storage this is, for logs and metrics ('local', 's3'). */
  readonly kind: string

  /** Room for more bytes, promised as it is granted (see room.ts). A store without a limit grants anything. */
  readonly room: RoomLedger

  /**
   * Makes storage ready to take bytes (folders, say), or rejects with one line saying why it cannot (an
   * unusable folder, an unknown bucket): called at start-up before anyone is served, and cheap enough to
   * call again before writing (someone may have removed a folder while the server ran).
   */
  prepare(): Promise<void>

  /** Why storage takes no writes now, in words fit for anyone (/readyz), or undefined when it does. */
  writable(): Promise<string | undefined>

  // ---- staged: the bytes as they arrive ---------------------------------------------------------------

  /**
   * A whole body arriving in one request (multipart) for upload `id`. Its bytes are not the upload's staged
   * bytes until `keep()`: a body that stops half-way, or whose request is refused, is `discard()`ed, and one
   * left behind by a crash is a leftover (see `leftovers`), known by the instance it was arriving at.
   */
  receive(id: string): Promise<Arrival>

  /**
   * An empty resumable upload (tus, length 0) is created: its staged bytes exist from now on, empty, so
   * `stagedSize` says 0. Any other makes its staged bytes with its first `append`.
   */
  createStaged(id: string): Promise<void>

  /**
   * More bytes of a resumable upload, written from `offset` (what `stagedSize` said it holds). From 0, they
   * are its first: its staged bytes are made (or made anew). Bytes are kept as they land: a request cut off
   * part-way keeps what storage took, and `stagedSize` says how much afterwards (on a part store, maybe
   * fewer than `written()` counted: a part that never finished).
   */
  append(id: string, offset: number): Promise<StagingWrite>

  /** Bytes staged for upload `id` (of a resumable upload, what a resume goes on from); undefined: none. */
  stagedSize(id: string): Promise<number | undefined>

  /**
   * The staged bytes [start, end) as a stream (to hash them); `end` defaults to all of them. Any prefix can
   * be read, also of a resumable upload still arriving (its next request goes on hashing from there).
   */
  readStaged(id: string, start?: number, end?: number): Readable

  /** The staged bytes, open for the transfer to read at offsets (see StagedReader). */
  openStaged(id: string): Promise<StagedReader>

  // ---- transfer: the copy written at the upload's speed -----------------------------------------------

  /**
   * Opens the upload's transfer to write from `from.offset`. Bytes before it must be what a run left there,
   * as `from.mark` says (from the run's `end`, or from `verifiedPrefix`); if storage no longer holds exactly
   * that, it rejects with TargetChangedError and writes nothing. Bytes past `from.offset` (a torn tail, a
   * part that did not verify) are dropped, so the transfer never holds a byte nobody hashed. At offset 0
   * any earlier transfer is started over. `signal` (the run's pause or cancel) ends every wait of the
   * sink's at once (a part in flight, a wait before trying storage again): its write then rejects with the
   * signal's reason, and nothing more is sent.
   */
  openTransfer(
    upload: TransferTarget,
    from: { offset: number; mark?: TransferMark },
    signal?: AbortSignal,
  ): Promise<TransferSink>

  /**
   * Makes the staged bytes, as they are, the whole transfer, without copying them: for a transfer that
   * nothing paces, from its first byte. Durable once it resolves, with the mark of the transfer it made; the
   * staged bytes keep their place until completion (the pre-finish hook reads them, and recovery checks the
   * transfer against them). Undefined, or resolving undefined (a file system without hard links, staging on
   * another one), means the transfer copies them.
   */
  linkStaged?(upload: TransferTarget): Promise<TransferMark | undefined>

  /**
   * A whole body small enough to have arrived in memory, made the stored file at once: written, flushed and
   * put in place as `complete` puts a transfer (durable once it resolves), with nothing staged and nothing
   * copied. For an upload that nothing paces and no pre-finish hook asks about, while its record still says
   * RECEIVING (see arrivals.ts). A rejection leaves no transfer of it behind. Undefined: such a body is staged
   * and transferred as usual.
   */
  storeWhole?(upload: TransferTarget, bytes: Buffer): Promise<void>

  /**
   * Whether the transfer is still exactly as a run left it (`mark`), so the bytes before its offset are the
   * ones that run wrote and hashed (one stat for a file). Anything else, or no mark, is false.
   */
  unchanged(upload: Located, mark: TransferMark | undefined): Promise<boolean>

  /**
   * Of the first `written` bytes of a transfer (a run's count of bytes whose write resolved: an upload's
   * uploadedSize), how many storage has acknowledged as kept, by its sink's rule (see TransferSink): on a
   * part store the whole parts among them (every byte once all are written), on a file all of them. Never
   * more than storage holds, so a pause, crash or adoption goes on from at least this many.
   */
  acknowledgedOf(upload: { totalSize: number }, written: number): number

  /**
   * What storage holds of the transfer, checked against the staged bytes, when memory cannot say (after a
   * restart, an adoption, a transfer changed behind its run): the longest prefix that equals the staged
   * bytes (byte for byte on a file; part by part, each part's sha256 against the staged range, on a part
   * store), with the sha256 of that prefix, so the transfer goes on hashing from there. Nothing held: 0.
   */
  verifiedPrefix(upload: TransferTarget): Promise<Verified>

  /**
   * Makes the transfer the stored file, verified: the sha256 of its bytes must be `upload.sha256` (the one
   * taken as they arrived), or it rejects with StoredBytesMismatch and nothing is stored. `written` is the sha256 the
   * runs took of what they wrote, when memory has it (their bytes are then not read again), with `mark`, how
   * the last run left the transfer (its sink's `end`): a part store completes exactly those parts, whichever
   * instance wrote them. Without them storage hashes what it holds. Durable once it resolves (a file: renamed
   * into place and its folder flushed; an object: its multipart upload completed, with its sha256 stored
   * beside it).
   */
  complete(upload: TransferTarget, written?: string, mark?: TransferMark): Promise<void>

  // ---- stored: the whole file -------------------------------------------------------------------------

  /**
   * The sha256 of the stored file if storage holds one of `size` bytes, else undefined: a crash between
   * `complete` and the record saying COMPLETED is settled with it.
   */
  storedSha256(upload: Located, size: number): Promise<string | undefined>

  /**
   * The stored file, open for a download: rejects with StoredFileMissing when storage has none (its bytes
   * are lost), before anything is sent. The caller checks `size` against its record, then reads ranges.
   */
  openStored(upload: Located): Promise<StoredReader>

  // ---- removal and recovery ---------------------------------------------------------------------------

  /**
   * Removes what the upload has in storage: `staged`, its `transfer` (on S3 the multipart upload is
   * aborted), both (`bytes`: an unfinished upload's), or `all`, the stored file too. Nothing there is fine.
   */
  remove(upload: Located, what: 'staged' | 'transfer' | 'bytes' | 'all'): Promise<void>

  /**
   * What start-up may remove, listed before this process serves anyone: bodies that never finished
   * arriving, and staged or transfer bytes no upload in `unfinished` owns. Stored files are never listed.
   */
  leftovers(unfinished: readonly Located[]): Promise<Leftover[]>

  removeLeftovers(leftovers: readonly Leftover[]): Promise<void>

  /** Whether storage holds unfinished uploads' bytes (a state file that went missing would orphan them). */
  holdsTransfers(): Promise<boolean>

  /**
   * Where a download may be sent instead of being streamed through this server (a presigned GET on S3, when
   * the operator turned it on), valid for a while; undefined: stream it (`openStored`).
   */
  downloadUrl?(upload: Located, filename: string): Promise<string | undefined>

  /** How a remote store's requests ended so far (retried, unavailable, refused), for /metrics. */
  outcomes?(): Readonly<Record<string, number>>
}

/** An upload as storage knows it: its id, and the stored name that its record gives it (`{id}_{safe name}`). */
export interface Located {
  id: string
  storedName: string
}

/** What opening a transfer needs beyond where it lives: a part store sizes its parts by it, and may store the sha256. */
export interface TransferTarget extends Located {
  totalSize: number
  sha256: string
}

/**
 * How a run left its transfer, as storage tells it (a file: device, inode, size and times; an object: its
 * parts). Opaque to everyone else: kept in memory and handed back to the same storage.
 */
export interface TransferMark {
  readonly kind: string
}

export interface Verified {
  /** Bytes from 0 that storage holds and that equal the staged bytes. */
  offset: number
  /** sha256 of exactly those bytes, to go on from. */
  hash: Hash
  /** The transfer as it was checked, for `openTransfer`; none when it holds nothing. */
  mark?: TransferMark
}

/** The bytes of a body as they go into storage. */
export interface StagingWrite {
  /** Pipe the body in; its 'finish' means every byte of it is in storage. */
  readonly sink: Writable
  /**
   * Bytes of it storage has taken so far (out of the free room: see Hold.track). Not bytes on their way:
   * those in a write buffer are not counted yet.
   */
  written(): number
}

/** A whole body arriving (multipart): see Storage.receive. */
export interface Arrival extends StagingWrite {
  /** The body arrived whole and its request was taken: it becomes the upload's staged bytes, in one step. */
  keep(): Promise<void>
  /** It will never be kept: whatever of it reached storage goes. Safe after `keep` (then it does nothing). */
  discard(): Promise<void>
}

/**
 * The staged bytes, read by a transfer at the positions it asks for. Positions only move forward within one
 * run, so a reader over a network may stream ahead rather than ask for each range.
 */
export interface StagedReader {
  /** Reads up to `length` bytes at `position` into `buffer` at `offset`; resolves with how many (0: the end). */
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<number>
  close(): Promise<void>
}

/**
 * Where a transfer's bytes go, in order. Two counts say how far it got, and they may differ:
 * - *written*: bytes handed to `write` (what the copy hashed, and what its progress counts);
 * - *acknowledged* (`acknowledged()`): bytes from 0 storage holds for sure. A file acknowledges each write
 *   as it returns; a part store, only whole parts it has confirmed. A run that stops (pause, cancel, a lost
 *   lease, a crash) may lose written bytes past the acknowledged ones, and the next run goes on from
 *   `acknowledged`: that, not `written`, is the offset a stopped transfer reports (its `uploadedSize`).
 */
export interface TransferSink {
  /**
   * Bytes per part, the same on every open of one upload: part n holds bytes [(n−1)·partSize, n·partSize),
   * the last may be shorter, and the copy never hands one write across a part's end. 0: no parts (a file
   * takes bytes at any offset).
   */
  readonly partSize: number

  /**
   * Writes `chunk` at `position`, which is always where the last write ended. `guard` is called last before
   * the bytes leave for storage, with no wait between it and their sending: it throws (a lost lease) to
   * stop, and then nothing of the chunk is written (a sink that only buffers the chunk calls it before it
   * sends the part). Resolves once storage has taken the chunk (a part store
   * may still be filling its part: see `acknowledged`). Rejects with TargetChangedError when the transfer
   * is no longer what this run wrote (cut short, written to, removed behind it).
   */
  write(chunk: Buffer, position: number, guard: () => void): Promise<void>

  /**
   * Bytes from 0 that storage holds for sure (see above). A write that fills a part resolves only once
   * storage acknowledged that part, so once `write` resolved for the bytes up to `written`, this is
   * `Storage.acknowledgedOf(written)`: what anyone can tell from a written count alone.
   */
  acknowledged(): number

  /**
   * The run ends without error. `whole`: every byte was written; they are made durable and checked (length,
   * no hole), or it rejects with TargetChangedError. Not whole (paused, canceled): acknowledged bytes stay,
   * later ones may go. Resolves with where the next run goes on from, and how this run left the transfer.
   */
  end(whole: boolean): Promise<{ acknowledged: number; mark?: TransferMark }>

  /** Lets go of whatever the sink holds open, after `end` or after a failure. Never rejects; safe twice. */
  close(): Promise<void>
}

/** A stored file open for reading (see Storage.openStored). */
export interface StoredReader {
  /** Its length in storage, as it is now. */
  readonly size: number
  /**
   * Bytes [start, end] (inclusive, as HTTP ranges are) as a stream. The stream owns the reader from then on:
   * it lets go when it ends, fails or is destroyed. At most one stream per reader.
   */
  read(start: number, end: number): Readable
  /** Lets go of the reader when no stream was asked for. Safe after `read` (then it does nothing). */
  close(): Promise<void>
}

/** Something of an upload storage holds that start-up found no owner for (see Storage.leftovers). */
export interface Leftover {
  /** How storage names it, for logs. */
  readonly name: string
  /** The upload it belongs to, if it is an upload's staged or transfer bytes. */
  readonly id?: string
  /** The instance a body still arriving belongs to, if it is one: never swept while that instance lives. */
  readonly arrivingAt?: string
  /**
   * When it was begun (ms since the epoch; on S3 a multipart upload's `Initiated`, an object's
   * LastModified), when storage knows: the periodic expiry removes only those older than the expiry age, so
   * nothing that is merely between two requests goes.
   */
  readonly since?: number
}

/** The stored file is missing although its record says it is stored: its bytes are lost, for good. */
export class StoredFileMissing extends Error {
  override readonly name = 'StoredFileMissing'
}

/**
 * The transfer is not what this run (or the bytes verified before its offset) left there: shortened, written
 * to, replaced, longer than the file, or holding a hole. No byte past what can be verified again is trusted.
 */
export class TargetChangedError extends Error {
  // A string, not the literal: kinds of it (S3's UploadGoneError) say their own name.
  override readonly name: string = 'TargetChangedError'
}

/**
 * Storage is away for now (no answer, a timeout, a reset, 5xx, throttled): the same request may well succeed
 * later, so the caller waits and tries again (a transfer goes on from what storage acknowledged) rather than
 * fail the upload. Anything storage refused outright (4xx) is not this: it fails, with the reason.
 */
export class StorageUnavailable extends Error {
  override readonly name = 'StorageUnavailable'
}

/**
 * Storage refused a request for a reason that trying again will not change (S3's 4xx: access denied, no
 * such bucket, a request too large): the upload fails, saying so in words fit for its client.
 */
export class StorageRefused extends Error {
  override readonly name = 'StorageRefused'
}

/** The bytes a transfer holds do not hash to what arrived: they are never made the stored file. */
export class StoredBytesMismatch extends Error {
  override readonly name = 'StoredBytesMismatch'
  constructor(
    /** sha256 of what storage holds. */
    readonly actual: string,
    /** sha256 of what arrived. */
    readonly expected: string,
  ) {
    super(`Stored bytes do not match what was received (sha256 ${actual}, expected ${expected})`)
  }
}

/** sha256 of a stream's bytes, in hex (staged bytes, say, read with `readStaged`). */
export async function sha256Of(stream: Readable): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of stream) hash.update(chunk as Buffer)
  return hash.digest('hex')
}
