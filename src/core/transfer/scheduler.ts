/**
 * One clock for every throttled transfer of this process. Each transfer is a flow that follows its ideal line
 * (its speed × the time since it started, resumed or changed speed); the server-wide cap (MAX_TOTAL_SPEED)
 * is one more line, the cap × the time, that every flow's bytes are counted against. A flow asks for a chunk;
 * if its line and the cap's have it, it goes at once (a resumed upload's first byte never waits for a tick);
 * if not, it waits, and a single timer, ticking only while someone waits, hands out what has accrued,
 * round-robin among the waiting flows.
 *
 * Neither line is ever overtaken: a flow's bytes stay under its line (plus its head start), the flows' sum
 * under the cap's. A stall (a GC, a busy core, a slow disk, the event loop held by other work) leaves them
 * behind it, and they make that up, boundedly: a flow at most CATCH_UP_SECONDS of its line, at no more than
 * CATCH_UP_PACE times its speed; the cap at most CAP_CATCH_UP_SECONDS, at no more than CAP_PACE times the cap,
 * and only while it binds (cap-line.ts). Beyond that the line moves on: a longer stall is never caught up by
 * a burst.
 *
 * Fairness under the cap is max-min: while the cap binds, every flow's chunk is sized for its fair share of
 * it, so round-robin gives each the same bytes; a flow asking less than its share waits on its own line, not
 * the cap's, and the others split what it leaves. And when many flows run at once, each moves fewer, larger
 * chunks, so the syscalls per second stay bounded whatever the count.
 */

import {
  CHUNKS_PER_SECOND,
  chunkSizeFor,
  headStartFor,
  MAX_THROTTLED_CHUNK,
  UNLIMITED_CHUNK,
} from './throttle.js'
import { CapLine } from './cap-line.js'

/** Fewer than this many chunks a second and a flow's byte curve gets coarse. */
const MIN_CHUNKS_PER_SECOND = 4
/** Chunks a second for all flows together, past which each flow's chunks grow instead. */
const CHUNK_BUDGET_PER_SECOND = 4000
/** The clock, while any flow waits. */
const TICK_MS = 5
/**
 * How far behind its line a flow may fall and still make it up: what a late tick, a slow write or a stall
 * of the process cost it, up to this much of its line, so a file still lands on time. Beyond it the line
 * moves on: a flow that stalled longer (storage away for seconds, say) does not then burst to catch up.
 */
export const CATCH_UP_SECONDS = 0.5
/** A flow behind its line makes it up at no more than this multiple of its speed. */
const CATCH_UP_PACE = 2
/** What a flow may move at once beyond one chunk while it catches up: this long at its catch-up pace. */
const PACE_BURST_SECONDS = 0.125

interface Waiter {
  flow: Flow
  bytes: number
  resolve(granted: boolean): void
  reject(error: Error): void
}

const abortError = () => Object.assign(new Error('The operation was aborted'), { name: 'AbortError' })

export class Flow {
  /**
   * Bytes this flow may move now by its line: its line less what it moved, never more than a chunk and
   * CATCH_UP_SECONDS of its line (the rest of a longer stall is dropped, the line moving on).
   */
  private tokens: number
  /** Bytes it may move now by its catch-up pace (CATCH_UP_PACE × its speed). */
  private pace: number
  private last = performance.now()
  waiter: Waiter | undefined
  /** The head start it began with: its tokens hold it, so a first chunk no bigger goes at once. */
  private readonly start: number

  constructor(
    private readonly scheduler: Scheduler,
    /** Bytes per second; 0 means unlimited (only the cap, if any, applies). */
    public rate: number,
  ) {
    this.start = this.headFor(this.effectiveRate())
    this.tokens = rate === 0 ? 0 : this.start
    this.pace = this.paceCapacity()
  }

  /** Nothing paces it now: no speed of its own and no server-wide cap. */
  get unlimited(): boolean {
    return this.rate === 0 && this.scheduler.maxTotalSpeed === 0
  }

  /**
   * The first chunk's size: it goes at once, and 2 ms' worth does not put the byte curve ahead of the line.
   * Sized as things are when it is asked for, not when the flow began: a transfer may ask it much later (an
   * unlimited one reads and hashes its staged bytes first, storage may be slow to open), and a cap set
   * meanwhile paces it; the 1 MiB an unlimited flow began with is more than a cap under about 3.3 MB/s ever
   * lets go at once. Never more than it began with, which its tokens hold.
   */
  get head(): number {
    return Math.min(this.start, this.headFor(this.effectiveRate()))
  }

  private headFor(rate: number): number {
    return rate === 0 ? UNLIMITED_CHUNK : headStartFor(rate)
  }

