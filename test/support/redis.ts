import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'

export const REDIS_SERVER = '/usr/bin/redis-server'

/** A port nobody listens on now (the kernel's pick, then let go). */
export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

export interface TestRedis {
  url: string
  port: number
  dir: string
  /** A client of the tests' own, for looking inside. */
  client(): Redis
  /** Stops it (SIGTERM: AOF flushed) and, after `downMs`, starts it again on the same port and data. */
  restart(downMs?: number): Promise<void>
  start(): Promise<void>
  stop(): Promise<void>
}

/**
 * A real redis-server (Debian's package; .ci/run installs it), on a free loopback port with a folder of its
 * own, persisting as the README tells operators to: the AOF, fsynced on every write.
 */
export async function startRedis(): Promise<TestRedis> {
  if (!existsSync(REDIS_SERVER))
    throw new Error(`${REDIS_SERVER} is missing: apt-get install -y redis-server`)
  const dir = await mkdtemp(join(tmpdir(), 'redis-'))
  const port = await freePort()
  let child: ChildProcess | undefined
  const clients: Redis[] = []

  const start = async () => {
    const started = spawn(
      REDIS_SERVER,
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        '--save',
        '',
        '--protected-mode',
        'no',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    child = started
    let output = ''
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server did not start:\n${output}`)), 10_000)
      started.stdout?.on('data', (chunk: Buffer) => {
        output += chunk.toString()
        if (/Ready to accept connections/.test(output)) {
          clearTimeout(timer)
          resolve()
        }
      })
      started.once('exit', (code) => reject(new Error(`redis-server exited (${code}):\n${output}`)))
    })
  }
  const stop = async () => {
    const running = child
    child = undefined
    if (!running || running.exitCode !== null) return
    const exited = new Promise((resolve) => running.once('exit', resolve))
    running.kill('SIGTERM')
    await exited
  }

  await start()
  const url = `redis://127.0.0.1:${port}`
  return {
    url,
    port,
    dir,
    client() {
      const client = new Redis(url, { maxRetriesPerRequest: 1 })
      client.on('error', () => undefined) // while the server restarts; the commands themselves say so
      clients.push(client)
      return client
    },
    async restart(downMs = 0) {
      await stop()
      if (downMs > 0) await new Promise((resolve) => setTimeout(resolve, downMs))
      await start()
    },
    start,
    /** Ends it for good: its clients, the server, its folder. */
    async stop() {
      for (const client of clients.splice(0)) client.disconnect()
      await stop()
      await rm(dir, { recursive: true, force: true })
    },
  }
}
