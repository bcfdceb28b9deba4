import { createHash, type Hash } from 'node:crypto'
import { createReadStream, createWriteStream, type Stats } from 'node:fs'
import { link, lstat, rename, rm, stat } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { Readable, Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { ReadableStream as WebReadableStream } from 'node:stream/web'
import { authHeaders, unreachable, type Upload } from './api.js'
import { interrupted, type Context } from './context.js'
import { CliError, EXIT, oneLine } from './errors.js'
import { createDisplay, printable, printJson, printLine, RateMeter, type Row } from './output.js'
import { formatBytes } from './units.js'

/** The name to save a download under: the last segment of the upload's name, or its id when that is empty. */
function localName(filename: string, id: string): string {
  const last = filename.split(/[/\\]/).pop() ?? ''
  // eslint-disable-next-line no-control-regex
  const clean = last.replace(/[\u0000-\u001f\u007f]/g, '_').trim()
  return clean === '' || clean === '.' || clean === '..' ? id : clean
}

/** What is at `path` (the link itself, for a symbolic link), or undefined when nothing is. */
async function entryAt(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path)
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ENOENT') return undefined
    throw new CliError(`cannot look at ${printable(path)}: ${oneLine(error)}`)
  }
}

/** The longest a file's name may be, in bytes, on the file systems upctl saves to (NAME_MAX). */
const NAME_MAX = 255

/**
 * Where a download of upload `id` into `path` is written until it is whole and its sha256 is checked: a hidden
 * file beside it (the same folder, so that it is put in place by a rename), named for the upload and its ETag
 * (the first 16 hex digits of its sha256). A file of that name is a download upctl began of these very bytes,
 * and nothing else is ever written to or continued: `.report.pdf.upctl-ID-ETAG.part`.
 */
export function partialPath(path: string, id: string, sha256: string): string {
  const tag = `.upctl-${id.replace(/[^\w-]/g, '_')}-${sha256.slice(0, 16)}.part`
  const chars = [...`.${basename(path)}`]
  // A long name is cut short (never the tag), so that the partial file's name is one the folder can hold.
  while (chars.length > 1 && Buffer.byteLength(chars.join('') + tag) > NAME_MAX) chars.pop()
  return join(dirname(path), chars.join('') + tag)
}

/** The sha256 of a whole file, or undefined when it cannot be read. */
async function sha256Of(path: string): Promise<string | undefined> {
  try {
    return (await hashPrefix(path, Infinity)).digest('hex')
  } catch {
    return undefined
  }
}

