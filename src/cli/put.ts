import { constants, createReadStream } from 'node:fs'
import { access, stat } from 'node:fs/promises'
import { basename, resolve } from 'node:path'
import {
  DetailedError,
  Upload as TusUpload,
  type HttpRequest,
  type HttpResponse,
  type UrlStorage,
} from 'tus-js-client'
import { authHeaders, ended, type Api } from './api.js'
import { interrupted, whenAborted, type Context } from './context.js'
import { CliError, EXIT, oneLine } from './errors.js'
import { createDisplay, printable, printJson, printLine, RateMeter } from './output.js'
import { finalEvent, finalLine, howToContinue, newJob, type Job, type LocalFile } from './put-job.js'
import { forget, uploadStorage } from './state.js'
import { progressOf } from './watch.js'

export interface PutOptions {
  files: string[]
  /** Bytes per second for the server to store at; its default when undefined. */
  speed: number | undefined
  /** Stop once each file is received, printing the ids. */
  detach: boolean
}

/** The files, each checked before anything is sent: a missing or unreadable one fails the whole put. */
async function checkFiles(files: string[]): Promise<LocalFile[]> {
  // A file named twice is sent once.
  const unique = files.filter(
    (given, i) => files.findIndex((other) => resolve(other) === resolve(given)) === i,
  )
  return Promise.all(
    unique.map(async (given) => {
      const path = resolve(given)
      const shown = printable(given)
      let size: number
      try {
        const info = await stat(path)
        if (!info.isFile()) throw new CliError(`${shown} is not a file; nothing was sent`)
        size = info.size
        await access(path, constants.R_OK)
      } catch (error) {
        if (error instanceof CliError) throw error
        const code = (error as { code?: unknown }).code
        const why =
          code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : oneLine(error)
        throw new CliError(`cannot read ${shown}: ${why}; nothing was sent`)
      }
      return { given, path, name: basename(path), size }
    }),
  )
}

/** Why tus could not send a file, in one line. */
function tusFailure(error: Error, server: string): string {
  if (error instanceof DetailedError) {
    const response = error.originalResponse
    if (response) {
      const status = response.getStatus()
      const body = response.getBody().trim().split('\n')[0]?.slice(0, 200) ?? ''
      const hint = status === 401 ? ' (give the service token with --token or API_TOKEN)' : ''
      return `the server refused it: ${status}${body ? ` ${body}` : ''}${hint}`
    }
    if (error.causingError) return `lost the connection to ${server} (${oneLine(error.causingError)})`
  }
  return oneLine(error)
}

const idOf = (url: string): string => decodeURIComponent(url.split('/').pop() ?? '')

/**
 * `upctl put FILE…`: each file goes over tus, one after the other, resumably (an interrupted put of the same
 * file continues from the server's offset), then is followed over graphql-ws until it is stored.
 */
export async function put(ctx: Context, options: PutOptions): Promise<number> {
  const files = await checkFiles(options.files)
  const { api, mode } = ctx
  await api.ping()
  const storage = await uploadStorage()
  // Without a terminal, --detach prints the ids alone, one a line, for scripts to read.
  const display = createDisplay(mode, options.detach)
  const jobs = files.map((file) => newJob(file, display))
  const deps = { api, storage, options, mode }
  const outcome = await Promise.race([
    sendAll(jobs, ctx.signal, deps).then(() => 'done' as const),
    whenAborted(ctx.signal),
  ])
  if (outcome !== 'done') {
    await stopAll(jobs)
    display.stop()
    throw interrupted(howToContinue(jobs, ctx.again))
  }
  display.stop()
  return jobs.every(
    (job) => job.failure === undefined && (options.detach || job.last?.status === 'COMPLETED'),
  )
    ? EXIT.OK
    : EXIT.FAILURE
}

/**
 * Sends the files one after the other. Each one sent is followed until it is stored while the next is sent,
 * or, with --detach, handed over.
 */
