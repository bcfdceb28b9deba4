import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

/**
 * A young-generation collection every COLLECT_EVERY bytes a stream hashes (issue 22). Every chunk a socket
 * reads is a fresh 64 KiB buffer outside the JS heap, freed only when the collector finds its small
 * wrapper dead. Streaming allocates so little on the heap that the young generation rarely fills: the
 * buffers piled up until V8's external-memory limit forced a full collection (one every ~100 ms, 40 MiB of
 * dead buffers at the peak). A minor collection, with nearly nothing alive, frees them after a few MiB.
 */
const COLLECT_EVERY = 8 * 1024 * 1024

/** Without options, a full collection that also lets go of what only weak references hold. */
type Collect = (options?: { type: 'minor' | 'major'; execution?: 'sync' | 'async' }) => void

/** V8's own collector, taken without exposing `gc` to the server's code (--expose-gc, for one lookup). */
function collector(): Collect {
  setFlagsFromString('--expose-gc')
  try {
    return runInNewContext('gc') as Collect
  } finally {
    setFlagsFromString('--no-expose-gc')
  }
}

/** Collects now (the tests use it to show what a collection at the wrong moment would break). */
export const collect = collector()
let streamed = 0

/** Counts `bytes` streamed; collects the young generation when COLLECT_EVERY more have gone by. */
export function streamedBytes(bytes: number): void {
  streamed += bytes
  if (streamed < COLLECT_EVERY) return
  streamed = 0
  collect({ type: 'minor' })
}
