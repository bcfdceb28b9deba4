import type { ReadStream } from 'node:fs'
import type { Upload as TusUpload } from 'tus-js-client'
import type { Upload } from './api.js'
import type { Context } from './context.js'
import { hashNote, printable, type Display, type Row } from './output.js'
import { formatBytes, formatTarget } from './units.js'

// A file of a put, and how its state reads when it ends (its final line, its --json done event) or is
// interrupted (the line that says how to continue): apart from put.ts, which moves it along (sends it over
// tus, follows it until stored), because what is reported depends only on where the file stands.

export interface LocalFile {
  /** As given on the command line. */
  given: string
  path: string
  name: string
  size: number
}

/** One file of the put, from queued to its end. */
export interface Job {
  file: LocalFile
  row: Row
  stage: 'queued' | 'sending' | 'storing' | 'over'
  tus: TusUpload | undefined
  source: ReadStream | undefined
  id: string | undefined
  sent: number
  /** The offset the upload was resumed from (0 for a new one). */
  resumedFrom: number
  /** How it ended: the server's last word, or why it could not be sent. */
  last: Upload | undefined
  failure: string | undefined
  stop: (() => void) | undefined
}

export function newJob(file: LocalFile, display: Display): Job {
  return {
    file,
    row: display.row(file.name, { stage: 'queued', done: 0, total: file.size, speed: 0 }),
    stage: 'queued',
    tus: undefined,
    source: undefined,
    id: undefined,
    sent: 0,
    resumedFrom: 0,
    last: undefined,
    failure: undefined,
    stop: undefined,
  }
}

/** A file's final line: how it ended. */
export function finalLine(job: Job, mode: Context['mode']): string {
  const name = printable(job.file.name)
  const last = job.last
  const id = job.id ? ` (id ${job.id})` : ''
  if (job.failure !== undefined) return `${name}: failed: ${job.failure}${id}`
  if (!last) return `${name}: unknown${id}`
  if (last.removed) return `${name}: deleted from the server before it was stored${id}`
  switch (last.status) {
    case 'COMPLETED':
      return `${name}: completed, ${formatBytes(last.totalSize)} stored${id}${hashNote(last.sha256, mode)}`
    case 'CANCELED':
      return `${name}: canceled${id}`
    case 'FAILED':
      return `${name}: failed: ${printable(last.error ?? 'no reason given')}${id}`
    default:
      // --detach: received, and left to the server.
      return `${name}: received${id}; the server stores it at ${formatTarget(last.targetSpeed)}`
  }
}

export function finalEvent(job: Job): Record<string, unknown> {
  const last = job.last
  return {
    event: 'done',
    file: job.file.given,
    id: job.id ?? null,
    status: last?.removed ? 'DELETED' : (last?.status ?? null),
    sha256: last?.sha256 || null,
    size: job.file.size,
    resumedFrom: job.resumedFrom,
    error: job.failure ?? last?.error ?? null,
  }
}

/** The one line an interrupted put leaves: where each file stands, and the command that continues. */
export function howToContinue(jobs: Job[], again: string): string {
  const parts = jobs
    .filter((job) => job.stage !== 'over')
    .map((job) => {
      const name = printable(job.file.name)
      if (job.stage === 'queued') return `${name} not started`
      if (job.stage === 'sending')
        return `${name} ${formatBytes(job.sent)} of ${formatBytes(job.file.size)} sent${job.id ? ` (upload ${job.id})` : ''}`
      return `${name} fully sent, the server goes on storing it (upload ${job.id ?? '?'})`
    })
  if (parts.length === 0) return 'every file had ended'
  const sending = jobs.some((job) => job.stage === 'queued' || job.stage === 'sending')
  const what = sending ? 'to continue' : parts.length > 1 ? 'to follow them again' : 'to follow it again'
  return `${parts.join('; ')}; ${what}, run the same command: ${again}`
}
