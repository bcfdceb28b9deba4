import { setFlagsFromString } from 'node:v8'

/**
 * How far V8 lets the old generation grow past what a full collection left alive before it marks again: three
 * times (issue 22). V8 picks that factor itself after each full collection, from how fast it collects against
 * how fast the program allocates. A server streaming files allocates little on the heap (the bytes are outside
 * it), so it often picked its minimum, 1.1 (`--trace-gc-verbose`): the limit then sat about 24 MB above the
 * 16 MB alive, less than the young generation's capacity, and marking began again as soon as a collection
 * ended (`--trace-incremental-marking`: "Start (task)" at 16 of 44 MB). That was 45 to 73 full collections
 * per GiB streamed, each freeing a few hundred KiB, against 2 to 9 in the runs where it picked more. Which of
 * the two a run fell into decided its speed: a tus PATCH of 1 GiB took 2.5–3.2 s and 3.3–4.3 s of CPU in the
 * first, 1.8–2.0 s and 2.3–2.5 s in the second. The flag is read at each full collection, so setting it once
 * the process runs holds.
 */
export function setHeapGrowth(): void {
  setFlagsFromString('--heap-growing-percent=200')
}