async function sendAll(jobs: Job[], signal: AbortSignal, deps: SendDeps): Promise<void> {
  const following: Promise<void>[] = []
  for (const job of jobs) {
    if (signal.aborted) break
    try {
      await send(job, deps)
    } catch (error) {
      job.failure = oneLine(error)
      finish(job, deps)
      continue
    }
    if (deps.options.detach) await handOver(job, deps)
    else following.push(followToStored(job, deps))
  }
  await Promise.all(following)
}

/** --detach: the file is received, and left to the server. */
async function handOver(job: Job, deps: SendDeps): Promise<void> {
  // Handed over: a later put of the same file is a new upload.
  if (job.tus?.url) await forget(deps.storage, job.tus.url)
  job.last = await deps.api.upload(job.id ?? '').catch(() => undefined)
  finish(job, deps)
}

/** Follows a sent file until it is stored; then a later put of the same file is a new upload. */
function followToStored(job: Job, deps: SendDeps): Promise<void> {
  return store(job, deps).then(
    async () => {
      if (job.tus?.url) await forget(deps.storage, job.tus.url)
      finish(job, deps)
    },
    (error: unknown) => {
      job.failure = oneLine(error)
      finish(job, deps)
    },
  )
}

/** A file's end: its done event with --json, its id alone for scripts (--detach, plain), or its final line. */
function finish(job: Job, { options, mode }: SendDeps): void {
  job.stage = 'over'
  job.source?.destroy()
  if (mode === 'json') printJson(finalEvent(job))
  else if (options.detach && mode === 'plain' && job.failure === undefined && job.id) printLine(job.id)
  else job.row.finish(finalLine(job, mode))
}

/** Ctrl-C: stops sending (the upload stays on the server, resumable: no termination), stops following. */
async function stopAll(jobs: Job[]): Promise<void> {
  await Promise.all(jobs.map((job) => job.tus?.abort(false)))
  for (const job of jobs) {
    job.stop?.()
    job.source?.destroy()
  }
}

interface SendDeps {
  api: Api
  storage: UrlStorage
  options: PutOptions
  mode: Context['mode']
}

/** tus-js-client's Node file reader takes an fs.ReadStream with a path as a file and reads the slices it
 * needs from that path (lib/node/fileReader.js); its type declarations list only browser and Buffer inputs. */
type TusInput = ConstructorParameters<typeof TusUpload>[0]

/** Sends one file over tus, resuming the upload a previous put of it left, if the server still has it. */
function send(job: Job, { api, storage, options, mode }: SendDeps): Promise<void> {
  const { file } = job
  job.stage = 'sending'
  job.source = createReadStream(file.path)
  // Only slices of it are read (by path); an error opening it shows when they are.
  job.source.on('error', () => undefined)
  const { target } = api
  return new Promise<void>((resolveSent, reject) => {
    const track = tracking(job, mode, () => upload.url)
    const upload = new TusUpload(job.source as unknown as TusInput, {
      endpoint: `${target.server}/files/`,
      metadata: {
        filename: file.name,
        ...(options.speed === undefined ? {} : { speed: String(options.speed) }),
      },
      headers: authHeaders(target),
      urlStorage: storage,
      storeFingerprintForResuming: true,
      // Kept until the upload is stored (see store), so a put interrupted while the server stores the file
      // follows it again instead of sending it anew.
      removeFingerprintOnSuccess: false,
      retryDelays: [0, 1000, 3000, 5000],
      onAfterResponse: track.onAfterResponse,
      onUploadUrlAvailable: track.onUploadUrlAvailable,
      onBeforeRequest: track.onBeforeRequest,
      onProgress: track.onProgress,
      onSuccess: () => {
        track.onSent()
        resolveSent()
      },
      onError: (error) => reject(new CliError(tusFailure(error, target.server))),
    })
    job.tus = upload
    resumeOrStart(upload).catch((error: unknown) =>
      reject(new CliError(`cannot read what earlier puts left: ${oneLine(error)}`)),
    )
  })
}

