/**
 * tus's seam: one request at a time writes an upload (@tus/server asks a `Locker` for each upload it
 * touches). The interface is @tus/server's own; in one process its MemoryLocker (memory.ts), across
 * instances one over their Redis (redis.ts), whichever instance each request reached.
 */
export type { Lock, Locker, RequestRelease } from '@tus/utils'
