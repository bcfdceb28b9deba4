/** Chunks at least this big even at a crawl, so 1 B/s does not mean a syscall per byte. */
const MIN_CHUNK = 256
/** The largest chunk while throttled: pause, resume and speed changes act within one of these. */
export const MAX_THROTTLED_CHUNK = 64 * 1024
/** Unlimited speed: no line to stay on, so chunks only need to amortise syscalls. */
export const UNLIMITED_CHUNK = 1024 * 1024
/** About twenty chunks a second keeps the byte curve within 50 ms of the ideal line. */
export const CHUNKS_PER_SECOND = 20

/**
 * What may move at once when a transfer starts or resumes: enough for the first byte to land within
 * milliseconds, small enough (2 ms' worth, at least 64 B) that the transfer does not finish early by it.
 */
export function headStartFor(speed: number): number {
  return Math.min(chunkSizeFor(speed), Math.max(64, Math.round(speed * 0.002)))
}

/** The chunk size that suits a speed in bytes per second (0 = unlimited), at `perSecond` chunks a second. */
export function chunkSizeFor(speed: number, perSecond = CHUNKS_PER_SECOND): number {
  if (speed === 0) return UNLIMITED_CHUNK
  return Math.min(MAX_THROTTLED_CHUNK, Math.max(MIN_CHUNK, Math.round(speed / perSecond)))
}
