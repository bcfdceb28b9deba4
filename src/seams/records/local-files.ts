import { open, readFile, rename } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import type { Adapter } from 'lowdb'
import { fsyncDir, writeAll } from '../../durable-fs.js'
import { isFinal, type UploadRecord } from '../../model/record.js'
import { recordProblem, withDefaults } from './stored.js'

/**
 * The embedded record store's files (see local.ts): the snapshot's format and how it is written, the
 * journal's entries and how they are checked and replayed.
 */

export type Entry =
  { s: number; put: UploadRecord } | { s: number; del: string } | { s: number; p: [string, number, string][] }

export interface Snapshot {
  version: 1 | 2
  /** The journal entries after this one are not in the snapshot (absent in version 1: 0). */
  seq?: number
  uploads: Record<string, UploadRecord>
}

/** The state file or journal cannot be trusted: start-up stops and nothing is touched. */
export class StateFileError extends Error {
  override readonly name = 'StateFileError'
}

/** Records serialised per slice while a snapshot is written; each slice is well under 5 ms. */
const SNAPSHOT_SLICE = 500

/**
 * lowdb's adapter for the snapshot: reads and validates it whole; writes it to a temp file in slices (so a
 * large state never blocks the event loop), fsyncs it, renames it into place and fsyncs the folder, so the
 * file is always one whole version, even after a power cut. (lowdb's own JSONFile never fsyncs.)
 */
export class SnapshotFile implements Adapter<Snapshot> {
  private readonly temp: string
  bytes = 0

  constructor(readonly file: string) {
    this.temp = join(dirname(file), `.${basename(file)}.tmp`)
  }

  async read(): Promise<Snapshot | null> {
    let text: string
    try {
      text = await readFile(this.file, 'utf8')
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null
      throw error
    }
    this.bytes = Buffer.byteLength(text)
    let data: unknown
    try {
      data = JSON.parse(text)
    } catch (error) {
      throw new StateFileError(`state file ${this.file} is not valid JSON: ${(error as Error).message}`)
    }
    const problem = snapshotProblem(data)
    if (problem) throw new StateFileError(`state file ${this.file} ${problem}`)
    return data as Snapshot
  }

  async write(data: Snapshot): Promise<void> {
    const handle = await open(this.temp, 'w')
    let size = 0
    try {
      const put = async (text: string) => {
        const buffer = Buffer.from(text)
        await writeAll(handle, buffer, size)
        size += buffer.length
      }
      await put(`{"version":2,"seq":${data.seq ?? 0},"uploads":{`)
      const ids = Object.keys(data.uploads)
      let first = true
      for (let i = 0; i < ids.length; i += SNAPSHOT_SLICE) {
        let slice = ''
        for (const id of ids.slice(i, i + SNAPSHOT_SLICE)) {
          const record = data.uploads[id]
          if (record === undefined) continue // removed while we wrote; its removal is in the journal
          slice += `${first ? '' : ','}${JSON.stringify(id)}:${JSON.stringify(record)}`
          first = false
        }
        await put(slice)
      }
      await put('}}')
      await handle.datasync()
    } finally {
      await handle.close()
    }
    await rename(this.temp, this.file)
    await fsyncDir(dirname(this.file))
    this.bytes = size
  }
}

function snapshotProblem(data: unknown): string | undefined {
  if (typeof data !== 'object' || data === null || Array.isArray(data))
    return `holds ${JSON.stringify(data)?.slice(0, 40)}, not a state document`
  const doc = data as Record<string, unknown>
  if (doc.version !== 1 && doc.version !== 2)
    return `has version ${JSON.stringify(doc.version)}; this server reads versions 1 and 2`
  if (
    doc.seq !== undefined &&
    !(typeof doc.seq === 'number' && Number.isSafeInteger(doc.seq) && doc.seq >= 0)
  )
    return 'has no valid seq'
  if (typeof doc.uploads !== 'object' || doc.uploads === null || Array.isArray(doc.uploads))
    return 'has no uploads object'
  for (const [id, stored] of Object.entries(doc.uploads)) {
    const record = withDefaults(stored)
    ;(doc.uploads as Record<string, unknown>)[id] = record
    const problem = recordProblem(record, id)
    if (problem) return `has an upload ${JSON.stringify(id.slice(0, 80))} that ${problem}`
  }
  return undefined
}

export function entryProblem(entry: unknown): string | undefined {
  if (typeof entry !== 'object' || entry === null) return 'is not an object'
  const e = entry as Record<string, unknown>
  if (typeof e.s !== 'number' || !Number.isSafeInteger(e.s)) return 'has no sequence number'
  if ('put' in e) {
    e.put = withDefaults(e.put)
    return recordProblem(e.put) && `puts an upload that ${recordProblem(e.put)}`
  }
  if ('del' in e) return typeof e.del === 'string' ? undefined : 'removes no id'
  if ('p' in e && Array.isArray(e.p)) {
    const ok = e.p.every(
      (p) =>
        Array.isArray(p) &&
        typeof p[0] === 'string' &&
        Number.isSafeInteger(p[1]) &&
        typeof p[2] === 'string',
    )
    return ok ? undefined : 'has malformed progress'
  }
  return 'is of no known kind'
}

export const JOURNAL = /\.journal\.(\d+)$/

export const journalBaseOf = (file: string) => file.replace(/\.json$/, '') + '.journal'

/** Byte counts apply only to a record that has not ended. */
export const unfinished = (record: UploadRecord) => !isFinal(record.status)

export function applyEntry(records: Record<string, UploadRecord>, entry: Entry): void {
  if ('put' in entry) records[entry.put.id] = entry.put
  else if ('del' in entry) Reflect.deleteProperty(records, entry.del)
  else applyProgress(records, entry.p)
}

export function applyProgress(
  records: Record<string, UploadRecord>,
  entries: [string, number, string][],
): void {
  for (const [id, uploadedSize, updatedAt] of entries) {
    const record = Object.hasOwn(records, id) ? records[id] : undefined
    if (record && unfinished(record) && uploadedSize <= record.totalSize)
      records[id] = Object.freeze({ ...record, uploadedSize, updatedAt })
  }
}
