import { mkdir, open, readdir, readFile, rm, type FileHandle } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { Low } from 'lowdb'
import { fsyncDir, writeAll } from '../../durable-fs.js'
import type { UploadRecord, UploadStatus } from '../../model/record.js'
import type { HookEvent } from '../outbox/index.js'
import { LocalOutbox } from '../outbox/local.js'
import { OutboxState, type OutboxChange, type OutboxImage } from '../outbox/state.js'
import type { Page, PageQuery, Progress, RecordStore } from './index.js'
import {
  applyEntry,
  entryProblem,
  JOURNAL,
  journalBaseOf,
  SnapshotFile,
  StateFileError,
  type Entry,
  type Snapshot,
} from './local-files.js'
import { InMemoryRecords } from './in-memory.js'

export { StateFileError } from './local-files.js'

/** A line carries `ev` only when the change causes events: without hooks, lines are as they always were. */
const evOf = (events: readonly HookEvent[] | undefined) =>
  events && events.length > 0 ? { ev: [...events] } : {}

/** A new snapshot once the journal is larger than this and larger than the snapshot itself. */
const COMPACT_AT_BYTES = 4 * 1024 * 1024

interface Pending {
  seq: number
  line: string
  apply: () => void
  resolve: () => void
  reject: (error: unknown) => void
}

/**
 * The embedded record store: every record in memory, persisted per change.
 *
 * - The snapshot is a lowdb JSON document (`STATE_FILE`, default `.uploads.json`): `{version, seq, uploads}`.
 * - Every change after it is one line appended to a journal (`.uploads.journal.<first seq>`), fsynced before
 *   the change is acknowledged or visible. Changes that arrive while a flush is under way go out together
 *   in the next one (group commit), so a thousand small uploads a second cost a few hundred fsyncs, not
 *   thousands of whole-document rewrites.
 * - When the journal outgrows the snapshot, a new snapshot is written in the background (streamed out in
 *   slices, so 100k records never block the event loop for long) and the old journal files are removed.
 *
 * Replaying a journal entry is idempotent (a whole record, a removal, or byte counts), so a snapshot taken
 * while changes go on can only hold state at or after its `seq`, and replaying from `seq` gives the truth.
 */
export class LocalStore implements RecordStore {
  /** Every record, with the creation order and owner index that pages walk. */
  private readonly memory: InMemoryRecords
  private seq: number
  private journal: { handle: FileHandle; path: string; size: number } | undefined
  private queue: Pending[] = []
  private flushing: Promise<void> | undefined
  private compacting: Promise<void> | undefined
  /** The journal vanished: nothing more is written until a fresh snapshot is on disk. */
  private lostJournal = false
  private closed = false
  private notifications: LocalOutbox | undefined

  private constructor(
    private readonly db: Low<Snapshot>,
    private readonly snapshot: SnapshotFile,
    private readonly journalBase: string,
    seq: number,
    /** The hooks' outbox (issue 23): its changes are lines of this journal, its image part of the snapshot. */
    private readonly hooks: OutboxState,
  ) {
    this.memory = new InMemoryRecords(db.data.uploads)
    this.seq = seq
  }

  /** Whether any state is on disk for this file (a snapshot or a journal). */
  static async exists(file: string): Promise<boolean> {
    const names = await readdir(dirname(file)).catch(() => [] as string[])
    const base = basename(journalBaseOf(file))
    return (
      names.includes(basename(file)) ||
      names.some((name) => name.startsWith(`${base}.`) && JOURNAL.test(name))
    )
  }