/** What follows a file's sending as tus goes: its id and the offset it resumed from, its bar, its --json events. */
function tracking(job: Job, mode: Context['mode'], urlOf: () => string | null) {
  const { file } = job
  const meter = new RateMeter()
  let patched = false
  return {
    onAfterResponse: (request: HttpRequest, response: HttpResponse) => {
      if (request.getMethod() === 'HEAD' && response.getStatus() === 200)
        job.resumedFrom = Number(response.getHeader('Upload-Offset') ?? 0)
    },
    onUploadUrlAvailable: () => {
      job.id = idOf(urlOf() ?? '')
    },
    onBeforeRequest: (request: HttpRequest) => {
      if (request.getMethod() !== 'PATCH') return
      patched = true
      const offset = Number(request.getHeader('Upload-Offset') ?? 0)
      if (mode === 'json')
        printJson({ event: 'sending', file: file.given, id: job.id, offset, size: file.size })
    },
    onProgress: (sent: number, total: number) => {
      job.sent = sent
      const speed = meter.add(sent)
      job.row.update({ stage: 'sending', done: sent, total, speed })
      // Events of bytes sent come after the PATCH that sends them is announced.
      if (mode === 'json' && patched)
        printJson({
          event: 'progress',
          stage: 'sending',
          file: file.given,
          id: job.id ?? null,
          bytes: sent,
          size: total,
        })
    },
    /** All of it sent. */
    onSent: () => {
      job.id = idOf(urlOf() ?? '')
      job.sent = file.size
      // All of it sent, shown so before the storing stage replaces the bar (tus's last progress may fall short).
      job.row.update({ stage: 'sending', done: file.size, total: file.size, speed: meter.add(file.size) })
      if (mode === 'json')
        printJson({
          event: 'received',
          file: file.given,
          id: job.id,
          size: file.size,
          resumedFrom: job.resumedFrom,
        })
    },
  }
}

/** Continues the newest upload left by a put of this very file (same path, size, mtime and server), or starts one. */
async function resumeOrStart(upload: TusUpload): Promise<void> {
  const previous = await upload.findPreviousUploads()
  const last = previous
    .filter((p) => p.uploadUrl)
    .sort((a, b) => Date.parse(a.creationTime) - Date.parse(b.creationTime))
    .pop()
  if (last) upload.resumeFromPreviousUpload(last)
  upload.start()
}

/** The stored stage: follows the upload over graphql-ws (never polling) until it ends. */
async function store(
  job: Job,
  { api, options, mode }: { api: Api; options: PutOptions; mode: Context['mode'] },
): Promise<void> {
  const id = job.id ?? ''
  job.stage = 'storing'
  job.row.update({ stage: 'storing', done: 0, total: job.file.size, speed: 0 })
  let speedChecked = options.speed === undefined
  const follow = api.followToEnd(id, (upload) => {
    job.last = upload
    if (!speedChecked) {
      // A resumed upload keeps the speed it was created with; the one asked now wins.
      speedChecked = true
      if (!ended(upload.status) && upload.targetSpeed !== options.speed)
        void api
          .request(`mutation Speed($id: ID!, $speed: SafeInt!) { setSpeed(id: $id, speed: $speed) { id } }`, {
            id,
            speed: options.speed,
          })
          .catch(() => undefined)
    }
    // The last progress event of a completed file has all of it stored, as its bar does.
    const completed = upload.status === 'COMPLETED' && !upload.removed
    if (mode === 'json' && ((!ended(upload.status) && !upload.removed) || completed))
      printJson({
        event: 'progress',
        stage: 'storing',
        file: job.file.given,
        id,
        status: upload.status,
        uploadedSize: upload.uploadedSize,
        totalSize: upload.totalSize,
        currentSpeed: upload.currentSpeed,
        targetSpeed: upload.targetSpeed,
      })
    if (ended(upload.status) || upload.removed) {
      // A completed file's bar shows all of it stored; then its final line says how it ended (see put).
      if (completed) job.row.update(progressOf(upload))
      return follow.stop()
    }
    // All of it has arrived; the transfer into storage is about to start.
    if (upload.status === 'RECEIVING')
      job.row.update({ stage: 'storing', done: 0, total: upload.totalSize, speed: 0 })
    else job.row.update(progressOf(upload))
  })
  job.stop = follow.stop
  await follow.done
  if (!job.last || (!ended(job.last.status) && !job.last.removed)) job.last = await api.upload(id)
}
