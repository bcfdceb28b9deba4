import { MAX_THROTTLED_CHUNK } from './throttle.js'

// The server-wide cap's line (MAX_TOTAL_SPEED): the cap × the time, that every flow's bytes are counted
// against (see scheduler.ts). Apart from the scheduler because its bounds are its own: how far behind it the
// flows may fall and make it up, at what pace, and how little credit it keeps while it does not bind.

/**
 * How far the flows together may fall behind the cap's line while it binds (it held a flow back within the
 * last CAP_BINDING_MS) and still make it up. (A sliding window of the bytes moved, tried first, echoes: what
 * a catch-up moves in one second is taken from the next, and a stall was never made up in full.)
 */
const CAP_CATCH_UP_SECONDS = 0.5
/**
 * While it does not bind, the cap keeps only this much credit: flows below it on their own lines must not
 * leave it a store that lets an unlimited flow burst when it starts.
 */
const CAP_SLACK_SECONDS = 0.05
const CAP_BINDING_MS = 1000
/**
 * The cap's shortfall is made up at no more than this multiple of the cap: quickly, so what a stall just
 * before a span of time owes is not paid out inside it (at 1.5x a 2 MiB/s cap's sum read 2.55 % over 3 s).
 */
const CAP_PACE = 3
/**
 * What the cap may hand out at once at its pace: a throttled chunk and this long at the pace. Its share per
 * flow is what each asks for while they make up a shortfall, so it must outlast a slow write (at 20 ms a
 * 2 MiB/s cap's sum read 4.5 % short on a machine at load 20).
 */
const CAP_PACE_BURST_SECONDS = 0.1

export class CapLine {
  /** Bytes per second for all flows together; 0: no cap. */
  private bytesPerSecond: number
  /** Bytes the cap lets go now by its line: the line less what moved, within its bound (see refill). */
  private tokens = 0
  /** Bytes the cap lets go now by its pace (CAP_PACE × the cap). */
  private pace = 0
  private last = performance.now()
  /** When the cap last held back a flow that its own line would have let go. */
  private boundAt = -Infinity

  constructor(cap: number) {
    this.bytesPerSecond = cap
    this.restart(performance.now(), 0)
  }

  get cap(): number {
    return this.bytesPerSecond
  }

  /** A new cap from `now` on (0: none), on a line of its own. */
  set(cap: number, now: number): void {
    this.refill(now)
    this.bytesPerSecond = cap
    // Nothing the flows were behind under the old cap is made up under the new one.
    this.restart(now, MAX_THROTTLED_CHUNK + cap * CAP_SLACK_SECONDS)
  }

  /** The cap's line starts now, keeping at most `keep` of what it had; its pace holds a chunk. */
  restart(now: number, keep: number): void {
    this.tokens = Math.min(this.tokens, keep)
    this.pace = this.paceCapacity()
    this.last = now
  }

  /**
   * The most the cap ever lets go at once: its line's bound while it binds, within its pace (64 KiB and
   * 0.3 s of the cap); Infinity without a cap. A request for more can never be granted while it holds.
   */
  capacity(): number {
    if (this.bytesPerSecond === 0) return Infinity
    return Math.min(MAX_THROTTLED_CHUNK + this.bytesPerSecond * CAP_CATCH_UP_SECONDS, this.paceCapacity())
  }

  private paceCapacity(): number {
    return MAX_THROTTLED_CHUNK + this.bytesPerSecond * CAP_PACE * CAP_PACE_BURST_SECONDS
  }

  /**
   * What the cap's line (and its pace) earned since it was last looked at. The line may be ahead of what
   * moved by a chunk and CAP_CATCH_UP_SECONDS of the cap if the cap was binding when this span began (what
   * the flows could not move in it is owed them), by a chunk and CAP_SLACK_SECONDS otherwise.
   */
  refill(now: number): void {
    if (this.bytesPerSecond === 0) return
    const seconds = (now - this.last) / 1000
    if (seconds <= 0) return
    const binding = this.last - this.boundAt <= CAP_BINDING_MS
    const bound =
      MAX_THROTTLED_CHUNK + this.bytesPerSecond * (binding ? CAP_CATCH_UP_SECONDS : CAP_SLACK_SECONDS)
    this.tokens = Math.min(bound, this.tokens + seconds * this.bytesPerSecond)
    this.pace = Math.min(this.paceCapacity(), this.pace + seconds * this.bytesPerSecond * CAP_PACE)
    this.last = now
  }

  /** Bytes the cap lets go now: what its line has, within its pace; Infinity without a cap. */
  available(): number {
    if (this.bytesPerSecond === 0) return Infinity
    return Math.min(this.tokens, this.pace)
  }

  take(bytes: number): void {
    if (this.bytesPerSecond === 0) return
    this.tokens -= bytes
    this.pace -= bytes
  }

  /** A flow its own line would have let go waits for the cap: the cap binds. */
  bind(now: number): void {
    if (this.bytesPerSecond !== 0) this.boundAt = now
  }
}