  /**
   * Reads the snapshot and replays the journal. Anything malformed stops start-up with a StateFileError that
   * names the file and the problem; only a torn last line (a write cut off by a crash, never acknowledged)
   * is dropped.
   */
  static async open(file: string): Promise<LocalStore> {
    await mkdir(dirname(file), { recursive: true })
    const snapshot = new SnapshotFile(file)
    const db = new Low<Snapshot>(snapshot, { version: 2, seq: 0, uploads: {} })
    await db.read()
    const base = journalBaseOf(file)
    const journals = (await readdir(dirname(file)))
      .filter((name) => name.startsWith(`${basename(base)}.`) && JOURNAL.test(name))
      .map((name) => ({ path: join(dirname(file), name), first: Number(JOURNAL.exec(name)?.[1]) }))
      .sort((a, b) => a.first - b.first)
    const from = db.data.seq ?? 0
    const hooks = new OutboxState()
    if (db.data.outbox) hooks.load(db.data.outbox)
    // The oldest journal must begin where the snapshot ends: one that begins later means the changes in
    // between are gone (a snapshot that was lost or replaced, a journal removed), and replaying the rest
    // over what is left would forget uploads whose bytes the sweep would then delete.
    const oldest = journals[0]
    if (oldest && oldest.first > from + 1) {
      const said =
        snapshot.bytes === 0
          ? `the state file ${file} is missing`
          : `the state file ${file} ends at change ${from}`
      throw new StateFileError(
        `${said}, but the oldest journal ${oldest.path} begins at change ${oldest.first}: the changes in between are lost`,
      )
    }
    let seq = from
    let last: { path: string; size: number } | undefined
    for (const journal of journals) {
      const text = await readFile(journal.path, 'utf8')
      const lines = text.split('\n')
      // A final piece without its newline is a write that a crash cut off: it was never acknowledged.
      const torn = lines.pop() ?? ''
      let size = 0
      for (const [index, line] of lines.entries()) {
        let entry: unknown
        try {
          entry = JSON.parse(line)
        } catch {
          throw new StateFileError(
            `journal ${journal.path} line ${index + 1} is not valid JSON; the state cannot be trusted`,
          )
        }
        const problem = entryProblem(entry)
        if (problem) throw new StateFileError(`journal ${journal.path} line ${index + 1} ${problem}`)
        const e = entry as Entry
        size += Buffer.byteLength(line) + 1
        if (e.s <= from) continue
        seq = Math.max(seq, e.s)
        applyEntry(db.data.uploads, e, (change) => hooks.apply(change))
      }
      last = { path: journal.path, size }
      if (torn !== '' && journal === journals.at(-1)) {
        const handle = await open(journal.path, 'r+')
        await handle.truncate(size)
        await handle.sync()
        await handle.close()
      } else if (torn !== '') {
        throw new StateFileError(
          `journal ${journal.path} ends in a partial line, but a newer journal follows it`,
        )
      }
    }
    // A first start writes an empty snapshot, so "no state on disk" always means it was lost (see
    // openEmbedded in seams/embedded.ts).
    if (snapshot.bytes === 0 && journals.length === 0) await db.write()
    const store = new LocalStore(db, snapshot, base, seq, hooks)
    if (last) store.journal = { handle: await open(last.path, 'r+'), path: last.path, size: last.size }
    return store
  }

  // ---- reads ---------------------------------------------------------------------------------------------

  async get(id: string): Promise<UploadRecord | undefined> {
    return this.memory.get(id)
  }

  async page(query: PageQuery): Promise<Page> {
    return this.memory.page(query)
  }

  async unfinished(): Promise<UploadRecord[]> {
    return this.memory.unfinished()
  }

  async countByStatus(): Promise<Record<UploadStatus, number>> {
    return this.memory.countByStatus()
  }

  // ---- writes --------------------------------------------------------------------------------------------

  put(record: UploadRecord, _fence?: string, events?: readonly HookEvent[]): Promise<void> {
    const frozen = Object.freeze({ ...record })
    return this.append({ put: frozen, ...evOf(events) }, () => {
      this.memory.set(frozen)
      this.queueEvents(events)
    })
  }

  remove(id: string, _fence?: string, events?: readonly HookEvent[]): Promise<void> {
    return this.append({ del: id, ...evOf(events) }, () => {
      this.memory.delete(id)
      this.queueEvents(events)
    })
  }

  /**
   * The hooks' outbox, kept in this store: an event lands in the same journal line as the record change
   * that causes it, and the outbox's own changes are lines of the same journal.
   */
  outbox(): LocalOutbox {
    return (this.notifications ??= LocalOutbox.over(this.hooks, {
      append: (change, apply) => this.append({ o: change }, apply),
      close: async () => undefined, // the store closes the journal
    }))
  }

  private queueEvents(events: readonly HookEvent[] | undefined): void {
    if (events && events.length > 0) this.hooks.apply({ add: [...events] })
  }

  progress(entries: readonly Progress[]): Promise<void> {
    if (entries.length === 0) return Promise.resolve()
    const p = entries.map((e): [string, number, string] => [e.id, e.uploadedSize, e.updatedAt])
    return this.append({ p }, () => this.memory.progress(p))
  }

  async close(): Promise<void> {
    this.closed = true
    await this.flushing
    await this.compacting?.catch(() => undefined)
    await this.journal?.handle.close()
    this.journal = undefined
  }

