import { unavailable } from '../../errors.js'
import { EXCLUSIVE_WAIT_MS, LocalQueue, type ExclusiveWait, type Fence, type Leases } from './index.js'

/** One process owns everything: every lease is held by this process, always, and never runs out. */
export class LocalLeases implements Leases {
  readonly instance = 'local'
  private readonly queue = new LocalQueue()

  held(id: string): Fence {
    return { id, value: 'local', deadline: Infinity }
  }

  async acquire(id: string): Promise<Fence> {
    return this.held(id)
  }

  async holder(): Promise<string> {
    return this.instance
  }

  async holders(ids: readonly string[]): Promise<string[]> {
    return ids.map(() => this.instance)
  }

  async liveInstances(): Promise<Set<string>> {
    return new Set([this.instance])
  }

  async release(): Promise<void> {}

  /** One process: its own queue is the whole of exclusion. */
  exclusive<T>(name: string, task: () => Promise<T>, wait: ExclusiveWait = {}): Promise<T> {
    const busy = wait.busy ?? 'Busy; nothing was done, try again'
    return this.queue.run(name, task, { ms: wait.ms ?? EXCLUSIVE_WAIT_MS, timedOut: () => unavailable(busy) })
  }

  onLost(): void {}

  async close(): Promise<void> {}
}
