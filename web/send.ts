/**
 * Sending one file's bytes to the server over tus 1.0 (/files/, with tus-js-client's browser build, bundled),
 * until the server has all of them and stores the file at its speed. A send survives a dropped network (it
 * keeps trying, and goes on from the offset the server has) and a page reload: tus-js-client keeps each send's
 * upload URL in localStorage under the file's fingerprint (name, type, size, modification time, endpoint), so
 * choosing the same file again goes on where the server has it. The rest of the page only sees `sendFile`.
 */
import { defaultOptions, Upload, type DetailedError, type PreviousUpload } from 'tus-js-client'
import { AuthError, getToken, gql } from './api.js'

export interface Sending {
  /** The upload's id, once the server has the whole file. */
  done: Promise<string>
  /** Stops sending: the upload is ended on the server and its record deleted, then `done` rejects (SendCanceled). */
  cancel(): void
}

export class SendCanceled extends Error {
  /** `cleaned`: the server was told. If it could not be reached, what it has expires there. */
  constructor(readonly cleaned = true) {
    super('canceled')
  }
}

export interface SendEvents {
  /** Bytes the server has or that are on their way, of `total` (the file's size). */
  progress(sent: number, total: number): void
  /** The first bytes are on their way, or the server already had some (a send that goes on). */
  started(): void
  /** The server has the upload: made for this send, or `resumed`, one this browser began before. */
  found(id: string, resumed: boolean): void
  /**
   * An attempt failed: the server could not be reached (`status` 0), or answered that it could not take
   * the bytes now (5xx, a wrong offset, a lock). The next attempt starts in `delayMs`.
   */
  retrying(delayMs: number, status: number): void
}

/** Where tus lives; absolute, as the fingerprint includes it. */
const endpoint = () => new URL('/files/', location.href).href

/**
 * Each PATCH carries at most this much. The server keeps whatever part of a request arrived, so this only
 * bounds what a proxy that buffers or caps request bodies could hold back.
 */
const CHUNK_SIZE = 64 * 1024 ** 2

/**
 * The waits between attempts while the server cannot be reached: none, 1, 3 and 5 s, then 10 s for ten
 * minutes more. Every attempt that gets bytes in starts the count again.
 */
export const RETRY_DELAYS: readonly number[] = [0, 1000, 3000, 5000, ...Array<number>(60).fill(10_000)]

/** The upload this send had is gone on the server (canceled, failed or expired): no new one is made. */
class UploadGone extends Error {
  constructor() {
    super('the server no longer has this upload (it was canceled, failed or expired there)')
  }
}

export const uploadIdOf = (url: string) => decodeURIComponent(url.replace(/\/+$/, '').split('/').pop() ?? '')

/** This browser's unfinished sends to this server: tus-js-client's entries in localStorage. */
export async function storedSends(): Promise<PreviousUpload[]> {
  const prefix = endpoint()
  const all = await defaultOptions.urlStorage.findAllUploads()
  return all.filter((entry) => entry.uploadUrl?.startsWith(prefix))
}

/** Forgets the stored sends of the upload at `url`: choosing its file again makes a new upload. */
export async function forgetSend(url: string): Promise<void> {
  for (const entry of await storedSends())
    if (entry.uploadUrl === url) await defaultOptions.urlStorage.removeUpload(entry.urlStorageKey)
}

const responseOf = (error: Error) => (error as Partial<DetailedError>).originalResponse ?? undefined

/** What went wrong, in words: the server's own reason when it gave one. */
function reasonOf(error: Error): Error {
  if ((error as Partial<DetailedError>).causingError instanceof UploadGone) return new UploadGone()
  const response = responseOf(error)
  if (!response) return new Error('the connection to the server was lost')
  const status = response.getStatus()
  if (status === 404 || status === 410) return new UploadGone()
  const body = response.getBody()?.trim() ?? ''
  let detail = body
  try {
    detail = (JSON.parse(body) as { detail?: string }).detail ?? body
  } catch {
    // Plain text, as tus answers.
  }
  return new Error(detail || `the server answered ${status}`)
}

const gqlOk = (query: string, variables: Record<string, unknown>) =>
  gql(query, variables).then(
    () => true,
    () => false,
  )

