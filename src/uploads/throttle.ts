import { setTimeout as sleep } from 'node:timers/promises'

/** Chunks at least this big even at a crawl, so 1 B/s does not mean a syscall per byte. */
const MIN_CHUNK = 256
/** The largest chunk while throttled: pause, resume and speed changes act within one of these. */
export const MAX_THROTTLED_CHUNK = 64 * 1024
/** Unlimited speed: no line to stay on, so chunks only need to amortise syscalls. */
export const UNLIMITED_CHUNK = 1024 * 1024
/** About twenty chunks a second keeps the byte curve within 50 ms of the ideal line. */
const CHUNKS_PER_SECOND = 20

/**
 * What may move at once when a transfer starts or resumes: enough for the first byte to land within
 * milliseconds, small enough (2 ms' worth, at least 64 B) that the transfer does not finish early by it.
 */
export function headStartFor(speed: number): number {
  return Math.min(chunkSizeFor(speed), Math.max(64, Math.round(speed * 0.002)))
}

/** The chunk size that suits a speed in bytes per second (0 = unlimited). */
export function chunkSizeFor(speed: number): number {
  if (speed === 0) return UNLIMITED_CHUNK
  return Math.min(MAX_THROTTLED_CHUNK, Math.max(MIN_CHUNK, Math.round(speed / CHUNKS_PER_SECOND)))
}

/**
 * A token bucket: tokens accrue at `rate` per second up to `capacity`; taking more than there are waits
 * exactly as long as the missing tokens take to accrue. Waiting measures real elapsed time, so a timer that
 * fires late is made up on the next take instead of slowing the whole transfer down. The bucket starts with
 * `initial` tokens (see headStartFor), so the first bytes after a start or resume move at once.
 */
export class TokenBucket {
  private tokens: number
  private last: number
  readonly capacity: number

  constructor(
    readonly rate: number,
    chunk: number,
    initial: number,
    private readonly now: () => number = performance.now.bind(performance),
  ) {
    // One chunk plus ~50 ms of credit. The slack keeps what accrues while a timer fires late (capped at one
    // chunk, each late timer's overshoot would be lost: ~1 ms twenty times a second, 2 % slow); the cap keeps
    // the byte curve from running more than 50 ms and a chunk ahead of the line after a stall.
    this.capacity = chunk + rate / CHUNKS_PER_SECOND
    this.tokens = initial
    this.last = this.now()
  }

  private refill(): void {
    const now = this.now()
    this.tokens = Math.min(this.capacity, this.tokens + ((now - this.last) * this.rate) / 1000)
    this.last = now
  }

  /** Waits until `n` tokens are there and takes them; rejects with an AbortError when `signal` aborts. */
  async take(n: number, signal?: AbortSignal): Promise<void> {
    this.refill()
    while (this.tokens < n) {
      await sleep(((n - this.tokens) * 1000) / this.rate, undefined, { signal })
      this.refill()
    }
    this.tokens -= n
  }
}
