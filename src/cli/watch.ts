import { ended, type Upload } from './api.js'
import { interrupted, whenAborted, type Context } from './context.js'
import { EXIT } from './errors.js'
import {
  createDisplay,
  printable,
  printJson,
  hashNote,
  type Mode,
  type Progress,
  type Row,
} from './output.js'
import { formatBytes } from './units.js'

/** Where an upload stands, as a row shows it. */
export function progressOf(upload: Upload): Progress {
  const receiving = upload.status === 'RECEIVING'
  return {
    stage: receiving ? 'receiving' : upload.status === 'PAUSED' ? 'paused' : 'storing',
    done: receiving ? upload.receivedSize : upload.uploadedSize,
    total: upload.totalSize,
    speed: upload.currentSpeed,
    expected: upload.status === 'IN_PROGRESS' ? upload.targetSpeed : 0,
  }
}

/** How an upload ended, on one line. */
export function endLine(upload: Upload, mode: Mode): string {
  const name = printable(upload.filename)
  if (upload.removed) return `${name}: deleted (id ${upload.id})`
  switch (upload.status) {
    case 'COMPLETED':
      return `${name}: completed, ${formatBytes(upload.totalSize)} stored (id ${upload.id})${hashNote(upload.sha256, mode)}`
    case 'CANCELED':
      return `${name}: canceled (id ${upload.id})`
    case 'FAILED':
      return `${name}: failed: ${printable(upload.error ?? 'no reason given')} (id ${upload.id})`
    default:
      return `${name}: ${upload.status.toLowerCase()} (id ${upload.id})`
  }
}

/**
 * `upctl watch [ID]`: a live view of one upload until it ends (exit 0 if it completed, 1 otherwise), or of
 * every upload until Ctrl-C (exit 0). Driven by the uploadProgress subscription.
 */
export async function watch(ctx: Context, id: string | undefined): Promise<number> {
  const { api, mode } = ctx
  // Fails fast, in one line, for a wrong server, token or id (the subscription would retry a while first).
  if (id === undefined) await api.ping()
  else await api.upload(id)
  const display = createDisplay(mode)
  const rows = new Map<string, Row>()
  let last: Upload | undefined
  const follow = api.followToEnd(id, (upload) => {
    last = upload
    if (mode === 'json') return printJson(upload)
    let row = rows.get(upload.id)
    const over = ended(upload.status) || upload.removed
    if (!row) {
      // An upload first seen over (deleted, or ended before we came) gets its final line and no bar.
      if (over && id === undefined) return display.note(endLine(upload, mode))
      row = display.row(upload.filename, progressOf(upload))
      rows.set(upload.id, row)
    }
    // A completed upload's bar shows all of it stored before its final line replaces it.
    if (!over || (upload.status === 'COMPLETED' && !upload.removed)) row.update(progressOf(upload))
    if (!over) return
    row.finish(endLine(upload, mode))
    rows.delete(upload.id)
  })
  const outcome = await Promise.race([follow.done.then(() => 'done' as const), whenAborted(ctx.signal)])
  follow.stop()
  display.stop()
  if (outcome === 'done') return last?.status === 'COMPLETED' && !last.removed ? EXIT.OK : EXIT.FAILURE
  // Ctrl-C is how a watch of everything ends; a watch of one upload was cut short.
  if (id === undefined) return EXIT.OK
  throw interrupted(`stopped watching upload ${id}, which goes on; to watch it again, run: ${ctx.again}`)
}
