import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8'
import { performance } from 'node:perf_hooks'
import { runInNewContext } from 'node:vm'

/**
 * A young-generation collection every COLLECT_EVERY bytes a stream hashes (issue 22). Every chunk a socket
 * reads is a fresh 64 KiB buffer outside the JS heap, freed only when the collector finds its small
 * wrapper dead. Streaming allocates so little on the heap that the young generation rarely fills: the
 * buffers piled up until V8's external-memory limit forced a full collection (one every ~100 ms, 40 MiB of
 * dead buffers at the peak). A minor collection, with nearly nothing alive, frees them after a few MiB.
 */
const COLLECT_EVERY = 8 * 1024 * 1024

type Collect = (options: { type: 'minor' | 'major'; execution?: 'sync' | 'async' }) => void

/** V8's own collector, taken without exposing `gc` to the server's code (--expose-gc, for one lookup). */
function collector(): Collect {
  setFlagsFromString('--expose-gc')
  try {
    return runInNewContext('gc') as Collect
  } finally {
    setFlagsFromString('--no-expose-gc')
  }
}

const collect = collector()
let streamed = 0

/** Counts `bytes` streamed; collects the young generation when COLLECT_EVERY more have gone by. */
export function streamedBytes(bytes: number): void {
  streamed += bytes
  if (streamed < COLLECT_EVERY) return
  streamed = 0
  collect({ type: 'minor' })
}

/** Looked at twice a second: half a second this quiet (the event loop busy under 2 % of it) starts a trim. */
const QUIET_CHECK_MS = 500
const QUIET = 0.02
/** During a trim: a minor collection this often, for at most TRIM_ROUNDS, stopped as soon as work resumes. */
const TRIM_EVERY_MS = 100
const TRIM_ROUNDS = 20
/** A young generation this size or less is as small as V8 makes it: nothing to trim. */
const SMALL_YOUNG = 2 * 1024 * 1024

const youngSize = (): number =>
  getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0

/**
 * Gives the young generation back once the server is quiet (issue 22, idle memory). V8 grows it in a burst
 * of work (start-up's parsing, the first uploads: 16–32 MiB) and shrinks it only at a collection that finds
 * allocation slow over its last ten; an idle server collects nothing, so it kept that memory for good. A
 * minor collection ten times a second, with nearly nothing alive, costs well under a millisecond each and
 * lets V8 see the quiet within about a second and shrink it. Under load the loop is never quiet, so nothing
 * here runs; after a trim, the next burst grows the young generation again as it needs. Returns a stop.
 */
export function trimWhenQuiet(): () => void {
  let trim: NodeJS.Timeout | undefined
  let seen = performance.eventLoopUtilization()
  const stopTrim = () => {
    clearInterval(trim)
    trim = undefined
  }
  const check = setInterval(() => {
    const now = performance.eventLoopUtilization()
    const quiet = performance.eventLoopUtilization(now, seen).utilization < QUIET
    seen = now
    if (trim || !quiet || youngSize() <= SMALL_YOUNG) return
    let rounds = 0
    let last = performance.eventLoopUtilization()
    trim = setInterval(() => {
      // Work since the last round's end (its own collection is not work that ends the trim).
      const busy =
        performance.eventLoopUtilization(performance.eventLoopUtilization(), last).utilization >= QUIET
      if (busy || ++rounds > TRIM_ROUNDS) return stopTrim()
      collect({ type: 'minor' })
      last = performance.eventLoopUtilization()
      if (youngSize() <= SMALL_YOUNG) stopTrim()
    }, TRIM_EVERY_MS).unref()
  }, QUIET_CHECK_MS).unref()
  return () => {
    clearInterval(check)
    stopTrim()
  }
}