  /** The speed this flow gets now: its own, or its fair share of the cap when that is smaller. */
  effectiveRate(): number {
    const share = this.scheduler.share()
    if (this.rate === 0) return share
    return share === 0 ? this.rate : Math.min(this.rate, share)
  }

  /** The chunk that suits the flow's speed now, and the number of flows running. */
  chunk(): number {
    const perSecond = Math.max(
      MIN_CHUNKS_PER_SECOND,
      Math.min(CHUNKS_PER_SECOND, CHUNK_BUDGET_PER_SECOND / this.scheduler.size),
    )
    return chunkSizeFor(this.effectiveRate(), perSecond)
  }

  /**
   * What to ask for next: a chunk while on the line; behind it, as much as it may make up now (at most a
   * throttled chunk, and under a cap at most its share of what the cap has), so a flow whose every write
   * takes longer than a chunk's worth of its line (a busy disk, a busy process) still keeps up.
   */
  want(): number {
    const chunk = this.chunk()
    if (this.unlimited) return chunk
    const now = performance.now()
    this.refill(now)
    let may = this.rate === 0 ? Infinity : Math.min(this.tokens, this.pace)
    if (this.scheduler.maxTotalSpeed !== 0) may = Math.min(may, this.scheduler.spare(now))
    return Math.max(chunk, Math.min(MAX_THROTTLED_CHUNK, Math.floor(may)))
  }

  private paceCapacity(): number {
    return this.chunk() + this.rate * CATCH_UP_PACE * PACE_BURST_SECONDS
  }

  /** What its line (and its pace) earned since it was last looked at, within their bounds. */
  refill(now: number): void {
    if (this.rate === 0) return
    const seconds = (now - this.last) / 1000
    this.last = now
    if (seconds <= 0) return
    const chunk = this.chunk()
    this.tokens = Math.min(chunk + this.rate * CATCH_UP_SECONDS, this.tokens + seconds * this.rate)
    this.pace = Math.min(this.paceCapacity(), this.pace + seconds * this.rate * CATCH_UP_PACE)
  }

  ready(bytes: number): boolean {
    return this.rate === 0 || (this.tokens >= bytes && this.pace >= bytes)
  }

  /**
   * Whether `bytes` can ever be ready as things are: a chunk planned when the flow could make up more (or
   * when fewer flows ran, so chunks were larger) may be more than its bounds hold now; it is planned again.
   * So is one more than the cap ever lets go at once (planned before it was set): kept at the head of the
   * line, it would wait for ever and hold every flow behind it.
   */
  fits(bytes: number): boolean {
    if (bytes > this.scheduler.capacity()) return false
    return (
      this.rate === 0 || bytes <= Math.min(this.chunk() + this.rate * CATCH_UP_SECONDS, this.paceCapacity())
    )
  }

  spend(bytes: number): void {
    if (this.rate === 0) return
    this.tokens -= bytes
    this.pace -= bytes
  }

  /**
   * Held back by the cap: its own line moves on without it (a lifted cap must not let it burst after a line
   * it was never let to follow). It keeps a chunk's worth, or the chunk it waits for.
   */
  hold(bytes: number): void {
    if (this.rate !== 0) this.tokens = Math.min(this.tokens, Math.max(bytes, this.chunk()))
  }

  /**
   * Waits until `bytes` may move (true), or returns false, moving nothing, if the speed changed meanwhile
   * (the caller plans its chunk again); rejects with an AbortError when `signal` aborts.
   */
  grant(bytes: number, signal?: AbortSignal): Promise<boolean> {
    return this.scheduler.grant(this, bytes, signal)
  }

  /**
   * A new line from now at the new speed: at most a chunk's worth may go at once, and nothing the flow was
   * behind at the old speed is made up at the new one.
   */
  setRate(rate: number): void {
    const now = performance.now()
    this.refill(now)
    // An unlimited flow's clock stood still (it has no line): the new one starts now, not when it started.
    this.last = now
    this.rate = rate
    this.tokens = Math.min(this.tokens, this.chunk())
    this.pace = Math.min(this.pace, this.paceCapacity())
    this.scheduler.replan(this)
  }

  close(): void {
    this.scheduler.remove(this)
  }
}

export class Scheduler {
  private readonly flows = new Set<Flow>()
  private waiting: Waiter[] = []
  private timer: NodeJS.Timeout | undefined
  /** The server-wide cap's line: bytes per second for all flows together; 0: no cap. */
  private readonly line: CapLine

  constructor(cap = 0) {
    this.line = new CapLine(cap)
  }

