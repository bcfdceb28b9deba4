/**
 * One clock for every throttled transfer of this process. Each transfer is a flow with a token bucket at its
 * own speed; the server-wide cap (MAX_TOTAL_SPEED) is one more bucket that every flow draws from. A flow asks
 * for a chunk; if both buckets have it, it goes at once (a resumed upload's first byte never waits for a
 * tick); if not, it waits, and a single timer, ticking only while someone waits, hands out what has accrued,
 * round-robin among the waiting flows.
 *
 * Fairness under the cap is max-min: while the cap binds, every flow's chunk is sized for its fair share of
 * it, so round-robin gives each the same bytes; a flow asking less than its share waits on its own bucket,
 * not the cap's, and the others split what it leaves. And when many flows run at once, each moves fewer,
 * larger chunks, so the syscalls per second stay bounded whatever the count.
 */

import {
  CHUNKS_PER_SECOND,
  chunkSizeFor,
  headStartFor,
  MAX_THROTTLED_CHUNK,
  UNLIMITED_CHUNK,
} from './throttle.js'

/** Fewer than this many chunks a second and a flow's byte curve gets coarse. */
const MIN_CHUNKS_PER_SECOND = 4
/** Chunks a second for all flows together, past which each flow's chunks grow instead. */
const CHUNK_BUDGET_PER_SECOND = 4000
/** The clock, while any flow waits. */
const TICK_MS = 5
/**
 * Credit a flow may keep beyond one chunk: what a late tick earned, or a stall of the process (a GC, a
 * descheduled VM, a busy core) cost it, is made up, up to this much, so a file still lands on time; a longer
 * stall is not. It never puts a flow ahead of its line: credit only accrues at its speed.
 */
const SLACK_SECONDS = 0.25
/** The server-wide cap keeps less: it must not let every flow burst at once. */
const CAP_SLACK_SECONDS = 0.05

interface Waiter {
  flow: Flow
  bytes: number
  resolve(granted: boolean): void
  reject(error: Error): void
}

const abortError = () => Object.assign(new Error('The operation was aborted'), { name: 'AbortError' })

export class Flow {
  /** Tokens (bytes) this flow may move now, by its own speed. */
  private tokens: number
  private last = performance.now()
  waiter: Waiter | undefined
  /** The first chunk's size: it goes at once, and 2 ms' worth does not put the byte curve ahead of the line. */
  readonly head: number

  constructor(
    private readonly scheduler: Scheduler,
    /** Bytes per second; 0 means unlimited (only the cap, if any, applies). */
    public rate: number,
  ) {
    const rateNow = this.effectiveRate()
    this.head = rateNow === 0 ? UNLIMITED_CHUNK : headStartFor(rateNow)
    this.tokens = rate === 0 ? 0 : this.head
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

  /** A head start's worth (or one chunk) may go at once after a start, resume or speed change. */
  refill(now: number): void {
    if (this.rate === 0) return
    const capacity = this.chunk() + this.rate * SLACK_SECONDS
    this.tokens = Math.min(capacity, this.tokens + ((now - this.last) * this.rate) / 1000)
    this.last = now
  }

  ready(bytes: number): boolean {
    return this.rate === 0 || this.tokens >= bytes
  }

  spend(bytes: number): void {
    if (this.rate !== 0) this.tokens -= bytes
  }

  /**
   * Waits until `bytes` may move (true), or returns false, moving nothing, if the speed changed meanwhile
   * (the caller plans its chunk again); rejects with an AbortError when `signal` aborts.
   */
  grant(bytes: number, signal?: AbortSignal): Promise<boolean> {
    return this.scheduler.grant(this, bytes, signal)
  }

  setRate(rate: number): void {
    this.refill(performance.now())
    this.rate = rate
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
  /** Bytes per second for all flows together; 0: no cap. */
  private cap: number
  private tokens = 0
  private last = performance.now()

  constructor(cap = 0) {
    this.cap = cap
  }

  get size(): number {
    return Math.max(1, this.flows.size)
  }

  get maxTotalSpeed(): number {
    return this.cap
  }

  /** Each running flow's fair share of the cap; 0 when there is none. */
  share(): number {
    return this.cap === 0 ? 0 : this.cap / this.size
  }

  flow(rate: number): Flow {
    // Idle until now: the cap earned nothing meanwhile (else the first flows would start with a burst).
    if (this.flows.size === 0) {
      this.tokens = 0
      this.last = performance.now()
    }
    const flow = new Flow(this, rate)
    this.flows.add(flow)
    return flow
  }

  /** A new cap from now on (0: none); flows waiting are planned again at once. */
  setCap(cap: number): void {
    this.refill(performance.now())
    this.cap = cap
    this.tokens = Math.min(this.tokens, this.capacity())
    for (const waiter of this.waiting.splice(0)) {
      waiter.flow.waiter = undefined
      waiter.resolve(false)
    }
  }

  /** Under a cap every chunk is a throttled one (at most 64 KiB): one of those and 50 ms' worth of credit. */
  private capacity(): number {
    return MAX_THROTTLED_CHUNK + this.cap * CAP_SLACK_SECONDS
  }

  private refill(now: number): void {
    if (this.cap === 0) return
    this.tokens = Math.min(this.capacity(), this.tokens + ((now - this.last) * this.cap) / 1000)
    this.last = now
  }

  grant(flow: Flow, bytes: number, signal?: AbortSignal): Promise<boolean> {
    if (signal?.aborted) return Promise.reject(abortError())
    const now = performance.now()
    flow.refill(now)
    this.refill(now)
    // Its own bucket has it, and (under a cap) nobody is ahead of it in line and the cap has it: it goes now.
    // Without a cap flows share nothing, so others waiting on their own speeds hold nobody up.
    const capAllows = this.cap === 0 || (this.waiting.length === 0 && this.tokens >= bytes)
    if (flow.ready(bytes) && capAllows) {
      flow.spend(bytes)
      if (this.cap !== 0) this.tokens -= bytes
      return Promise.resolve(true)
    }
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

  /** Hands out what accrued, round-robin: each flow that can go goes, while the cap has tokens. */
  private tick(): void {
    const now = performance.now()
    this.refill(now)
    const still: Waiter[] = []
    let exhausted = false
    for (const waiter of this.waiting) {
      const { flow, bytes } = waiter
      flow.refill(now)
      if (exhausted || !flow.ready(bytes) || (this.cap !== 0 && this.tokens < bytes)) {
        // Out of the cap's tokens: this one and those after it wait; next tick starts with them.
        if (this.cap !== 0 && this.tokens < bytes && flow.ready(bytes)) exhausted = true
        still.push(waiter)
        continue
      }
      flow.spend(bytes)
      if (this.cap !== 0) this.tokens -= bytes
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
