import { randomUUID } from 'node:crypto'
import type { Redis } from 'ioredis'
import { unavailable } from '../errors.js'
import { log } from '../log.js'
import type { Bus, Command, Limits, Outcome } from './bus.js'
import type { UploadView } from './record.js'

/** How long a requester waits for the owner's outcome before answering 503. */
const REQUEST_TIMEOUT_MS = 5000
/** While it waits, it also looks for the outcome in Redis this often (the reply message may be lost). */
const POLL_EVERY_MS = 250
/** Commands waiting for their owner, and outcomes waiting for their requester, live this long. */
const KEEP_MS = 30_000
/** The owner looks for commands it may have missed this often. */
const SWEEP_EVERY_MS = 1000

interface Envelope {
  request: string
  from: string
  command: Command
}

/**
 * States and commands between instances over Redis pub/sub.
 *
 * - Every state goes to `{p}:states`; each instance hands the others' to its own subscribers.
 * - A command for an upload goes to its owner on `{p}:cmd:{instance}`, and is also written as the upload's
 *   wanted change (`{p}:want:{id}`), which the owner looks at every second for the uploads it holds: a lost
 *   message does not strand a command. The owner runs each request once (remembering its outcome), writes
 *   the outcome (`{p}:outcome:{request}`) and publishes it to the requester, who also polls for it: a lost
 *   reply does not strand one either.
 */
export class RedisBus implements Bus {
  private readonly listeners: ((view: UploadView, local: boolean) => void)[] = []
  private readonly limitListeners: ((limits: Limits) => void)[] = []
  private handler: ((command: Command) => Promise<Outcome>) | undefined
  private readonly waiting = new Map<string, (outcome: Outcome) => void>()
  /** Requests this instance has run (or is running), so a duplicate gets the same outcome. */
  private readonly served = new Map<string, Promise<Outcome>>()
  private readonly sweeper: NodeJS.Timeout
  private publishFailing = false

  constructor(
    private readonly redis: Redis,
    private readonly subscriber: Redis,
    private readonly instance: string,
    /** The uploads whose lease this instance holds: where it looks for missed commands. */
    private readonly held: () => Iterable<string>,
    private readonly prefix = 'uploads',
  ) {
    subscriber.on('message', (channel: string, message: string) => this.receive(channel, message))
    this.sweeper = setInterval(() => void this.sweep(), SWEEP_EVERY_MS).unref()
  }

  private channel(kind: 'states' | 'cmd' | 'reply' | 'limits', instance?: string): string {
    return instance === undefined ? `${this.prefix}:${kind}` : `${this.prefix}:${kind}:${instance}`
  }

  async start(): Promise<void> {
    await this.subscriber.subscribe(
      this.channel('states'),
      this.channel('limits'),
      this.channel('cmd', this.instance),
      this.channel('reply', this.instance),
    )
  }

  publish(view: UploadView): void {
    for (const listener of this.listeners) listener(view, true)
    this.redis.publish(this.channel('states'), JSON.stringify({ from: this.instance, view })).then(
      () => {
        this.publishFailing = false
      },
      (error: unknown) => {
        // Subscribers elsewhere miss this state; the next one (a tenth of a second on) catches them up.
        if (!this.publishFailing) log('warn', 'bus.publish_failed', { error: (error as Error).message })
        this.publishFailing = true
      },
    )
  }

  onState(listener: (view: UploadView, local: boolean) => void): void {
    this.listeners.push(listener)
  }

  /** Every instance applies new limits at once; this one's own listeners hear them from Redis too. */
  publishLimits(limits: Limits): void {
    for (const listener of this.limitListeners) listener(limits)
    this.redis.publish(this.channel('limits'), JSON.stringify({ from: this.instance, limits })).catch((error: unknown) =>
      log('warn', 'bus.publish_failed', { error: (error as Error).message }),
    )
  }

  onLimits(listener: (limits: Limits) => void): void {
    this.limitListeners.push(listener)
  }

  onCommand(handler: (command: Command) => Promise<Outcome>): void {
    this.handler = handler
  }

