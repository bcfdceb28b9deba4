import { createHash, type Hash } from 'node:crypto'
import { createReadStream, createWriteStream, type Stats } from 'node:fs'
import { link, lstat, rename, rm, stat } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
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
  const { api, mode } = ctx
  const upload = await api.upload(id)
  if (upload.status !== 'COMPLETED')
    throw new CliError(`upload ${id} has no stored file to download: it is ${upload.status}`)
  const total = upload.totalSize
  let path = output ?? localName(upload.filename, id)
  if ((await stat(path).catch(() => undefined))?.isDirectory())
    path = join(path, localName(upload.filename, id))
  const shown = printable(path)
  const partial = partialPath(path, upload.id, upload.sha256)
  const partialName = printable(basename(partial))

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
  // Only read, never written: it may be anybody's.
  const there = await entryAt(path)
  if (there) {
    const file = there.isSymbolicLink() ? await stat(path).catch(() => undefined) : there
    if (file?.isFile() && file.size === total && (await sha256Of(path)) === upload.sha256)
      return done(total, `${shown}: already complete (${formatBytes(total)}, sha256 ${upload.sha256})`)
    if (!force) throw taken(shown, id)
  }

  const kept = await entryAt(partial)
  if (kept && !kept.isFile())
    throw new CliError(
      `${partialName} (beside ${shown}) is not a partial download of upload ${id}; remove it and run get again`,
    )
  // Longer than the file: not a start of it, so written anew.
  const have = kept && kept.size <= total ? kept.size : 0

  let hash = await hashPrefix(partial, have)
  // Bars on a terminal; without one, only the final line.
  const display = createDisplay(mode, true)
  const row = display.row(path, { stage: 'getting', done: have, total, speed: 0 })
  let got = have
  let from = have
  if (have < total) {
    const abort = new AbortController()
    ctx.signal.addEventListener('abort', () => abort.abort(), { once: true })
    const headers: Record<string, string> = { ...authHeaders(api.target) }
    if (have > 0) {
      headers.range = `bytes=${have}-`
      // Only if the stored file is still the one whose start we have: its ETag, which the partial is named for.
      headers['if-range'] = `"${upload.sha256}"`
    }
    const url = `${api.target.server}/api/files/${encodeURIComponent(id)}/download`
    let response: Response
    try {
      response = await fetch(url, { headers, signal: abort.signal })
    } catch (error) {
      display.stop()
      if (ctx.signal.aborted)
        throw interrupted(`nothing more of ${shown} was downloaded; to continue, run: ${ctx.again}`)
      throw unreachable(api.target, error)
    }
    if (response.status !== 200 && response.status !== 206) {
      display.stop()
      throw new CliError(`cannot download upload ${id}: ${await refusal(response)}`)
    }
    // 200: the whole file (the server's is not the one the partial began), written anew.
    from = response.status === 206 ? have : 0
    if (response.status === 206) {
      const range = /^bytes (\d+)-/.exec(response.headers.get('content-range') ?? '')
      if (Number(range?.[1]) !== have) {
        display.stop()
        throw new CliError(
          `the server sent a range that does not start at byte ${have}; ${partialName} is left as it was`,
        )
      }
    } else if (have > 0) hash = createHash('sha256')
    if (!response.body) {
      display.stop()
      throw new CliError(`the server sent no body for upload ${id}`)
    }
    const meter = new RateMeter()
    got = from
    let lastEvent = 0
    let told = -1
    const tell = () => {
      told = got
      printJson({ event: 'progress', id, file: path, bytes: got, size: total })
    }
    const count = new Transform({
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
    try {
      await pipeline(
        Readable.fromWeb(response.body as WebReadableStream<Uint8Array>),
        count,
        // Continued: written from where the partial file stops; otherwise written anew.
        createWriteStream(partial, from > 0 ? { flags: 'r+', start: from } : { flags: 'w' }),
      )
    } catch (error) {
      display.stop()
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

  if (got < total) {
    display.stop()
    throw new CliError(
      `the server ended the download of ${shown} at ${formatBytes(got)} of ${formatBytes(total)}, kept in ${partialName}; run the same command to continue`,
    )
  }
  const sha256 = hash.digest('hex')
  if (got !== total || sha256 !== upload.sha256) {
    display.stop()
    // It is ours, and wrong: nobody's bytes are lost, and the next get starts clean.
    await rm(partial, { force: true })
    throw new CliError(
      `the download of ${shown} is ${formatBytes(got)} with sha256 ${sha256}, not upload ${id}'s ${formatBytes(total)} with sha256 ${upload.sha256}${from > 0 ? ' (the part kept from an earlier get was not its start)' : ''}; nothing was saved under its name and the partial file is removed: run the same command to download it again`,
    )
  }
  try {
    await publish(partial, path, id, force)
  } finally {
    display.stop()
  }
  const resumed = from > 0 ? `, resumed at ${formatBytes(from)}` : ''
  return done(from, `${shown}: saved, ${formatBytes(total)}${resumed}, sha256 ${sha256}`)
}
