import type { ServiceErrorData } from '../../errors.js'
import type { UploadView } from '../../model/record.js'

/** What a client asked of an upload, as data: so it can be carried to the process that owns it. */
export type Command =
  | { op: 'pause'; id: string }
  | { op: 'resume'; id: string; speed: number | null }
  | { op: 'setSpeed'; id: string; speed: number }
  | { op: 'cancel'; id: string }
  | { op: 'delete'; id: string; keepFile: boolean }

/** Settings of the whole service that every process applies to the transfers it runs. */
export interface Limits {
  /** Bytes per second for all transfers of one instance together; 0: no cap. */
  maxTotalSpeed: number
}

/** A command's outcome, as data: the new state, or the error a client should see. */
export type Outcome = { ok: UploadView } | { error: ServiceErrorData }

/**
 * How the processes of one service talk: every state of every upload reaches every process (so any of them
 * can answer a subscriber), and a command reaches the process that owns the upload and its outcome comes
 * back. In one process (local.ts) both are function calls; across instances they go over Redis (redis.ts).
 */
export interface Bus {
  /** Sends an upload's new state to every process's subscribers, this one's included. */
  publish(view: UploadView): void
  /** Receives every state published by any process. */
  onState(listener: (view: UploadView, local: boolean) => void): void
  /**
   * Carries a command to `instance` and resolves with its outcome. Rejects (UNAVAILABLE) if none comes, and
   * then says only what is true: the command was withdrawn and nothing changed, or it may still take effect.
   */
  request(instance: string, command: Command): Promise<Outcome>
  /** Serves commands sent to this process. */
  onCommand(handler: (command: Command) => Promise<Outcome>): void
  /** Sends the server-wide limits to every process, this one's included. */
  publishLimits(limits: Limits): void
  onLimits(listener: (limits: Limits) => void): void
  close(): Promise<void>
}
