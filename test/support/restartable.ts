import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawnServer, type ChildServer } from './child.js'
import { freePort } from './redis.js'

export interface RestartableServer {
  /** The same for every start: a page keeps talking to it. */
  url: string
  dir: string
  /** The process now (replaced by each start). */
  current(): ChildServer
  /** Ends the process with `signal` and waits until it is gone. */
  kill(signal?: NodeJS.Signals): Promise<void>
  /** Starts it again, on the same port and folder. */
  start(): Promise<void>
  /** Ends it for good and removes its folder. */
  stop(): Promise<void>
}

/**
 * The built server (`node dist/main.js`) in a process of its own, on a port and folder of its own that stay
 * the same across restarts: what a browser page sees of a server that went away and came back.
 */
export async function restartableServer(env: Record<string, string> = {}): Promise<RestartableServer> {
  const dir = await mkdtemp(join(tmpdir(), 'uploads-restartable-'))
  const port = await freePort()
  const withPort = { ...env, PORT: String(port) }
  let child = await spawnServer(dir, withPort)
  const kill = async (signal: NodeJS.Signals = 'SIGKILL') => {
    if (child.child.exitCode === null && child.child.signalCode === null) child.child.kill(signal)
    await child.exited
  }
  return {
    url: child.url,
    dir,
    current: () => child,
    kill,
    async start() {
      await kill()
      child = await spawnServer(dir, withPort)
    },
    async stop() {
      await kill()
      await rm(dir, { recursive: true, force: true })
    },
  }
}
