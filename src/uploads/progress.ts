import { Repeater, type RepeaterBuffer } from 'graphql-yoga'
import { isFinal, type UploadView } from './record.js'

/**
 * A subscriber's queue that holds at most one state per upload: a newer state replaces the queued one in
 * place. A reader that falls behind gets the latest state of each upload when it reads again, never a
 * backlog, and the buffer is never full, so a push never waits or throws (yoga's PubSub throws an
 * uncaught RepeaterOverflowError at 1024 pending events, which ends the process).
 */
class LatestPerUpload implements RepeaterBuffer<UploadView> {
  private readonly queue = new Map<string, UploadView>()
  readonly full = false
  get empty(): boolean {
    return this.queue.size === 0
  }
  add(view: UploadView): void {
    // Map.set on an existing key keeps its place: the upload keeps its turn, with the newer state.
    this.queue.set(view.id, view)
  }
  remove(): UploadView {
    const first = this.queue.entries().next()
    if (first.done) throw new Error('remove() on an empty buffer')
    this.queue.delete(first.value[0])
    return first.value[1]
  }
}

type Listener = (view: UploadView) => void

/** Fans each published upload state out to every subscriber, in process. */
export class ProgressFeed {
  private readonly listeners = new Set<Listener>()

  get subscriberCount(): number {
    return this.listeners.size
  }

  publish(view: UploadView): void {
    for (const listener of this.listeners) listener(view)
  }

  /**
   * States of one upload (`id`) or of all, starting with `snapshot()` taken after the listener is attached
   * so no event between the two is lost. Following one upload ends after its first final state.
   */
  follow(id: string | undefined, snapshot: () => UploadView[]): AsyncIterableIterator<UploadView> {
    return new Repeater<UploadView>(async (push, stop) => {
      const listener: Listener = (view) => {
        if (id !== undefined && view.id !== id) return
        void push(view)
        if (id !== undefined && isFinal(view.status)) stop()
      }
      this.listeners.add(listener)
      try {
        for (const view of snapshot()) listener(view)
        await stop
      } finally {
        this.listeners.delete(listener)
      }
    }, new LatestPerUpload())
  }
}