  async request(instance: string, command: Command): Promise<Outcome> {
    const request = randomUUID()
    const envelope: Envelope = { request, from: this.instance, command }
    const text = JSON.stringify(envelope)
    const outcome = new Promise<Outcome>((resolve) => this.waiting.set(request, resolve))
    let poller: NodeJS.Timeout | undefined
    let timer: NodeJS.Timeout | undefined
    try {
      await this.redis.set(`${this.prefix}:want:${command.id}`, text, 'PX', KEEP_MS)
      await this.redis.publish(this.channel('cmd', instance), text)
      poller = setInterval(() => {
        void this.redis.get(`${this.prefix}:outcome:${request}`).then(
          (found) => found && this.waiting.get(request)?.(JSON.parse(found) as Outcome),
          () => undefined,
        )
      }, POLL_EVERY_MS)
      const timedOut = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(unavailable(`The instance running upload ${command.id} did not answer; try again`)),
          REQUEST_TIMEOUT_MS,
        )
      })
      return await Promise.race([outcome, timedOut])
    } catch (error) {
      if (error instanceof Error && error.name === 'ServiceError') throw error
      throw unavailable('The shared state (Redis) cannot be reached now; try again', error)
    } finally {
      clearInterval(poller)
      clearTimeout(timer)
      this.waiting.delete(request)
    }
  }

  private receive(channel: string, message: string): void {
    try {
      if (channel === this.channel('states')) {
        const { from, view } = JSON.parse(message) as { from: string; view: UploadView }
        if (from === this.instance) return
        for (const listener of this.listeners) listener(view, false)
      } else if (channel === this.channel('limits')) {
        const { from, limits } = JSON.parse(message) as { from: string; limits: Limits }
        if (from !== this.instance) for (const listener of this.limitListeners) listener(limits)
      } else if (channel === this.channel('cmd', this.instance)) {
        void this.serve(JSON.parse(message) as Envelope)
      } else if (channel === this.channel('reply', this.instance)) {
        const { request, outcome } = JSON.parse(message) as { request: string; outcome: Outcome }
        this.waiting.get(request)?.(outcome)
      }
    } catch (error) {
      log('warn', 'bus.bad_message', { channel, error: (error as Error).message })
    }
  }

  /** Runs a request once, however many ways it arrives, and sends its outcome back both ways. */
  private serve(envelope: Envelope): Promise<Outcome> {
    const known = this.served.get(envelope.request)
    if (known) return known
    const handler = this.handler
    const running = (async (): Promise<Outcome> => {
      const outcome = handler
        ? await handler(envelope.command)
        : { error: { code: 'UNAVAILABLE' as const, message: 'This instance is not serving commands yet' } }
      const text = JSON.stringify({ request: envelope.request, outcome })
      const want = `${this.prefix}:want:${envelope.command.id}`
      await Promise.all([
        this.redis.set(`${this.prefix}:outcome:${envelope.request}`, JSON.stringify(outcome), 'PX', KEEP_MS),
        this.redis.publish(this.channel('reply', envelope.from), text),
        // Done: no longer wanted (unless a newer command took its place meanwhile).
        this.redis.get(want).then((current) => (current === JSON.stringify(envelope) ? this.redis.del(want) : 0)),
      ]).catch((error: unknown) => log('warn', 'bus.reply_failed', { error: (error as Error).message }))
      return outcome
    })()
    this.served.set(envelope.request, running)
    setTimeout(() => this.served.delete(envelope.request), KEEP_MS).unref()
    return running
  }

  /** Commands wanted for uploads held here whose message never came. */
  private async sweep(): Promise<void> {
    const ids = [...this.held()]
    if (ids.length === 0) return
    try {
      const wanted = await this.redis.mget(ids.map((id) => `${this.prefix}:want:${id}`))
      for (const text of wanted) {
        if (!text) continue
        const envelope = JSON.parse(text) as Envelope
        if (!this.served.has(envelope.request)) void this.serve(envelope)
      }
    } catch {
      // Redis away: the next sweep looks again.
    }
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper)
    await this.subscriber.quit().catch(() => undefined)
  }
}
