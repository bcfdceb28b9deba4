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

const abortError = () => Object.assign(new Error('The operation was aborted'), { name: 'AbortError' })

/**
 * A token bucket: tokens accrue at `rate` per second up to `capacity`; taking more than there are waits
 * exactly as long as the missing tokens take to accrue. Waiting measures real elapsed time, so a timer that
 * fires late is made up on the next take instead of slowing the whole transfer down. The bucket starts with
 * `initial` tokens (see headStartFor), so the first bytes after a start or resume move at once. The rate can
 * change while a take waits: the wait is recomputed at the new rate.
 */
export class TokenBucket {
  private tokens: number
  private last: number
  private capacity = 0
  private wake: (() => void) | undefined
  /** Bumped by every change of rate: a take waiting across one gives up and lets its caller re-plan. */
  private epoch = 0

  constructor(
    private rate: number,
    initial: number,
    private readonly now: () => number = performance.now.bind(performance),
  ) {
    this.setCapacity()
    this.tokens = initial
    this.last = this.now()
  }

  /** One chunk plus ~50 ms of credit (see the constructor's comment in git history for the measurements). */
  private setCapacity(): void {
    // The slack keeps what accrues while a timer fires late (capped at one chunk, each late timer's overshoot
    // would be lost: ~1 ms twenty times a second, 2 % slow); the cap keeps the byte curve from running more
    // than 50 ms and a chunk ahead of the line after a stall.
    this.capacity = chunkSizeFor(this.rate) + this.rate / CHUNKS_PER_SECOND
  }

  /**
   * A new rate from now on; what accrued so far is kept (up to the new capacity). A take waiting now returns
   * false: its chunk was sized for the old rate (and may not even fit the new capacity).
   */
  setRate(rate: number): void {
    this.refill()
    this.rate = rate
    this.setCapacity()
    this.tokens = Math.min(this.tokens, this.capacity)
    this.interrupt()
  }

  /** Makes a waiting take return false (its caller's plan changed: a new rate, or no bucket at all). */
  interrupt(): void {
    this.epoch++
    this.wake?.()
  }

  private refill(): void {
    const now = this.now()
    this.tokens = Math.min(this.capacity, this.tokens + ((now - this.last) * this.rate) / 1000)
    this.last = now
  }

  /**
   * Waits until `n` tokens are there and takes them (true), or returns false, taking nothing, if the rate
   * changed meanwhile; rejects with an AbortError when `signal` aborts.
   */
  async take(n: number, signal?: AbortSignal): Promise<boolean> {
    this.refill()
    const epoch = this.epoch
    while (this.tokens < n) {
      if (signal?.aborted) throw abortError()
      await new Promise<void>((resolve, reject) => {
        const done = () => {
          clearTimeout(timer)
          signal?.removeEventListener('abort', onAbort)
          this.wake = undefined
          resolve()
        }
        const onAbort = () => {
          done()
          reject(abortError())
        }
        const timer = setTimeout(done, ((n - this.tokens) * 1000) / this.rate)
        this.wake = done
        signal?.addEventListener('abort', onAbort, { once: true })
      })
      if (this.epoch !== epoch) return false
      this.refill()
    }
    this.tokens -= n
    return true
  }
}
