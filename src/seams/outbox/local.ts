import { mkdir, open, readFile, rename, type FileHandle } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import type { DeadLetter, HookEvent, Outbox, OutboxStats, PendingEvent } from './index.js'
import { OutboxState, type OutboxChange, type OutboxImage } from './state.js'

/**
 * Where the embedded outbox's changes go. Today its own file (FileJournal, below); once the records store
 * carries them (issue 23, round 2), the records journal, so an event and the record change that causes it
 * are one line and one fsync.
 */
export interface OutboxJournal {
  /** Makes the change durable, then runs `apply` (before any later change is applied), then resolves. */
  append(change: OutboxChange, apply: () => void): Promise<void>
  close(): Promise<void>
}

/**
 * The embedded outbox: an OutboxState whose every change is durable before it is applied (so memory never
 * holds what the disk does not, as in the records store), and claims held in memory, since one process
 * delivers all of its events.
 */
export class LocalOutbox implements Outbox {
  private constructor(
    private readonly state: OutboxState,
    private readonly journal: OutboxJournal,
  ) {}

  /** Opens (or creates) the outbox kept in `file`, replaying it. */
  static async open(file: string): Promise<LocalOutbox> {
    const state = new OutboxState()
    const journal = await FileJournal.open(file, state)
    return new LocalOutbox(state, journal)
  }

  private change(change: OutboxChange): Promise<void> {
    return this.journal.append(change, () => this.state.apply(change))
  }

  add(events: readonly HookEvent[]): Promise<void> {
    return events.length === 0 ? Promise.resolve() : this.change({ add: [...events] })
  }

  async claim(now: number, limit: number, leaseMs: number): Promise<PendingEvent[]> {
    return this.state.claim(now, limit, leaseMs)
  }

  ack(event: PendingEvent): Promise<void> {
    return this.change({ ack: [event.uploadId, event.eventId] })
  }

  retry(event: PendingEvent, nextAt: number, error: string): Promise<void> {
    return this.change({ retry: [event.uploadId, event.eventId, nextAt, error] })
  }

  deadLetter(event: PendingEvent, error: string, now: number): Promise<void> {
    return this.change({ dead: [event.uploadId, event.eventId, error, now] })
  }

  async stats(): Promise<OutboxStats> {
    return this.state.stats()
  }

  async pending(limit: number): Promise<PendingEvent[]> {
    return this.state.pending(limit)
  }

  async deadLetters(limit: number): Promise<DeadLetter[]> {
    return this.state.deadLetters(limit)
  }

  async requeue(eventId: string, now: number): Promise<boolean> {
    if (!this.state.hasDead(eventId)) return false
    await this.change({ requeue: [eventId, now] })
    return true
  }

  close(): Promise<void> {
    return this.journal.close()
  }
}

/** Rewrite the file as one snapshot line once it is this large and four times what it holds. */
const COMPACT_AT_BYTES = 1024 * 1024

type Line = OutboxChange | { image: OutboxImage }

/**
 * One JSON line per change, fsynced in groups (changes that arrive during a flush go out together in the
 * next), and a torn last line (a crash mid-write, never acknowledged) dropped on open. When it grows, the
 * file is replaced by a single `{image}` line of what is still pending, written beside it and renamed in.
 */
class FileJournal implements OutboxJournal {
  private queue: {
    line: string
    apply: () => void
    resolve: () => void
    reject: (error: unknown) => void
  }[] = []
  private flushing: Promise<void> | undefined
  private closed = false
  /** The size at which compacting is next considered: each look costs a serialisation of all pending. */
  private compactAt = COMPACT_AT_BYTES

  private constructor(
    private readonly file: string,
    private handle: FileHandle,
    private size: number,
    private readonly state: OutboxState,
  ) {}

  static async open(file: string, state: OutboxState): Promise<FileJournal> {
    await mkdir(dirname(file), { recursive: true })
    const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return ''
      throw error
    })
    const lines = text.split('\n')
    const torn = lines.pop() ?? ''
    let size = 0
    for (const [index, line] of lines.entries()) {
      let parsed: Line
      try {
        parsed = JSON.parse(line) as Line
      } catch {
        throw new Error(
          `hooks outbox ${file} line ${index + 1} is not valid JSON; its deliveries cannot be trusted`,
        )
      }
      if ('image' in parsed) state.load(parsed.image)
      else state.apply(parsed)
      size += Buffer.byteLength(line) + 1
    }
    const handle = await open(file, 'a+')
    if (torn !== '') {
      await handle.truncate(size)
      await handle.sync()
    }
    return new FileJournal(file, handle, size, state)
  }

  append(change: OutboxChange, apply: () => void): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the hooks outbox is closed'))
    const line = `${JSON.stringify(change)}\n`
    return new Promise((resolve, reject) => {
      this.queue.push({ line, apply, resolve, reject })
      this.flushing ??= this.flush()
    })
  }

  private async flush(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0)
      const data = Buffer.from(batch.map((pending) => pending.line).join(''))
      try {
        await this.handle.write(data)
        await this.handle.datasync()
        this.size += data.length
        for (const pending of batch) pending.apply()
        for (const pending of batch) pending.resolve()
      } catch (error) {
        await this.handle.truncate(this.size).catch(() => undefined)
        for (const pending of batch) pending.reject(error)
      }
      if (this.queue.length === 0 && this.size > this.compactAt) await this.compact().catch(() => undefined)
    }
    this.flushing = undefined
  }

  /** Between batches, with nothing queued: the state holds every change written. */
  private async compact(): Promise<void> {
    const image = this.state.image()
    const line = `${JSON.stringify({ image })}\n`
    if (Buffer.byteLength(line) * 4 > this.size) {
      this.compactAt = Math.ceil(this.size * 1.25)
      return
    }
    const temp = join(dirname(this.file), `.${basename(this.file)}.tmp`)
    const handle = await open(temp, 'w')
    try {
      await handle.write(line)
      await handle.datasync()
    } finally {
      await handle.close()
    }
    await rename(temp, this.file)
    const dir = await open(dirname(this.file), 'r')
    await dir.sync().finally(() => dir.close())
    await this.handle.close()
    this.handle = await open(this.file, 'a+')
    this.size = Buffer.byteLength(line)
    this.compactAt = Math.max(COMPACT_AT_BYTES, this.size * 4)
  }

  async close(): Promise<void> {
    this.closed = true
    await this.flushing
    await this.handle.close()
  }
}
