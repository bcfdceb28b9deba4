const SAMPLE_EVERY_MS = 50

/**
 * Bytes per second over a recent window. Keeps at most one sample per 50 ms, so recording on every chunk
 * costs a comparison, and reading is O(window / 50 ms).
 */
export class RateMeter {
  private samples: { t: number; bytes: number }[] = []
  private latest = 0

  constructor(
    private readonly windowMs = 1000,
    private readonly now: () => number = performance.now.bind(performance),
  ) {}

  /** `bytes` is the running total, not an increment. */
  record(bytes: number): void {
    this.latest = bytes
    const t = this.now()
    const last = this.samples.at(-1)
    if (last && t - last.t < SAMPLE_EVERY_MS) return
    this.samples.push({ t, bytes })
    // Keep one sample older than the window as the baseline the window is measured from.
    while (this.samples.length > 2 && (this.samples[1]?.t ?? t) <= t - this.windowMs) this.samples.shift()
  }

  /** Bytes per second since the oldest sample in the window, up to now (so a stall decays towards 0). */
  rate(): number {
    const base = this.samples[0]
    if (!base) return 0
    const elapsed = this.now() - base.t
    return elapsed <= 0 ? 0 : ((this.latest - base.bytes) * 1000) / elapsed
  }
}
