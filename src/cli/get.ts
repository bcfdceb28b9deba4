import { createHash, type Hash } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable, Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { ReadableStream as WebReadableStream } from 'node:stream/web'
import { authHeaders, unreachable } from './api.js'
import { interrupted, type Context } from './context.js'
import { CliError, EXIT, oneLine } from './errors.js'
import { createDisplay, printable, printJson, printLine, RateMeter } from './output.js'
import { formatBytes } from './units.js'

/** The name to save a download under: the last segment of the upload's name, or its id when that is empty. */
function localName(filename: string, id: string): string {
  const last = filename.split(/[/\\]/).pop() ?? ''
  // eslint-disable-next-line no-control-regex
  const clean = last.replace(/[\u0000-\u001f\u007f]/g, '_').trim()
  return clean === '' || clean === '.' || clean === '..' ? id : clean
}

async function sizeOf(path: string): Promise<{ size: number; isDirectory: boolean } | undefined> {
  try {
    const info = await stat(path)
    return { size: info.size, isDirectory: info.isDirectory() }
  } catch {
    return undefined
  }
}

/** The sha256 of a file's first `length` bytes, as a hash that can be carried on. */
async function hashPrefix(path: string, length: number): Promise<Hash> {
  const hash = createHash('sha256')
  if (length > 0)
    for await (const chunk of createReadStream(path, { start: 0, end: length - 1 }))
      hash.update(chunk as Buffer)
  return hash
}

/** What the download answered with, as one line: its `detail` when it has one. */
async function refusal(response: Response): Promise<string> {
  const text = await response.text().catch(() => '')
  try {
    const { detail } = JSON.parse(text) as { detail?: unknown }
    if (typeof detail === 'string') return `${response.status} ${detail}`
  } catch {
    // Not JSON: the status says it.
  }
  return `${response.status} ${response.statusText}`
}

/**
 * `upctl get ID [-o FILE]`: downloads a stored file from /api/files/{id}/download. When FILE already holds the
 * start of it (an earlier get cut off), only the rest is asked for, with Range and If-Range (the file's ETag,
 * its sha256); the whole file is then checked against the upload's sha256.
 */
export async function get(ctx: Context, id: string, output: string | undefined): Promise<number> {
  const { api, mode } = ctx
  const upload = await api.upload(id)
  if (upload.status !== 'COMPLETED')
    throw new CliError(`upload ${id} has no stored file to download: it is ${upload.status}`)
  const total = upload.totalSize
  let path = output ?? localName(upload.filename, id)
  const there = await sizeOf(path)
  if (there?.isDirectory) path = join(path, localName(upload.filename, id))
  const have = (await sizeOf(path))?.size ?? 0
  const shown = printable(path)

  const done = (from: number, line: string) => {
    if (mode === 'json')
      printJson({
        event: 'done',
        id,
        status: 'COMPLETED',
        file: path,
        size: total,
        sha256: upload.sha256,
        resumedFrom: from,
      })
    else printLine(line)
    return EXIT.OK
  }
  if (have >= total && have > 0) {
    const hash = await hashPrefix(path, have)
    if (have === total && hash.digest('hex') === upload.sha256)
      return done(have, `${shown}: already complete (${formatBytes(total)}, sha256 ${upload.sha256})`)
    throw new CliError(
      `${shown} already exists and is not upload ${id}'s file; remove it or choose another name with -o`,
    )
  }

  const abort = new AbortController()
  ctx.signal.addEventListener('abort', () => abort.abort(), { once: true })
  const headers: Record<string, string> = { ...authHeaders(api.target) }
  if (have > 0) {
    headers.range = `bytes=${have}-`
    // Only if the stored file is still the one whose start we have: its ETag is its sha256.
    headers['if-range'] = `"${upload.sha256}"`
  }
  const url = `${api.target.server}/api/files/${encodeURIComponent(id)}/download`
  let response: Response
  try {
    response = await fetch(url, { headers, signal: abort.signal })
  } catch (error) {
    if (ctx.signal.aborted)
      throw interrupted(`nothing more of ${shown} was downloaded; to continue, run: ${ctx.again}`)
    throw unreachable(api.target, error)
  }
  if (response.status !== 200 && response.status !== 206)
    throw new CliError(`cannot download upload ${id}: ${await refusal(response)}`)
  const from = response.status === 206 ? have : 0
  if (response.status === 206) {
    const range = /^bytes (\d+)-/.exec(response.headers.get('content-range') ?? '')
    if (Number(range?.[1]) !== have)
      throw new CliError(
        `the server sent a range that does not start at byte ${have}; ${shown} is left as it was`,
      )
  }
  if (!response.body) throw new CliError(`the server sent no body for upload ${id}`)

  const hash = await hashPrefix(path, from)
  // Bars on a terminal; without one, only the final line.
  const display = createDisplay(mode, true)
  const row = display.row(path, { stage: 'getting', done: from, total, speed: 0 })
  const meter = new RateMeter()
  let got = from
  let lastEvent = 0
  const count = new Transform({
    transform(chunk: Buffer, _encoding, next) {
      hash.update(chunk)
      got += chunk.length
      row.update({ stage: 'getting', done: got, total, speed: meter.add(got) })
      const now = performance.now()
      if (mode === 'json' && now - lastEvent >= 100) {
        lastEvent = now
        printJson({ event: 'progress', id, file: path, bytes: got, size: total })
      }
      next(null, chunk)
    },
  })
  try {
    await pipeline(
      Readable.fromWeb(response.body as WebReadableStream<Uint8Array>),
      count,
      // Resumed: written from where the file stops; otherwise written anew.
      createWriteStream(path, from > 0 ? { flags: 'r+', start: from } : { flags: 'w' }),
    )
  } catch (error) {
    display.stop()
    if (ctx.signal.aborted)
      throw interrupted(
        `${shown} has ${formatBytes(got)} of ${formatBytes(total)}; to continue, run: ${ctx.again}`,
      )
    throw new CliError(
      `the download of ${shown} stopped at ${formatBytes(got)} of ${formatBytes(total)} (${oneLine(error)}); run the same command to continue`,
    )
  }
  const sha256 = hash.digest('hex')
  if (got !== total || sha256 !== upload.sha256) {
    display.stop()
    throw new CliError(
      `${shown} is ${formatBytes(got)} with sha256 ${sha256}, not upload ${id}'s ${formatBytes(total)} with sha256 ${upload.sha256}${from > 0 ? ' (the part already there was not the start of this file?)' : ''}; remove it and run get again`,
    )
  }
  const resumed = from > 0 ? `, resumed at ${formatBytes(from)}` : ''
  const line = `${shown}: saved, ${formatBytes(total)}${resumed}, sha256 ${sha256}`
  if (mode === 'json') {
    display.stop()
    return done(from, line)
  }
  // The bar goes (and the terminal wraps lines again), then the final line.
  display.stop()
  printLine(line)
  return EXIT.OK
}