/** The sha256 of a file's first `length` bytes, as a hash that can be carried on. */
async function hashPrefix(path: string, length: number): Promise<Hash> {
  const hash = createHash('sha256')
  if (length > 0)
    for await (const chunk of createReadStream(path, {
      start: 0,
      ...(Number.isFinite(length) ? { end: length - 1 } : {}),
    }))
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

/** Why get will not save under `shown`, and the two ways to go on. */
const taken = (shown: string, id: string): CliError =>
  new CliError(
    `${shown} already exists and is not upload ${id}'s file: nothing was written; save it elsewhere with -o FILE, or replace it with --force`,
  )

/**
 * Puts the checked download in place under `path`, at once (a reader sees the whole file or nothing). Without
 * `force`, a file that appeared there meanwhile is never replaced: a hard link fails if the name is taken,
 * where a rename would not.
 */
async function publish(partial: string, path: string, id: string, force: boolean): Promise<void> {
  const shown = printable(path)
  if (!force) {
    try {
      await link(partial, path)
      await rm(partial, { force: true })
      return
    } catch (error) {
      const code = (error as { code?: unknown }).code
      if (code === 'EEXIST') throw taken(shown, id)
      // A file system without hard links: look, then rename (a file made in between is the only risk).
      if (!['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EXDEV', 'EMLINK'].includes(String(code)))
        throw new CliError(`cannot save ${shown}: ${oneLine(error)}`)
      if (await entryAt(path)) throw taken(shown, id)
    }
  }
  try {
    await rename(partial, path)
  } catch (error) {
    throw new CliError(`cannot save ${shown}: ${oneLine(error)}`)
  }
}

/** One get: the upload, where its file is saved and its partial file, and how they are named in messages. */
interface Download {
  /** The id as given on the command line. */
  id: string
  upload: Upload
  path: string
  shown: string
  partial: string
  partialName: string
}

/**
 * `upctl get ID [-o FILE] [--force]`: downloads a stored file from /api/files/{id}/download. It is written
 * beside FILE, into a partial file named for the upload and its ETag (see partialPath), and appears under
 * FILE only once all of it is there and its sha256 is the upload's. A get that was cut off continues its own
 * partial file: only the rest is asked for, with Range and If-Range (the ETag). A FILE that is already
 * there is never written to: it is this very file (nothing to do), or get refuses, unless --force, which
 * replaces it once the download is checked.
 */
export async function get(
  ctx: Context,
  id: string,
  output: string | undefined,
  force = false,
): Promise<number> {
  const upload = await ctx.api.upload(id)
  if (upload.status !== 'COMPLETED')
    throw new CliError(`upload ${id} has no stored file to download: it is ${upload.status}`)
  const total = upload.totalSize
  const download = await downloadOf(id, upload, output)
  const { shown } = download
  const there = await whatIsAt(download.path, upload)
  if (there === 'this file') {
    const line = `${shown}: already complete (${formatBytes(total)}, sha256 ${upload.sha256})`
    return finished(ctx.mode, download, total, line)
  }
  if (there === 'something else' && !force) throw taken(shown, id)

  const have = await keptLength(download)
  const kept = await hashPrefix(download.partial, have)
  // Bars on a terminal; without one, only the final line.
  const display = createDisplay(ctx.mode, true)
  const row = display.row(download.path, { stage: 'getting', done: have, total, speed: 0 })
  const { from, sha256 } = await save(ctx, download, have, kept, row, force).finally(() => display.stop())
  const resumed = from > 0 ? `, resumed at ${formatBytes(from)}` : ''
  const line = `${shown}: saved, ${formatBytes(total)}${resumed}, sha256 ${sha256}`
  return finished(ctx.mode, download, from, line)
}

/** Where upload `id`'s file is saved: FILE, or its own name (in FILE, when FILE is a folder). */
async function downloadOf(id: string, upload: Upload, output: string | undefined): Promise<Download> {
  let path = output ?? localName(upload.filename, id)
  if ((await stat(path).catch(() => undefined))?.isDirectory())
    path = join(path, localName(upload.filename, id))
  const partial = partialPath(path, upload.id, upload.sha256)
  return { id, upload, path, shown: printable(path), partial, partialName: printable(basename(partial)) }
}

/** The end of a get: the done event with --json, `line` otherwise. */
function finished(mode: Context['mode'], download: Download, from: number, line: string): number {
  const { id, path, upload } = download
  if (mode === 'json')
    printJson({
      event: 'done',
      id,
      status: 'COMPLETED',
      file: path,
      size: upload.totalSize,
      sha256: upload.sha256,
      resumedFrom: from,
    })
  else printLine(line)
  return EXIT.OK
}

/** Whether `path` already holds this very file, something else, or nothing. */
async function whatIsAt(path: string, upload: Upload): Promise<'nothing' | 'this file' | 'something else'> {
  // Only read, never written: it may be anybody's.
  const there = await entryAt(path)
  if (!there) return 'nothing'
  const file = there.isSymbolicLink() ? await stat(path).catch(() => undefined) : there
  return file?.isFile() && file.size === upload.totalSize && (await sha256Of(path)) === upload.sha256
    ? 'this file'
    : 'something else'
}

/** How many bytes of the file a get that was cut off left in the partial file, to continue from. */
async function keptLength({ id, shown, partial, partialName, upload }: Download): Promise<number> {
  const kept = await entryAt(partial)
  if (kept && !kept.isFile())
    throw new CliError(
      `${partialName} (beside ${shown}) is not a partial download of upload ${id}; remove it and run get again`,
    )
  // Longer than the file: not a start of it, so written anew.
  return kept && kept.size <= upload.totalSize ? kept.size : 0
}

/**
 * Downloads what the partial file lacks (`kept` is the hash of the `have` bytes it holds), checks the whole,
 * and puts it in place: where the download began, and the file's sha256.
 */
async function save(
  ctx: Context,
  download: Download,
  have: number,
  kept: Hash,
  row: Row,
  force: boolean,
): Promise<{ from: number; sha256: string }> {
  const { from, got, hash } =
    have < download.upload.totalSize
      ? await receive(ctx, download, have, kept, row)
      : { from: have, got: have, hash: kept }
  const sha256 = await verified(download, got, hash, from)
  await publish(download.partial, download.path, download.id, force)
  return { from, sha256 }
}

/**
 * Downloads the file into the partial file, the rest of it from byte `have` or all of it anew: where it began
 * in the file, how many bytes the partial file then holds, and their hash.
 */
async function receive(
  ctx: Context,
  download: Download,
  have: number,
  kept: Hash,
  row: Row,
): Promise<{ from: number; got: number; hash: Hash }> {
  const response = await ask(ctx, download, have)
  // 200: the whole file (the server's is not the one the partial began), written anew.
  const from = response.status === 206 ? rangeStart(response, have, download.partialName) : 0
  const hash = from === have ? kept : createHash('sha256')
  if (!response.body) throw new CliError(`the server sent no body for upload ${download.id}`)
  const count = counter(ctx.mode, download, hash, from, row)
  await write(ctx, download, response.body, count.stream, from)
  return { from, got: count.got(), hash }
}

/** Asks for the file from byte `have` on (all of it when 0): a 200 with all of it, or a 206 with the rest. */
async function ask(ctx: Context, { id, shown, upload }: Download, have: number): Promise<Response> {
  const { target } = ctx.api
  const abort = new AbortController()
  ctx.signal.addEventListener('abort', () => abort.abort(), { once: true })
  const headers: Record<string, string> = { ...authHeaders(target) }
  if (have > 0) {
    headers.range = `bytes=${have}-`
    // Only if the stored file is still the one whose start we have: its ETag, which the partial is named for.
    headers['if-range'] = `"${upload.sha256}"`
  }
  const url = `${target.server}/api/files/${encodeURIComponent(id)}/download`
  let response: Response
  try {
    response = await fetch(url, { headers, signal: abort.signal })
  } catch (error) {
    if (ctx.signal.aborted)
      throw interrupted(`nothing more of ${shown} was downloaded; to continue, run: ${ctx.again}`)
    throw unreachable(target, error)
  }
  if (response.status !== 200 && response.status !== 206)
    throw new CliError(`cannot download upload ${id}: ${await refusal(response)}`)
  return response
}

/** Where a 206's bytes start in the file, which must be byte `have`, where the partial file stops. */
function rangeStart(response: Response, have: number, partialName: string): number {
  const range = /^bytes (\d+)-/.exec(response.headers.get('content-range') ?? '')
  if (Number(range?.[1]) !== have)
    throw new CliError(
      `the server sent a range that does not start at byte ${have}; ${partialName} is left as it was`,
    )
  return have
}

/**
 * Passes the downloaded bytes on, adding them to `hash` and counting them from `from`: on `row`, and with
 * --json as progress events (at most one each 100 ms). `got()` is the count so far.
 */
function counter(
  mode: Context['mode'],
  { id, path, upload }: Download,
  hash: Hash,
  from: number,
  row: Row,
): { stream: Transform; got: () => number } {
  const total = upload.totalSize
  const meter = new RateMeter()
  let got = from
  let lastEvent = 0
  let told = -1
  const tell = () => {
    told = got
    printJson({ event: 'progress', id, file: path, bytes: got, size: total })
  }
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, next) {
      hash.update(chunk)
      got += chunk.length
      row.update({ stage: 'getting', done: got, total, speed: meter.add(got) })
      const now = performance.now()
      if (mode === 'json' && now - lastEvent >= 100) {
        lastEvent = now
        tell()
      }
      next(null, chunk)
    },
    // The last progress event has every byte that came, however soon after the one before.
    flush(next) {
      if (mode === 'json' && told !== got) tell()
      next()
    },
  })
  return { stream, got: () => got }
}

