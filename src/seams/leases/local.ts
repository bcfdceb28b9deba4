import type { Fence, Leases } from './index.js'

/** One process owns everything: every lease is held by this process, always, and never runs out. */
export class LocalLeases implements Leases {
  readonly instance = 'local'

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

  onLost(): void {}

  async close(): Promise<void> {}
}