export function sendFile(file: File, speed: number, events: SendEvents): Sending {
  let canceled = false
  let finished = false
  /** The server has confirmed this send's upload (made it, or answered for it). */
  let known = false
  /** A creation request is on its way: its answer names the upload that a cancel must end. */
  let creating = false
  let started = false
  /** The earlier send of this file that this one goes on with, if any. */
  let earlier: PreviousUpload | undefined
  let settle: { resolve(id: string): void; reject(error: Error): void } | undefined
  const done = new Promise<string>((resolve, reject) => (settle = { resolve, reject }))
  const finish = (result: string | Error) => {
    if (finished) return
    finished = true
    if (typeof result === 'string') settle?.resolve(result)
    else settle?.reject(result)
  }
  const token = getToken()
  const metadata: Record<string, string> = { filename: file.name, speed: String(speed) }
  if (file.type) metadata.filetype = file.type

  const upload = new Upload(file, {
    endpoint: endpoint(),
    metadata,
    headers: token ? { Authorization: `Bearer ${token}` } : {},
    chunkSize: CHUNK_SIZE,
    retryDelays: [...RETRY_DELAYS],
    storeFingerprintForResuming: true,
    // A file sent in full is sent again in full if chosen again.
    removeFingerprintOnSuccess: true,
    onBeforeRequest: (req) => {
      if (req.getMethod() !== 'POST') return
      // tus-js-client makes a new upload when the one it had is gone (404, 410): this send stops instead.
      if (known || canceled) throw new UploadGone()
      creating = true
    },
    onAfterResponse: (req) => {
      if (req.getMethod() === 'POST') creating = false
    },
    onUploadUrlAvailable: () => {
      const url = upload.url ?? ''
      if (canceled) return void terminate()
      const first = !known
      known = true
      if (!first) return
      const resumed = url === earlier?.uploadUrl
      events.found(uploadIdOf(url), resumed)
      // It goes on at the speed chosen now.
      if (resumed && earlier?.metadata.speed !== String(speed))
        void gqlOk(`mutation ($id: ID!, $speed: SafeInt!) { setSpeed(id: $id, speed: $speed) { id } }`, {
          id: uploadIdOf(url),
          speed,
        })
    },
    onProgress: (sent, total) => {
      if (canceled) return
      if (!started && sent > 0) {
        started = true
        events.started()
      }
      events.progress(sent, total)
    },
    onShouldRetry: (error, attempt, options) => {
      creating = false
      if (canceled || error.causingError instanceof UploadGone) return false
      const status = responseOf(error)?.getStatus() ?? 0
      // Refusals are final (a bad token, too big, gone), except a wrong offset or a lock: asked again.
      if (status >= 400 && status < 500 && status !== 409 && status !== 423) return false
      // Offline or not, the next attempt comes: the network may be back by then.
      events.retrying(options.retryDelays?.[attempt] ?? 0, status)
      return true
    },
    onSuccess: () => finish(uploadIdOf(upload.url ?? '')),
    onError: (error) => {
      creating = false
      if (canceled) return void (upload.url ? terminate() : finish(new SendCanceled()))
      if (responseOf(error)?.getStatus() === 401) return finish(new AuthError(token !== ''))
      finish(reasonOf(error))
    },
  })

  /** Ends the upload on the server (tus termination, which is a cancel), then deletes its record. */
  let terminating: Promise<void> | undefined
  const terminate = () =>
    (terminating ??= (async () => {
      const url = upload.url ?? ''
      const id = uploadIdOf(url)
      await upload.abort(false)
      const terminated = await Upload.terminate(url, {
        ...upload.options,
        retryDelays: [0, 1000, 3000],
        onShouldRetry: null,
      }).then(
        () => 'ended' as const,
        (error: Error) => (responseOf(error) ? ('answered' as const) : ('unreachable' as const)),
      )
      // Not ended by tus (gone there already, or out of reach): its record is canceled, if it still runs.
      const canceledToo =
        terminated !== 'ended' &&
        (await gqlOk(`mutation ($id: ID!) { cancelUpload(id: $id) { id } }`, { id }))
      const cleaned = terminated !== 'unreachable' || canceledToo
      await gqlOk(`mutation ($id: ID!) { deleteFile(id: $id) { id } }`, { id })
      await forgetSend(url).catch(() => undefined)
      finish(new SendCanceled(cleaned))
    })())

  // An earlier, unfinished send of this file (before a reload, or one that gave up) goes on.
  void upload
    .findPreviousUploads()
    .catch(() => [] as PreviousUpload[])
    .then((previous) => {
      if (canceled) return
      earlier = previous
        .filter((entry) => entry.uploadUrl)
        .sort((a, b) => Date.parse(b.creationTime) - Date.parse(a.creationTime))[0]
      if (earlier) upload.resumeFromPreviousUpload(earlier)
      upload.start()
    })

  const cancel = () => {
    if (canceled || finished) return
    canceled = true
    if (upload.url) return void terminate()
    // The creation's answer names the upload to end (onUploadUrlAvailable), or its failure ends the send.
    if (creating) return
    void upload.abort(false)
    finish(new SendCanceled())
  }
  return { done, cancel }
}