/** Writes the body, through `count`, into the partial file; when cut off, says how much of it is kept. */
async function write(
  ctx: Context,
  { shown, partial, partialName, upload }: Download,
  body: NonNullable<Response['body']>,
  count: Transform,
  from: number,
): Promise<void> {
  const total = upload.totalSize
  try {
    await pipeline(
      Readable.fromWeb(body as WebReadableStream<Uint8Array>),
      count,
      // Continued: written from where the partial file stops; otherwise written anew.
      createWriteStream(partial, from > 0 ? { flags: 'r+', start: from } : { flags: 'w' }),
    )
  } catch (error) {
    // What is on disk, which may be less than what arrived.
    const saved = formatBytes((await entryAt(partial))?.size ?? 0)
    const aside = `kept in ${partialName}`
    if (ctx.signal.aborted)
      throw interrupted(
        `${saved} of ${formatBytes(total)} of ${shown} downloaded, ${aside}; to continue, run: ${ctx.again}`,
      )
    throw new CliError(
      `the download of ${shown} stopped at ${saved} of ${formatBytes(total)} (${oneLine(error)}), ${aside}; run the same command to continue`,
    )
  }
}

/** The sha256 of the downloaded file, once all of it is there and it is the upload's; a wrong one is removed. */
async function verified(
  { id, shown, partial, partialName, upload }: Download,
  got: number,
  hash: Hash,
  from: number,
): Promise<string> {
  const total = upload.totalSize
  if (got < total)
    throw new CliError(
      `the server ended the download of ${shown} at ${formatBytes(got)} of ${formatBytes(total)}, kept in ${partialName}; run the same command to continue`,
    )
  const sha256 = hash.digest('hex')
  if (got !== total || sha256 !== upload.sha256) {
    // It is ours, and wrong: nobody's bytes are lost, and the next get starts clean.
    await rm(partial, { force: true })
    throw new CliError(
      `the download of ${shown} is ${formatBytes(got)} with sha256 ${sha256}, not upload ${id}'s ${formatBytes(total)} with sha256 ${upload.sha256}${from > 0 ? ' (the part kept from an earlier get was not its start)' : ''}; nothing was saved under its name and the partial file is removed: run the same command to download it again`,
    )
  }
  return sha256
}
