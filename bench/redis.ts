import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { endProcess, track } from './lib.js'

const REDIS_SERVER = '/usr/bin/redis-server'

/** A port nobody listens on now (the kernel's pick, then let go). */
async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

/**
 * Debian's redis-server on a free loopback port, in a folder of its own, persisting as the README tells
 * operators to (the AOF, fsynced on every write).
 */
export async function startRedis(): Promise<{ url: string; pid: number; stop(): Promise<void> }> {
  if (!existsSync(REDIS_SERVER))
    throw new Error(`${REDIS_SERVER} is missing: apt-get install -y redis-server`)
  const dir = await mkdtemp(join(tmpdir(), 'bench-redis-'))
  const port = await freePort()
  const child = track(
    spawn(
      REDIS_SERVER,
      [
        ...['--port', String(port), '--bind', '127.0.0.1', '--dir', dir],
        ...['--appendonly', 'yes', '--appendfsync', 'always', '--save', '', '--protected-mode', 'no'],
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    ),
  )
  const stop = async () => {
    await endProcess(child, 5000)
    await rm(dir, { recursive: true, force: true })
  }
  try {
    await new Promise<void>((resolve, reject) => {
      let output = ''
      const timer = setTimeout(() => reject(new Error(`redis-server did not start:\n${output}`)), 10_000)
      child.stdout.on('data', (chunk: Buffer) => {
        if (output.length < 64 * 1024) output += chunk.toString()
        if (/Ready to accept connections/.test(output)) {
          clearTimeout(timer)
          resolve()
        }
      })
      child.stderr.resume()
      child.once('exit', (code) => reject(new Error(`redis-server exited (${code}):\n${output}`)))
    })
  } catch (error) {
    await stop()
    throw error
  }
  return { url: `redis://127.0.0.1:${port}`, pid: child.pid!, stop }
}