  private append(
    entry:
      | { put: UploadRecord; ev?: HookEvent[] }
      | { del: string; ev?: HookEvent[] }
      | { p: unknown }
      | { o: OutboxChange },
    apply: () => void,
  ): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the record store is closed'))
    const seq = ++this.seq
    const line = `${JSON.stringify({ s: seq, ...entry })}\n`
    return new Promise((resolve, reject) => {
      this.queue.push({ seq, line, apply, resolve, reject })
      this.flushing ??= this.flush()
    })
  }

  /** Writes everything queued, one fsync per batch, until the queue is empty. */
  private async flush(): Promise<void> {
    for (;;) {
      if (this.queue.length === 0) {
        // Rotating here, with nothing queued and no other flush possible, means every seq handed out so
        // far is applied and in the old journal, and every later one goes to the new journal.
        if (!this.shouldCompact()) break
        await this.rotate().catch(() => undefined)
        continue
      }
      const batch = this.queue.splice(0)
      try {
        await this.write(Buffer.from(batch.map((p) => p.line).join('')), batch[0]?.seq ?? this.seq)
        for (const pending of batch) pending.apply()
        for (const pending of batch) pending.resolve()
      } catch (error) {
        for (const pending of batch) pending.reject(error)
      }
    }
    this.flushing = undefined
  }

  private async write(data: Buffer, firstSeq: number): Promise<void> {
    let journal = this.journal
    // The folder (or the journal) may have been removed under us: writing on to an unlinked file would
    // lose every change without a word. A new journal may start only after a snapshot of everything known
    // is durable (else a restart would replay it over nothing), so until one is, every write fails.
    if (journal && (await journal.handle.stat()).nlink === 0) {
      await journal.handle.close().catch(() => undefined)
      this.journal = journal = undefined
      this.lostJournal = true
    }
    if (this.lostJournal) {
      await mkdir(dirname(this.snapshot.file), { recursive: true })
      await this.writeSnapshot(firstSeq - 1, this.hooks.image())
      this.lostJournal = false
    }
    if (!journal) journal = this.journal = await this.openJournal(firstSeq)
    try {
      await writeAll(journal.handle, data, journal.size)
      await journal.handle.datasync()
      journal.size += data.length
    } catch (error) {
      // Cut off whatever part of the batch did land, so the next write does not follow a torn line.
      await journal.handle.truncate(journal.size).catch(() => undefined)
      throw error
    }
  }

  private async openJournal(firstSeq: number) {
    const path = `${this.journalBase}.${firstSeq}`
    await mkdir(dirname(path), { recursive: true })
    const handle = await open(path, 'wx').catch(async (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw error
      return open(path, 'r+')
    })
    await fsyncDir(dirname(path))
    return { handle, path, size: (await handle.stat()).size }
  }

  private shouldCompact(): boolean {
    const size = this.journal?.size ?? 0
    return !this.closed && !this.compacting && size > COMPACT_AT_BYTES && size > this.snapshot.bytes
  }

  /** Starts a new journal after `seq`, then writes a snapshot at `seq` in the background. */
  private async rotate(): Promise<void> {
    const old = this.journal
    const seq = this.seq
    // Taken now, with every change up to seq applied and none after: replaying an outbox change twice is
    // not idempotent (a retry counts an attempt), so the image must be exactly the state at seq.
    const outbox = this.hooks.image()
    this.journal = await this.openJournal(seq + 1)
    await old?.handle.close()
    this.compacting = this.writeSnapshot(seq, outbox)
      .then(() => this.removeJournalsUpTo(seq))
      .catch(() => undefined) // the old journals stay; the next rotation tries again
      .finally(() => (this.compacting = undefined))
  }

  /** One snapshot write at a time (a compaction and a folder that vanished could otherwise overlap). */
  private snapshotting: Promise<void> = Promise.resolve()
  private writeSnapshot(seq: number, outbox: OutboxImage): Promise<void> {
    const write = this.snapshotting.then(() => {
      this.db.data.seq = seq
      // Absent with nothing pending, so a server without hooks writes the snapshot it always did.
      if (outbox.pending.length > 0 || outbox.dead.length > 0) this.db.data.outbox = outbox
      else delete this.db.data.outbox
      return this.db.write()
    })
    this.snapshotting = write.catch(() => undefined)
    return write
  }

  private async removeJournalsUpTo(seq: number): Promise<void> {
    const dir = dirname(this.snapshot.file)
    const prefix = `${basename(this.journalBase)}.`
    for (const name of await readdir(dir)) {
      const first = Number(JOURNAL.exec(name)?.[1] ?? NaN)
      if (name.startsWith(prefix) && first <= seq && join(dir, name) !== this.journal?.path)
        await rm(join(dir, name), { force: true })
    }
  }

  /** For tests and benchmarks: compact now, whatever the journal's size. */
  async compactNow(): Promise<void> {
    while (this.flushing) await this.flushing
    await this.rotate()
    await this.compacting
  }
}