  get size(): number {
    return Math.max(1, this.flows.size)
  }

  get maxTotalSpeed(): number {
    return this.line.cap
  }

  /** The most the cap ever lets go at once; Infinity when there is none. */
  capacity(): number {
    return this.line.capacity()
  }

  /** Each running flow's fair share of the cap; 0 when there is none. */
  share(): number {
    return this.line.cap === 0 ? 0 : this.line.cap / this.size
  }

  flow(rate: number): Flow {
    // Idle until now: the cap's line starts again (else the first flows would make up the idle time at once).
    if (this.flows.size === 0) this.line.restart(performance.now(), 0)
    const flow = new Flow(this, rate)
    this.flows.add(flow)
    return flow
  }

  /** A new cap from now on (0: none), on a line of its own; flows waiting are planned again at once. */
  setCap(cap: number): void {
    this.line.set(cap, performance.now())
    for (const waiter of this.waiting.splice(0)) {
      waiter.flow.waiter = undefined
      waiter.resolve(false)
    }
  }

  /**
   * Each running flow's share of what the cap lets go now: about a chunk while it binds, more while the flows
   * make up a shortfall (so they keep up even when each write takes longer than a chunk's worth of the cap).
   */
  spare(now: number): number {
    if (this.line.cap === 0) return Infinity
    this.line.refill(now)
    return this.line.available() / this.size
  }

  /** `flow` could go by its own line and waits for the cap: the cap binds. */
  private held(flow: Flow, bytes: number, now: number): void {
    flow.hold(bytes)
    this.line.bind(now)
  }

  grant(flow: Flow, bytes: number, signal?: AbortSignal): Promise<boolean> {
    if (signal?.aborted) return Promise.reject(abortError())
    const now = performance.now()
    flow.refill(now)
    this.line.refill(now)
    // Its own line has it, and (under a cap) nobody is ahead of it in line and the cap has it: it goes now.
    // Without a cap flows share nothing, so others waiting on their own speeds hold nobody up.
    const capAllows = this.line.cap === 0 || (this.waiting.length === 0 && this.line.available() >= bytes)
    const ready = flow.ready(bytes)
    if (ready && capAllows) {
      flow.spend(bytes)
      this.line.take(bytes)
      return Promise.resolve(true)
    }
    // Waiting its turn behind others is not being held back: only a cap that has too little binds (not one
    // asked for more than it ever has: that is planned again at the next tick).
    if (ready && this.line.available() < bytes && flow.fits(bytes)) this.held(flow, bytes, now)
    return new Promise<boolean>((resolve, reject) => {
      const onAbort = () => {
        this.drop(flow)
        reject(abortError())
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      const waiter: Waiter = {
        flow,
        bytes,
        resolve: (granted) => {
          signal?.removeEventListener('abort', onAbort)
          resolve(granted)
        },
        reject,
      }
      flow.waiter = waiter
      this.waiting.push(waiter)
      this.timer ??= setInterval(() => this.tick(), TICK_MS).unref()
    })
  }

  /** Hands out what accrued, round-robin: each flow that can go goes, while the cap has bytes. */
  private tick(): void {
    const now = performance.now()
    this.line.refill(now)
    const still: Waiter[] = []
    let exhausted = false
    for (const waiter of this.waiting) {
      const { flow, bytes } = waiter
      flow.refill(now)
      if (!flow.fits(bytes)) {
        flow.waiter = undefined
        waiter.resolve(false)
        continue
      }
      const ready = flow.ready(bytes)
      // Out of the cap's bytes: this one and those after it wait; next tick starts with them.
      if (ready && !exhausted && this.line.available() < bytes) exhausted = true
      if (!ready || exhausted) {
        if (ready) this.held(flow, bytes, now)
        still.push(waiter)
        continue
      }
      flow.spend(bytes)
      this.line.take(bytes)
      flow.waiter = undefined
      waiter.resolve(true)
    }
    // Those served go to the back of the line (their next chunk joins at the end): round-robin.
    this.waiting = still
    if (this.waiting.length === 0) {
      clearInterval(this.timer)
      this.timer = undefined
    }
  }

  /** The flow's plan changed (its speed): a chunk it waits for is planned again. */
  replan(flow: Flow): void {
    const waiter = flow.waiter
    if (!waiter) return
    this.drop(flow)
    waiter.resolve(false)
  }

  private drop(flow: Flow): void {
    if (!flow.waiter) return
    this.waiting = this.waiting.filter((w) => w !== flow.waiter)
    flow.waiter = undefined
  }

  remove(flow: Flow): void {
    this.replan(flow)
    this.flows.delete(flow)
  }
}
