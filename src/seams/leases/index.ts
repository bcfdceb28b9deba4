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
  /**
   * Runs `task` holding a short lock on `name`, which no other caller of any instance holds meanwhile (one
   * owner's quota admissions: count, check, record). Waits at most `wait.ms` for it, then throws UNAVAILABLE
   * saying `wait.busy` without running `task`. A lock whose process died runs out by itself.
   */
  exclusive<T>(name: string, task: () => Promise<T>, wait?: ExclusiveWait): Promise<T>
  /** Called when a held lease was lost (not renewed in time, or taken over). */
  onLost(listener: (id: string) => void): void
  close(): Promise<void>
}

export interface ExclusiveWait {
  /** How long to wait for the lock (default EXCLUSIVE_WAIT_MS). */
  ms?: number
  /** What the caller is told when it could not be had (the lock's name is not for them to read). */
  busy?: string
}

/** How long `exclusive` waits for a lock by default: admissions under it take milliseconds. */
export const EXCLUSIVE_WAIT_MS = 5000

/** Callers of `exclusive` in one process, one at a time per name: they queue here rather than poll a shared lock. */
export class LocalQueue {
  private readonly tails = new Map<string, Promise<unknown>>()

  /**
   * Runs `task` once every earlier task on `name` in this process has ended. With `timeout` (ms), a task whose
   * turn has not come by then is refused with `timedOut()` and never runs.
   */
  run<T>(name: string, task: () => Promise<T>, timeout?: { ms: number; timedOut: () => Error }): Promise<T> {
    const previous = this.tails.get(name) ?? Promise.resolve()
    let late = false
    let timer: NodeJS.Timeout | undefined
    const turn = () => {
      clearTimeout(timer)
      return late ? Promise.resolve(undefined as T) : task()
    }
    const result = previous.then(turn, turn)
    const tail = result.catch(() => undefined)
    this.tails.set(name, tail)
    void tail.then(() => this.tails.get(name) === tail && this.tails.delete(name))
    if (!timeout) return result
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        late = true
        reject(timeout.timedOut())
      }, timeout.ms)
    })
    return Promise.race([result, expired])
  }
}
