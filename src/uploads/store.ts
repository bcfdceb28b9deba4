import { mkdir, open, readFile, rename } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { Low, type Adapter } from 'lowdb'
import type { UploadRecord } from './record.js'

interface StateFile {
  version: 1
  /** Keyed by upload id; insertion order is creation order. */
  uploads: Record<string, UploadRecord>
}

async function fsyncPath(path: string, flags: string): Promise<void> {
  const handle = await open(path, flags)
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/**
 * lowdb's JSONFile (steno) writes a temp file and renames it, but never fsyncs: after a power cut the rename
 * can be on disk before the bytes are. This adapter syncs the temp file before the rename and the folder
 * after it, so the state file is always either the old document or the new one, whole.
 */
class DurableJSONFile<T> implements Adapter<T> {
  private readonly temp: string
  constructor(private readonly file: string) {
    this.temp = join(dirname(file), `.${basename(file)}.tmp`)
  }

  async read(): Promise<T | null> {
    let text: string
    try {
      text = await readFile(this.file, 'utf8')
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null
      throw error
    }
    try {
      return JSON.parse(text) as T
    } catch (error) {
      // Never start over silently: an empty state would orphan every stored file.
      throw new Error(`state file ${this.file} is not valid JSON: ${(error as Error).message}`, { cause: error })
    }
  }

  async write(data: T): Promise<void> {
    // The folder may have been removed under us; the state must still reach the disk.
    const handle = await open(this.temp, 'w').catch(async (error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error
      await mkdir(dirname(this.file), { recursive: true })
      return open(this.temp, 'w')
    })
    try {
      await handle.writeFile(JSON.stringify(data))
      await handle.datasync()
    } finally {
      await handle.close()
    }
    await rename(this.temp, this.file)
    await fsyncPath(dirname(this.file), 'r')
  }
}

/**
 * Every upload record, in memory, persisted to one JSON document. The upload service is its only writer: it
 * mutates records in place and calls `save()`. Saves coalesce: however many are asked for while a write is
 * running, one more write follows it, carrying all of their changes.
 */
export class Store {
  private inFlight: Promise<void> | undefined
  private queued: Promise<void> | undefined

  private constructor(private readonly db: Low<StateFile>) {}

  static async open(file: string): Promise<Store> {
    await mkdir(dirname(file), { recursive: true })
    const db = new Low<StateFile>(new DurableJSONFile(file), { version: 1, uploads: {} })
    await db.read()
    return new Store(db)
  }

  list(): UploadRecord[] {
    return Object.values(this.db.data.uploads)
  }

  get(id: string): UploadRecord | undefined {
    return Object.hasOwn(this.db.data.uploads, id) ? this.db.data.uploads[id] : undefined
  }

  insert(record: UploadRecord): void {
    this.db.data.uploads[record.id] = record
  }

  remove(id: string): void {
    Reflect.deleteProperty(this.db.data.uploads, id)
  }

  /** Resolves once a write that began after this call has finished, so the caller's change is on disk. */
  save(): Promise<void> {
    this.queued ??= (async () => {
      await this.inFlight?.catch(() => undefined)
      this.queued = undefined
      const write = this.db.write()
      this.inFlight = write
      try {
        await write
      } finally {
        if (this.inFlight === write) this.inFlight = undefined
      }
    })()
    return this.queued
  }
}
