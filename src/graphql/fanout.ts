import type { Duplex } from 'node:stream'
import { createSourceEventStream, type ExecutionArgs, type ExecutionResult } from 'graphql'
import { MessageType } from 'graphql-ws'
import type WebSocket from 'ws'
import { log } from '../log.js'
import { isFinal, type UploadView } from '../model/record.js'

/**
 * graphql-ws subscribers that asked the same thing (the same query, variables and operation) share one
 * execution: a group follows the upload states once, runs the selection once per state, serialises the
 * result once, and writes it to every member's socket with the member's own subscription id in front.
 * graphql-ws keeps everything else (connection_init, pings, subscribe and complete, errors); it iterates a
 * member's "parked" iterator, which yields nothing and ends when the group does (graphql-ws then sends
 * `complete`), or is returned when the client completes or the socket closes.
 *
 * A member's socket never holds more than HIGH_WATER of unsent bytes: past it, the member keeps only the
 * latest state of each upload (a slow reader gets the latest state, never a backlog) and gets them when it
 * reads again; one that stays behind for STALL_MS (or has more than MAX_UNSENT waiting in any case) is
 * closed with 1013 (Try Again Later: graphql-ws clients reconnect and get the current state), logged and
 * counted. What a stranger reads slowly never grows this server's memory.
 */
export const HIGH_WATER = 16 * 1024
export const MAX_UNSENT = 1024 * 1024
const STALL_MS = 10_000
const RETRY_MS = 50
/**
 * RFC 6455's Try Again Later: a WebSocket close code, not one of graphql-ws's protocol (its `CloseCode` has
 * none for it), and clients reconnect on it.
 */
export const SLOW_CONSUMER = 1013

interface Member {
  ws: WebSocket
  /** The socket under `ws`, when it was adopted: frames go straight to it (see frameOf). */
  socket: Duplex | undefined
  id: string
  /** Until graphql-ws is iterating it, a member gets nothing (then it gets the group's latest states). */
  ready: boolean
  /** The latest state of each upload not yet written, while the socket is behind. */
  pending: Map<string, Buffer>
  behindSince: number | undefined
  retry: NodeJS.Timeout | undefined
  end(error?: unknown): void
}

interface Group {
  key: string
  args: ExecutionArgs
  execute: (args: ExecutionArgs) => Promise<ExecutionResult> | ExecutionResult
  members: Set<Member>
  /** The latest serialised state of each unfinished upload the group follows: a late member's snapshot. */
  latest: Map<string, Buffer>
  /** The last state of all, final or not: what a member still joining gets if the group ends meanwhile. */
  last: Buffer | undefined
  source: AsyncIterator<UploadView> | undefined
  ended: boolean
}

/** A stable key: the same text, the same variables (in any key order), the same operation name. */
export function groupKey(
  query: string,
  variables: unknown,
  operationName: string | null | undefined,
): string {
  const stable = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(stable)
      : v !== null && typeof v === 'object'
        ? Object.keys(v)
            .sort()
            .map((k) => [k, stable((v as Record<string, unknown>)[k])])
        : v
  return JSON.stringify([query, stable(variables ?? {}), operationName ?? null])
}

/**
 * graphql-ws's whole `next` message for subscription `id` as one unmasked WebSocket text frame (RFC 6455
 * 5.2: a server's frames are not masked). Written with one `socket.write`, where ws.send would frame it again
 * and write header and payload as two chunks (a writev) for every socket: at 10,000 subscribers that pair of
 * writes was most of an event's cost.
 */
