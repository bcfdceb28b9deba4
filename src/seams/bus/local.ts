import type { UploadView } from '../../model/record.js'
import type { Bus, Command, Limits, Outcome } from './index.js'

/** One process: a state or a command is a function call to this process's own listeners. */
export class LocalBus implements Bus {
  private readonly listeners: ((view: UploadView, local: boolean) => void)[] = []
  private handler: ((command: Command) => Promise<Outcome>) | undefined
  private readonly limitListeners: ((limits: Limits) => void)[] = []

  publishLimits(limits: Limits): void {
    for (const listener of this.limitListeners) listener(limits)
  }

  onLimits(listener: (limits: Limits) => void): void {
    this.limitListeners.push(listener)
  }

  publish(view: UploadView): void {
    for (const listener of this.listeners) listener(view, true)
  }

  onState(listener: (view: UploadView, local: boolean) => void): void {
    this.listeners.push(listener)
  }

  async request(_instance: string, command: Command): Promise<Outcome> {
    if (!this.handler) throw new Error('no command handler')
    return this.handler(command)
  }

  onCommand(handler: (command: Command) => Promise<Outcome>): void {
    this.handler = handler
  }

  async close(): Promise<void> {}
}
