import { STATUSES, UPLOAD_FIELDS, type Upload, type UploadStatus } from './api.js'
import type { Context } from './context.js'
import { EXIT, usage } from './errors.js'
import { printable, printJson, printLine } from './output.js'
import { formatBytes, formatRate, formatTarget, percent } from './units.js'

/** The name a status goes by on screen: in_progress, completed… (as the REST API writes them). */
const statusName = (status: UploadStatus): string => status.toLowerCase()

/** `--status completed,paused` → ['COMPLETED', 'PAUSED']; a usage error for anything else. */
export function parseStatuses(raw: string): UploadStatus[] {
  return raw.split(',').map((word) => {
    const status = word.trim().toUpperCase().replace(/[- ]/g, '_')
    const known = STATUSES.find((s) => s === status)
    if (!known)
      throw usage(
        `unknown status ${JSON.stringify(word.trim())}: use ${STATUSES.map(statusName).join(', ')} (or several, comma-separated)`,
        'ls',
      )
    return known
  })
}

const PAGE = 100

/** Every upload (of `statuses`, when given), oldest first, a page at a time. */
async function allUploads(
  ctx: Context,
  statuses: UploadStatus[] | undefined,
): Promise<(Upload & { cursor: string })[]> {
  const uploads: (Upload & { cursor: string })[] = []
  let after: string | undefined
  for (;;) {
    const { uploads: page } = await ctx.api.request<{ uploads: (Upload & { cursor: string })[] }>(
      `query List($status: [UploadStatus!], $first: Int, $after: String) {
        uploads(status: $status, first: $first, after: $after) { ${UPLOAD_FIELDS} cursor }
      }`,
      { status: statuses, first: PAGE, after },
    )
    uploads.push(...page)
    const last = page.at(-1)
    if (page.length < PAGE || !last) return uploads
    after = last.cursor
  }
}

function progressCell(upload: Upload): string {
  if (upload.status === 'RECEIVING') return `${percent(upload.receivedSize, upload.totalSize)}% recv`
  return `${percent(upload.uploadedSize, upload.totalSize)}%`
}

function table(rows: string[][]): string {
  const widths =
    rows[0]?.map((_, column) => Math.max(...rows.map((row) => [...(row[column] ?? '')].length))) ?? []
  return rows
    .map((row) =>
      row
        .map((cell, column) =>
          column === row.length - 1 ? cell : cell + ' '.repeat((widths[column] ?? 0) - [...cell].length),
        )
        .join('  '),
    )
    .join('\n')
}

const NAME_MAX = 40

function shortName(name: string): string {
  const chars = [...printable(name)]
  return chars.length <= NAME_MAX ? chars.join('') : `${chars.slice(0, NAME_MAX - 1).join('')}…`
}

/** `upctl ls [--status S] [--json]`: every upload, oldest first. */
export async function ls(ctx: Context, statuses: UploadStatus[] | undefined): Promise<number> {
  const uploads = await allUploads(ctx, statuses)
  if (ctx.mode === 'json') {
    printJson(uploads.map(({ cursor: _cursor, removed: _removed, ...upload }) => upload))
    return EXIT.OK
  }
  if (uploads.length === 0) {
    printLine(statuses ? `no uploads that are ${statuses.map(statusName).join(' or ')}` : 'no uploads')
    return EXIT.OK
  }
  const rows = [
    ['ID', 'NAME', 'STATUS', 'PROGRESS', 'SPEED (NOW / TARGET)', 'SIZE'],
    ...uploads.map((u) => [
      u.id,
      shortName(u.filename),
      statusName(u.status),
      progressCell(u),
      `${formatRate(u.currentSpeed)} / ${formatTarget(u.targetSpeed)}`,
      formatBytes(u.totalSize),
    ]),
  ]
  printLine(table(rows))
  return EXIT.OK
}

/** `upctl status ID`: one upload, a field a line. */
export async function status(ctx: Context, id: string): Promise<number> {
  const upload = await ctx.api.upload(id)
  if (ctx.mode === 'json') {
    const { removed: _removed, ...rest } = upload
    printJson(rest)
    return EXIT.OK
  }
  const lines: [string, string][] = [
    ['id', upload.id],
    ['name', printable(upload.filename)],
    ['status', statusName(upload.status)],
    [
      'stored',
      `${percent(upload.uploadedSize, upload.totalSize)}% (${formatBytes(upload.uploadedSize)} of ${formatBytes(upload.totalSize)})`,
    ],
    ['received', `${formatBytes(upload.receivedSize)} of ${formatBytes(upload.totalSize)}`],
    ['speed', `${formatRate(upload.currentSpeed)} now, target ${formatTarget(upload.targetSpeed)}`],
    ['sha256', upload.sha256 || '(not yet: still receiving)'],
    ['created', upload.createdAt],
  ]
  if (upload.error) lines.push(['error', printable(upload.error)])
  printLine(lines.map(([key, value]) => `${`${key}:`.padEnd(10)}${value}`).join('\n'))
  return EXIT.OK
}

type Change = 'pause' | 'resume' | 'speed' | 'cancel' | 'rm'

const MUTATIONS: Record<Change, { field: string; signature: string; args: string }> = {
  pause: { field: 'pauseUpload', signature: '$id: ID!', args: 'id: $id' },
  resume: { field: 'resumeUpload', signature: '$id: ID!, $speed: SafeInt', args: 'id: $id, speed: $speed' },
  speed: { field: 'setSpeed', signature: '$id: ID!, $speed: SafeInt!', args: 'id: $id, speed: $speed' },
  cancel: { field: 'cancelUpload', signature: '$id: ID!', args: 'id: $id' },
  rm: { field: 'deleteFile', signature: '$id: ID!', args: 'id: $id' },
}

function changed(change: Change, u: Upload): string {
  const name = `${u.id} (${printable(u.filename)})`
  const where = `${percent(u.uploadedSize, u.totalSize)}% (${formatBytes(u.uploadedSize)} of ${formatBytes(u.totalSize)})`
  switch (change) {
    case 'pause':
      return `paused ${name} at ${where}`
    case 'resume':
      return `resumed ${name} at ${where}, at ${formatTarget(u.targetSpeed)}`
    case 'speed':
      return `${name} now goes at ${formatTarget(u.targetSpeed)} (${statusName(u.status)})`
    case 'cancel':
      return `canceled ${name}; its partial bytes are removed`
    case 'rm':
      return `deleted ${name}: its stored file and its record`
  }
}

/** pause, resume, speed, cancel and rm: one mutation each, answered with the upload as it is now. */
export async function control(ctx: Context, change: Change, id: string, speed?: number): Promise<number> {
  const { field, signature, args } = MUTATIONS[change]
  const data = await ctx.api.request<Record<string, Upload>>(
    `mutation Change(${signature}) { ${field}(${args}) { ${UPLOAD_FIELDS} } }`,
    speed === undefined ? { id } : { id, speed },
  )
  const upload = data[field]
  if (!upload) throw new Error(`the server's answer has no ${field}`)
  if (ctx.mode === 'json') {
    const { removed: _removed, ...rest } = upload
    printJson(rest)
  } else printLine(changed(change, upload))
  return EXIT.OK
}