export function frameOf(id: string, tail: Buffer): Buffer {
  const prefix = `{"id":${JSON.stringify(id)},"type":${JSON.stringify(MessageType.Next)},"payload":`
  const prefixLength = Buffer.byteLength(prefix)
  const length = prefixLength + tail.length
  const head = length < 126 ? 2 : length < 65_536 ? 4 : 10
  const frame = Buffer.allocUnsafe(head + length)
  frame[0] = 0x81 // FIN, text
  if (head === 2) frame[1] = length
  else if (head === 4) {
    frame[1] = 126
    frame.writeUInt16BE(length, 2)
  } else {
    frame[1] = 127
    frame.writeUInt32BE(Math.floor(length / 2 ** 32), 2)
    frame.writeUInt32BE(length >>> 0, 6)
  }
  frame.write(prefix, head, 'utf8')
  tail.copy(frame, head + prefixLength)
  return frame
}

/** Where a frame's payload starts: after its 2, 4 or 10 header bytes. */
const payloadOf = (frame: Buffer): Buffer => frame.subarray(frame[1] === 127 ? 10 : frame[1] === 126 ? 4 : 2)

const isIterable = (value: unknown): value is AsyncIterable<UploadView> =>
  typeof value === 'object' && value !== null && Symbol.asyncIterator in value

export class Fanout {
  private readonly groups = new Map<string, Group>()
  /** Raw sockets under ws's WebSockets, registered at the upgrade (see adopt). */
  private readonly sockets = new WeakMap<WebSocket, Duplex>()
  /**
   * The frames of the state being delivered, one per distinct subscription id: members mostly use the same
   * few ids, so an event round over 10,000 members builds a handful of frames. Only the latest state's are
   * kept; a member catching up on an older one builds its own.
   */
  private frames: { tail: Buffer; byId: Map<string, Buffer> } | undefined
  slowClosed = 0
  members = 0

  /**
   * Lets members on `ws` be written to through `socket` itself. Only valid while ws frames nothing itself
   * between our writes out of order: no permessage-deflate (ws then queues compressed frames), which this
   * server never negotiates (see ws.ts).
   */
  adopt(ws: WebSocket, socket: Duplex): void {
    this.sockets.set(ws, socket)
  }

  get groupCount(): number {
    return this.groups.size
  }

  /**
   * What graphql-ws's `subscribe` returns for a member: a parked iterator, or (an unknown upload, say) the
   * single result with the errors, which graphql-ws sends as usual.
   */
  async join(
    key: string,
    args: ExecutionArgs,
    execute: Group['execute'],
    subscribe: (args: ExecutionArgs) => unknown,
    ws: WebSocket,
    id: string,
  ): Promise<AsyncIterable<ExecutionResult> | ExecutionResult> {
    let group = this.groups.get(key)
    if (!group || group.ended) {
      // The upload states themselves (graphql-js's first half of a subscription: the field's subscribe),
      // so the group knows which upload each is; the selection runs below, through the envelop.
      const source = await createSourceEventStream(args)
      // Refused (an unknown upload, say): the enveloped subscribe answers it, masked and coded as always.
      if (!isIterable(source)) return subscribe(args) as Promise<ExecutionResult>
      group = this.groups.get(key)
      if (group && !group.ended) {
        void source[Symbol.asyncIterator]().return?.() // another member started it meanwhile
      } else {
        const iterator = source[Symbol.asyncIterator]()
        group = {
          key,
          args,
          execute,
          members: new Set(),
          latest: new Map(),
          last: undefined,
          source: iterator,
          ended: false,
        }
        this.groups.set(key, group)
        void this.pump(group)
      }
    }
    return this.park(group, ws, id)
  }

  private async pump(group: Group): Promise<void> {
    let failure: unknown
    const source = group.source
    try {
      for (;;) {
        if (!source) break
        const next = await source.next()
        if (next.done) break
        const view = next.value
        const result = await group.execute({ ...group.args, rootValue: view })
        const tail = Buffer.from(`${JSON.stringify(result)}}`)
        if (isFinal(view.status)) group.latest.delete(view.id)
        else group.latest.set(view.id, tail)
        group.last = tail
        for (const member of group.members) this.deliver(member, view.id, tail)
      }
    } catch (error) {
      failure = error
    }
    group.ended = true
    if (this.groups.get(group.key) === group) this.groups.delete(group.key)
    for (const member of group.members) {
      this.flush(member, true)
      member.end(failure)
    }
  }

