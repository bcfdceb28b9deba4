/**
 * Who may act on an upload. Exactly one process at a time holds an upload's lease: it alone runs its
 * transfer and changes its record, and every other process forwards commands to it. A lease carries a
 * fencing token; the record store refuses writes under a token that is no longer current, and a holder
 * that cannot renew in time stops writing bytes at its own deadline, so a stalled former holder can never
 * act after another has taken over.
 *
 * The embedded service is one process: its lease (local.ts) is always this process's. Several instances
 * share leases in Redis (redis.ts).
 */
export interface Fence {
  readonly id: string
  /** `{instance}:{token}`: what the store compares before it writes. */
  readonly value: string
  /** Until when (performance.now()) this process may still write under it without renewing. */
  readonly deadline: number
}

export interface Leases {
  /** This process's name among the instances: whose leases these are. */
  readonly instance: string
  /** The fence if this process holds the upload's lease and may still write under it. */
  held(id: string): Fence | undefined
  /** Takes the lease if nobody holds it; undefined when another process does. */
  acquire(id: string): Promise<Fence | undefined>
  /** The instance that holds the lease, if any. */
  holder(id: string): Promise<string | undefined>
  /** The holders of many leases at once (undefined: nobody). */
  holders(ids: readonly string[]): Promise<(string | undefined)[]>
  /** The instances alive now (this one included). */
  liveInstances(): Promise<Set<string>>
  release(id: string): Promise<void>
  /** Called when a held lease was lost (not renewed in time, or taken over). */
  onLost(listener: (id: string) => void): void
  close(): Promise<void>
}
