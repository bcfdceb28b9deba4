import { randomUUID } from 'node:crypto'
import type { Redis } from 'ioredis'
import { unavailable } from '../../errors.js'
import { log } from '../../log.js'
import type { UploadView } from '../../model/record.js'
import type { Bus, Command, Limits, Outcome } from './index.js'

/** How long a requester waits for the owner to take its command, before it withdraws it and answers 503. */
const REQUEST_TIMEOUT_MS = 5000
/**
 * Once the owner has taken a command, how long the requester waits for its outcome: the owner may wait up
 * to 10 s for the upload's lock (LOCK_WAIT_MS), and pass the command on once more to a newer owner.
 */
const OUTCOME_TIMEOUT_MS = 30_000
/** While it waits, it also looks for the outcome in Redis this often (the reply message may be lost). */
const POLL_EVERY_MS = 250
/**
 * Commands waiting for their owner live this long: only a requester that died before withdrawing its
 * command leaves one behind, and it cannot be taken after this.
 */
const WANT_MS = 2 * REQUEST_TIMEOUT_MS
/** Outcomes (and the mark of a command taken) live this long, for a requester still waiting. */
const KEEP_MS = 2 * OUTCOME_TIMEOUT_MS
/** The owner looks for commands it may have missed this often. */
const SWEEP_EVERY_MS = 1000

/**
 * A command is taken (by its owner) or withdrawn (by its requester, giving up), never both: whichever
 * removes it from the upload's wanted commands first decides. Taking it leaves a mark where its outcome
 * will be, so a requester that comes too late to withdraw it knows to wait for that outcome.
 */
const TAKE = `
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], '', 'PX', ARGV[2])
return 1
`
/** 'withdrawn': it will never run; 'taken': it runs (or ran); 'absent': it never reached Redis, or lapsed. */
const WITHDRAW = `
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then return 'withdrawn' end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'taken' end
return 'absent'
`

type Scripted = Redis & {
  busTake(want: string, outcome: string, request: string, keepMs: number): Promise<number>
  busWithdraw(want: string, outcome: string, request: string): Promise<'withdrawn' | 'taken' | 'absent'>
}

interface Envelope {
  request: string
  from: string
  command: Command
}