  private park(group: Group, ws: WebSocket, id: string): AsyncIterable<ExecutionResult> {
    let settle!: {
      resolve: (result: IteratorResult<ExecutionResult>) => void
      reject: (error: unknown) => void
    }
    const finished = new Promise<IteratorResult<ExecutionResult>>(
      (resolve, reject) => (settle = { resolve, reject }),
    )
    const member: Member = {
      ws,
      socket: this.sockets.get(ws),
      id,
      ready: false,
      pending: new Map(),
      behindSince: undefined,
      retry: undefined,
      end: (error) => {
        clearTimeout(member.retry)
        if (error === undefined) settle.resolve({ done: true, value: undefined })
        else settle.reject(error)
      },
    }
    group.members.add(member)
    this.members++
    const leave = () => {
      if (!group.members.delete(member)) return
      this.members--
      clearTimeout(member.retry)
      if (group.members.size === 0 && !group.ended) {
        group.ended = true
        if (this.groups.get(group.key) === group) this.groups.delete(group.key)
        void group.source?.return?.()
      }
    }
    const iterator: AsyncIterableIterator<ExecutionResult> = {
      [Symbol.asyncIterator]: () => iterator,
      next: () => {
        if (!member.ready) {
          // graphql-ws iterates now: the member's snapshot is the group's latest states, then what comes.
          member.ready = true
          for (const [upload, tail] of group.latest) member.pending.set(upload, tail)
          if (group.ended && group.last && member.pending.size === 0) member.pending.set('', group.last)
          this.flush(member, group.ended)
          if (group.ended) member.end()
        }
        return finished
      },
      return: async () => {
        leave()
        member.end()
        return { done: true, value: undefined }
      },
      throw: async (error: unknown) => {
        leave()
        member.end()
        throw error
      },
    }
    return iterator
  }

  private deliver(member: Member, upload: string, tail: Buffer): void {
    if (!member.ready || member.ws.readyState !== member.ws.OPEN) return
    member.pending.set(upload, tail) // a newer state of the same upload replaces one not yet written
    this.flush(member, false)
  }

  private frame(id: string, tail: Buffer): Buffer {
    if (this.frames?.tail !== tail) this.frames = { tail, byId: new Map() }
    let frame = this.frames.byId.get(id)
    if (!frame) this.frames.byId.set(id, (frame = frameOf(id, tail)))
    return frame
  }

  /** Writes what the member is owed while its socket keeps up; else keeps it, and looks again shortly. */
  private flush(member: Member, force: boolean): void {
    const { ws, socket } = member
    if (ws.readyState !== ws.OPEN) return
    for (const [upload, tail] of member.pending) {
      if (!force && ws.bufferedAmount > HIGH_WATER) break
      member.pending.delete(upload)
      const frame = this.frame(member.id, tail)
      if (socket && !socket.destroyed) socket.write(frame)
      else ws.send(payloadOf(frame), { binary: false })
    }
    if (member.pending.size === 0) {
      member.behindSince = undefined
      return
    }
    const now = performance.now()
    member.behindSince ??= now
    if (ws.bufferedAmount > MAX_UNSENT || now - member.behindSince > STALL_MS) return this.tooSlow(member)
    member.retry ??= setTimeout(() => {
      member.retry = undefined
      this.flush(member, false)
    }, RETRY_MS).unref()
  }

  private tooSlow(member: Member): void {
    this.slowClosed++
    clearTimeout(member.retry)
    member.pending.clear()
    log('warn', 'ws.slow_consumer', { unsent: member.ws.bufferedAmount })
    member.ws.close(SLOW_CONSUMER, 'Too slow: the server will not hold more for this socket; reconnect')
    // The close frame waits behind the data the peer is not reading: cut it off if it never reads it.
    setTimeout(() => member.ws.terminate(), 1000).unref()
  }
}
