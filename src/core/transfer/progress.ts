import { isFinal, type UploadView } from '../../model/record.js'

type Listener = (view: UploadView) => void

/** Fans each published upload state out to every subscriber, in process. */
export class ProgressFeed {
  private readonly listeners = new Set<Listener>()
  private readonly stops = new Set<() => void>()

  get subscriberCount(): number {
    return this.listeners.size
  }

  /** Ends every subscription (a server shutting down): SSE responses finish, WebSocket ones complete. */
  close(): void {
    for (const stop of this.stops) stop()
  }

  publish(view: UploadView): void {
    for (const listener of this.listeners) listener(view)
  }

  /**
   * States of one upload (`id`) or of all, starting with `snapshot()` taken after the listener is attached,
   * so no event between the two is lost (a published state newer than the snapshot's replaces it). Following
   * one upload ends after its first final state.
   *
   * Each subscriber holds at most one pending state per upload: a newer state replaces the queued one in
   * place, and a state is handed over only when the reader asks for the next. A reader that falls behind
   * gets the latest state of each upload when it reads again, never a backlog. (yoga's PubSub queues
   * instead, and at 1024 pending events throws an uncaught RepeaterOverflowError that ends the process.)
   */
  follow(id: string | undefined, snapshot: () => Promise<UploadView[]>): AsyncIterableIterator<UploadView> {
    const control = { stopped: false, wake: undefined as (() => void) | undefined }
    const generator = this.generate(id, snapshot, control)
    // A generator waiting for the next state would take a return() only once that state came (for a paused
    // upload, never): the reader who leaves stops it first, so it lets go of its listener at once.
    const leave = () => {
      control.stopped = true
      control.wake?.()
    }
    const iterator: AsyncIterableIterator<UploadView> = {
      [Symbol.asyncIterator]: () => iterator,
      next: () => generator.next(),
      return: (value?: unknown) => {
        leave()
        return generator.return(value as undefined)
      },
      throw: (error?: unknown) => {
        leave()
        return generator.throw(error)
      },
    }
    return iterator
  }

  private async *generate(
    id: string | undefined,
    snapshot: () => Promise<UploadView[]>,
    control: { stopped: boolean; wake: (() => void) | undefined },
  ): AsyncGenerator<UploadView, undefined> {
    const pending = new Map<string, UploadView>()
    const listener: Listener = (view) => {
      if (id !== undefined && view.id !== id) return
      // Map.set on an existing key keeps its place: the upload keeps its turn, with the newer state.
      pending.set(view.id, view)
      control.wake?.()
    }
    const stop = () => {
      control.stopped = true
      control.wake?.()
    }
    this.listeners.add(listener)
    this.stops.add(stop)
    try {
      for (const view of await snapshot()) {
        // An event that arrived while the snapshot was read is at least as new: keep it.
        if (!pending.has(view.id)) pending.set(view.id, view)
      }
      while (!control.stopped) {
        const first = pending.values().next()
        if (first.done) {
          await new Promise<void>((resolve) => (control.wake = resolve))
          control.wake = undefined
          continue
        }
        pending.delete(first.value.id)
        // A generator resumes only when its reader asks for the next value: nothing piles up meanwhile.
        yield first.value
        if (id !== undefined && isFinal(first.value.status)) return undefined
      }
      return undefined
    } finally {
      this.listeners.delete(listener)
      this.stops.delete(stop)
    }
  }
}