/** The outcome, if it comes within `ms`. */
async function within(outcome: Promise<Outcome>, ms: number): Promise<Outcome | undefined> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)))
  try {
    return await Promise.race([outcome, late])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * States and commands between instances over Redis pub/sub.
 *
 * - Every state goes to `{p}:states`; each instance hands the others' to its own subscribers.
 * - A command for an upload goes to its owner on `{p}:cmd:{instance}`, and is also filed among the upload's
 *   wanted commands (the hash `{p}:want:{id}`, one field per request), which the owner looks at every second
 *   for the uploads it holds: a lost message does not strand a command. The owner runs a command only once
 *   it has taken it from there (TAKE), so it runs once however many ways it arrives; it writes the outcome
 *   (`{p}:outcome:{request}`) and publishes it to the requester, who also polls for it: a lost reply does
 *   not strand one either.
 * - A requester that hears nothing in time withdraws its command (WITHDRAW) before it answers. Withdrawn,
 *   the command never runs, and the 503 says nothing changed; already taken, the requester waits for its
 *   outcome instead; and if it cannot tell (Redis away), the 503 says the command may still take effect.
 *   Every answer is true: an owner that comes back, or one that adopts the upload later, finds nothing.
 */
export class RedisBus implements Bus {
  private readonly listeners: ((view: UploadView, local: boolean) => void)[] = []
  private readonly limitListeners: ((limits: Limits) => void)[] = []
  private handler: ((command: Command) => Promise<Outcome>) | undefined
  private readonly waiting = new Map<string, (outcome: Outcome) => void>()
  private readonly sweeper: NodeJS.Timeout
  private publishFailing = false
  private readonly redis: Scripted

  constructor(
    redis: Redis,
    private readonly subscriber: Redis,
    private readonly instance: string,
    /** The uploads whose lease this instance holds: where it looks for missed commands. */
    private readonly held: () => Iterable<string>,
    private readonly prefix = 'uploads',
  ) {
    redis.defineCommand('busTake', { numberOfKeys: 2, lua: TAKE })
    redis.defineCommand('busWithdraw', { numberOfKeys: 2, lua: WITHDRAW })
    this.redis = redis as Scripted
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
    this.redis
      .publish(this.channel('limits'), JSON.stringify({ from: this.instance, limits }))
      .catch((error: unknown) => log('warn', 'bus.publish_failed', { error: (error as Error).message }))
  }

  onLimits(listener: (limits: Limits) => void): void {
    this.limitListeners.push(listener)
  }

  onCommand(handler: (command: Command) => Promise<Outcome>): void {
    this.handler = handler
  }

  private wantKey(id: string): string {
    return `${this.prefix}:want:${id}`
  }

  private outcomeKey(request: string): string {
    return `${this.prefix}:outcome:${request}`
  }

  async request(instance: string, command: Command): Promise<Outcome> {
    const request = randomUUID()
    const text = JSON.stringify({ request, from: this.instance, command } satisfies Envelope)
    const want = this.wantKey(command.id)
    let settle: (outcome: Outcome) => void = () => undefined
    const outcome = new Promise<Outcome>((resolve) => (settle = resolve))
    this.waiting.set(request, settle)
    const poller = setInterval(() => {
      // An empty outcome is the mark of a command taken: still running.
      void this.redis.get(this.outcomeKey(request)).then(
        (found) => found && settle(JSON.parse(found) as Outcome),
        () => undefined,
      )
    }, POLL_EVERY_MS)
    try {
      try {
        await this.redis.multi().hset(want, request, text).pexpire(want, WANT_MS).exec()
        await this.redis.publish(this.channel('cmd', instance), text)
      } catch (error) {
        return await this.giveUp(
          request,
          command,
          outcome,
          'The shared state (Redis) cannot be reached now',
          error,
        )
      }
      return (
        (await within(outcome, REQUEST_TIMEOUT_MS)) ??
        (await this.giveUp(
          request,
          command,
          outcome,
          `The instance running upload ${command.id} did not answer`,
        ))
      )
    } finally {
      clearInterval(poller)
      this.waiting.delete(request)
    }
  }

  /** Withdraws a command nobody answered, and says what became of it: only what is true. */
  private async giveUp(
    request: string,
    command: Command,
    outcome: Promise<Outcome>,
    why: string,
    cause?: unknown,
  ): Promise<Outcome> {
    let state: 'withdrawn' | 'taken' | 'absent'
    try {
      state = await this.redis.busWithdraw(this.wantKey(command.id), this.outcomeKey(request), request)
    } catch (error) {
      throw unavailable(
        `${why}, and the command could not be withdrawn: it may still take effect. Look at upload ${command.id} before trying again`,
        cause ?? error,
      )
    }
    if (state !== 'taken') throw unavailable(`${why}; nothing was changed, try again`, cause)
    const late = await within(outcome, OUTCOME_TIMEOUT_MS)
    if (late) return late
    throw unavailable(
      `The instance running upload ${command.id} took the command but its outcome did not come back; it may have taken effect. Look at the upload before trying again`,
    )
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

  /** Runs a command once it has taken it, however many ways it arrived, and sends its outcome back both ways. */
  private async serve(envelope: Envelope): Promise<void> {
    const handler = this.handler
    // Not serving yet: left for the next sweep (or for its requester to withdraw).
    if (!handler) return
    const key = this.outcomeKey(envelope.request)
    try {
      // Not taken: withdrawn by its requester, or already taken by this instance or another.
      if (!(await this.redis.busTake(this.wantKey(envelope.command.id), key, envelope.request, KEEP_MS)))
        return
    } catch (error) {
      return log('warn', 'bus.take_failed', { request: envelope.request, error: (error as Error).message }) // the next sweep looks again
    }
    const outcome = await handler(envelope.command).catch((error: unknown): Outcome => ({
      error: { code: 'UNAVAILABLE', message: (error as Error).message },
    }))
    const text = JSON.stringify({ request: envelope.request, outcome })
    await Promise.all([
      this.redis.set(key, JSON.stringify(outcome), 'PX', KEEP_MS),
      this.redis.publish(this.channel('reply', envelope.from), text),
    ]).catch((error: unknown) => log('warn', 'bus.reply_failed', { error: (error as Error).message }))
  }

  /** Commands wanted for uploads held here whose message never came (or came before this instance held them). */
  private async sweep(): Promise<void> {
    const ids = [...this.held()]
    if (ids.length === 0 || !this.handler) return
    try {
      const pipeline = this.redis.pipeline()
      for (const id of ids) pipeline.hvals(this.wantKey(id))
      for (const [error, texts] of (await pipeline.exec()) ?? []) {
        if (error) continue
        for (const text of texts as string[]) void this.serve(JSON.parse(text) as Envelope)
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
