import { setFlagsFromString } from 'node:v8'

/**
 * How far V8 lets the old generation grow past what a full collection left alive before it marks again: three
 * times (issue 22). V8 picks that factor itself after each full collection, from how fast the last ones ran.
 * With this server's small heap (about 16 MB alive) it often picked one that left less room than the young
 * generation's capacity, and then each full collection was followed at once by the next
 * (`--trace-incremental-marking`: "Start (task)" at 16 of a 44 MB limit): 45 to 73 of them per GiB streamed,
 * each freeing a few hundred KiB, against 2 to 9 when it picked a larger one. Which of the two a run fell into
 * decided its speed: a tus PATCH of 1 GiB took 2.7–3.2 s and 3.5–4.3 s of CPU in the first, 2.0–2.3 s and
 * 2.4–2.8 s in the second. The flag is read at each full collection, so setting it once the process runs holds.
 */
export function setHeapGrowth(): void {
  setFlagsFromString('--heap-growing-percent=200')
}
