import type { ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { endProcess, spawnNode } from './lib.js'

type Message = Record<string, unknown> & { type: string }

/** A bench/client-process.ts child: commands go in on stdin, messages come back on stdout. */
export interface Swarm {
  child: ChildProcess
  send(command: Record<string, unknown>): void
  /** The next message of this type (or an error message, or the child's exit, which reject). */
  next<T = Message>(type: string, timeoutMs?: number): Promise<T>
  stop(): Promise<void>
}

export function startSwarm(mode: string, args: Record<string, unknown>, manyFiles = false): Swarm {
  const child = spawnNode(['--import', 'tsx', 'bench/client-process.ts', mode, JSON.stringify(args)], {
    stdio: ['pipe', 'pipe', 'inherit'],
    manyFiles,
  })
  const inbox: Message[] = []
  const waiters: { type: string; resolve: (m: Message) => void; reject: (e: Error) => void }[] = []
  let ended: Error | undefined
  const deliver = () => {
    for (let i = 0; i < waiters.length; i++) {
      const waiter = waiters[i]!
      const at = inbox.findIndex((m) => m.type === waiter.type || m.type === 'error')
      if (at < 0) continue
      const [message] = inbox.splice(at, 1)
      waiters.splice(i--, 1)
      if (message!.type === 'error') waiter.reject(new Error(`${mode} client: ${String(message!.message)}`))
      else waiter.resolve(message!)
    }
  }
  createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      inbox.push(JSON.parse(line) as Message)
    } catch {
      return // not ours (a stray log line)
    }
    deliver()
  })
  child.once('exit', (code, signal) => {
    ended = new Error(`${mode} client exited (${code ?? signal})`)
    for (const waiter of waiters.splice(0)) waiter.reject(ended)
  })
  child.stdin!.on('error', () => undefined)
  return {
    child,
    send(command) {
      child.stdin!.write(`${JSON.stringify(command)}\n`)
    },
    next<T>(type: string, timeoutMs = 120_000) {
      return new Promise<T>((resolve, reject) => {
        if (ended && !inbox.some((m) => m.type === type)) return reject(ended)
        const timer = setTimeout(() => {
          const at = waiters.findIndex((w) => w.resolve === done)
          if (at >= 0) waiters.splice(at, 1)
          reject(new Error(`${mode} client: no ${type} within ${timeoutMs} ms`))
        }, timeoutMs)
        const done = (m: Message) => {
          clearTimeout(timer)
          resolve(m as T)
        }
        waiters.push({
          type,
          resolve: done,
          reject: (e) => {
            clearTimeout(timer)
            reject(e)
          },
        })
        deliver()
      })
    },
    async stop() {
      child.stdin!.end()
      await endProcess(child)
    },
  }
}

/** Latencies as [ms, count] pairs (client-process.ts's subscribe reports), merged over several clients. */
export type Histogram = [number, number][]

export function merge(histograms: Histogram[]): Histogram {
  const sum = new Map<number, number>()
  for (const h of histograms) for (const [ms, n] of h) sum.set(ms, (sum.get(ms) ?? 0) + n)
  return [...sum].sort((a, b) => a[0] - b[0])
}

export function histogramPercentile(histogram: Histogram, p: number): number {
  const sorted = [...histogram].sort((a, b) => a[0] - b[0])
  const total = sorted.reduce((n, [, c]) => n + c, 0)
  if (total === 0) return NaN
  const rank = Math.max(1, Math.ceil((p / 100) * total))
  let seen = 0
  for (const [ms, n] of sorted) {
    seen += n
    if (seen >= rank) return ms
  }
  return sorted.at(-1)![0]
}

export const histogramCount = (histogram: Histogram) => histogram.reduce((n, [, c]) => n + c, 0)

export interface SubscriberReport {
  histogram: Histogram
  events: number
  errors: number
  closes: Record<string, number>
  open: number
}

/**
 * `count` graphql-ws subscribers on `wsUrl`, spread over processes of at most `perProcess` each, following
 * `id` (every upload when undefined). Resolves once every one has subscribed.
 */
export async function subscribers(
  wsUrl: string,
  id: string | undefined,
  count: number,
  perProcess = 5000,
): Promise<{
  swarms: Swarm[]
  connected: number
  collect(): void
  report(): Promise<SubscriberReport>
  stop(): Promise<void>
}> {
  const swarms: Swarm[] = []
  for (let left = count; left > 0; left -= perProcess)
    swarms.push(startSwarm('subscribe', { wsUrl, id, count: Math.min(perProcess, left) }, true))
  try {
    const ready = await Promise.all(
      swarms.map((s) => s.next<{ connected: number }>('ready', 60_000 + count * 20)),
    )
    const connected = ready.reduce((n, r) => n + r.connected, 0)
    return {
      swarms,
      connected,
      collect: () => swarms.forEach((s) => s.send({ cmd: 'collect' })),
      async report() {
        const reports = await Promise.all(
          swarms.map((s) => {
            s.send({ cmd: 'report' })
            return s.next<SubscriberReport>('report')
          }),
        )
        const closes: Record<string, number> = {}
        for (const r of reports)
          for (const [code, n] of Object.entries(r.closes)) closes[code] = (closes[code] ?? 0) + n
        return {
          histogram: merge(reports.map((r) => r.histogram)),
          events: reports.reduce((n, r) => n + r.events, 0),
          errors: reports.reduce((n, r) => n + r.errors, 0),
          open: reports.reduce((n, r) => n + r.open, 0),
          closes,
        }
      },
      stop: () => Promise.all(swarms.map((s) => s.stop())).then(() => undefined),
    }
  } catch (error) {
    await Promise.all(swarms.map((s) => s.stop()))
    throw error
  }
}

/** The largest gap between consecutive probe answers (epoch ms) among the gaps that overlap [from, to]. */
export function largestGap(times: number[], from: number, to: number): number {
  let worst = 0
  for (let i = 1; i < times.length; i++) {
    const [a, b] = [times[i - 1]!, times[i]!]
    if (b >= from && a <= to) worst = Math.max(worst, b - a)
  }
  return worst
}
