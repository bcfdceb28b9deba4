import { bodyError } from '../../errors.js'

/**
 * No room for this file: said before its bytes are read when what it needs is known (`needed` more bytes,
 * `free` free), or when the disk filled under it anyway (someone else's bytes). One text either way.
 */
export const noRoom = (needed?: number, free?: number) =>
  bodyError(
    'INSUFFICIENT_STORAGE',
    needed === undefined || free === undefined
      ? 'The server has no room left to store this file (a file is kept twice until it is written into place); try again later'
      : `The server has no room left to store this file: it needs ${needed} more bytes (a file is kept twice until it is written into place), and ${free} are free; try again later`,
  )

/**
 * Room promised to one arrival or transfer: `bytes` it may still write. As its bytes land on disk (and so
 * leave the file system's free count) they leave the promise too, so nothing is counted twice.
 */
export class Hold {
  private written: () => number = () => 0
  private released = false

  constructor(
    private readonly ledger: RoomLedger,
    private bytes: number,
  ) {}

  /** Bytes promised that are not on disk yet. */
  get outstanding(): number {
    return this.released ? 0 : Math.max(0, this.bytes - this.written())
  }

  /**
   * From now on `written` counts (from 0) the bytes of this promise that reached the disk. It must count
   * bytes written, not bytes on their way: those are not out of the free count yet.
   */
  track(written: () => number): void {
    this.bytes = this.outstanding
    this.written = written
  }

  /** Moves up to `bytes` of this promise into a new one (a file of a request, promised with the request). */
  split(bytes: number): Hold {
    const moved = Math.min(bytes, this.outstanding)
    this.bytes = this.outstanding - moved
    // Rebased, not stopped: the request's later files still land on disk, and leave this promise as they do.
    const written = this.written
    const base = written()
    this.written = () => written() - base
    return this.ledger.hold(moved)
  }

  /** The promise is kept or void (the bytes are written, or will never be): its room is anyone's again. */
  release(): void {
    if (this.released) return
    this.released = true
    this.ledger.forget(this)
  }
}

/**
 * Room on the storage folder's file system, promised as it is granted: a request is granted room only out of
 * what is free and promised to no other, so two requests at once can never both count the same free bytes.
 * Every arrival (multipart, tus) and every transfer of this process holds its promise here until it is kept
 * or given up.
 */
export class RoomLedger {
  private readonly holds = new Set<Hold>()
  /** Holds of nothing (a body of no declared length): bytes may land that no promise counts. */
  private readonly unpromised = new Set<Hold>()
  /**
   * The last measure, for a yes without asking the file system again (a statfs per request was a tenth of
   * a small upload's time): what was free and promised then, and every byte promised since.
   */
  private last: { at: number; free: number; promised: number; since: number } | undefined

  constructor(
    /** Bytes free on the file system now. */
    private readonly measure: () => Promise<number>,
    /** How long a measure may answer yes for (0: every grant measures). */
    private readonly reuseMs = 100,
  ) {}

  /** Bytes free and promised to nobody. */
  async free(): Promise<number> {
    const free = await this.measure()
    // Counted after the measure, in the same turn: a promise granted meanwhile is in it.
    const promised = this.promised()
    this.last = { at: performance.now(), free, promised, since: 0 }
    return Math.max(0, free - promised)
  }

  /**
   * At most what free() would say now, from the last measure, without asking the file system; undefined when
   * that is too old. Bytes our promises wrote since left both the free count and the promises, so the free
   * bytes promised to nobody are at least what they were less every byte promised since (promises given back
   * are not counted back: it only ever errs towards less). Someone else's bytes written since are unseen, as
   * they would be between a measure and the write it allowed.
   */
  private recent(): number | undefined {
    const last = this.last
    // While bytes nobody promised may be landing, only the file system knows what they left.
    if (!last || this.unpromised.size > 0 || performance.now() - last.at > this.reuseMs) return undefined
    return last.free - last.promised - last.since
  }

  /**
   * Promises `needed` bytes (taking what `from` still holds first), or refuses with 507 if they are not free.
   * A recent measure may say yes; a no is always measured afresh.
   */
  async grant(needed: number, from?: Hold): Promise<Hold> {
    const taken = from?.split(needed)
    const rest = needed - (taken?.outstanding ?? 0)
    if (rest <= 0) return taken ?? this.hold(0)
    const recent = this.recent()
    const free = recent !== undefined && recent >= rest ? recent : await this.free()
    const had = taken?.outstanding ?? 0
    taken?.release()
    if (free < rest) throw noRoom(needed, free + had)
    return this.hold(needed)
  }

  /** Refuses with 507 unless `needed` bytes are free now; promises nothing (nothing is on its way yet). */
  async check(needed: number): Promise<void> {
    const recent = this.recent()
    if (recent !== undefined && recent >= needed) return
    const free = await this.free()
    if (free < needed) throw noRoom(needed, free)
  }

  /** A promise made without asking: bytes promised before this process knew of them (a restart, an adoption). */
  hold(bytes: number): Hold {
    const hold = new Hold(this, bytes)
    if (bytes > 0) {
      this.holds.add(hold)
      if (this.last) this.last.since += bytes
    } else this.unpromised.add(hold)
    return hold
  }

  /** @internal Hold.release */
  forget(hold: Hold): void {
    this.holds.delete(hold)
    this.unpromised.delete(hold)
  }

  private promised(): number {
    let sum = 0
    for (const hold of this.holds) sum += hold.outstanding
    return sum
  }
}
