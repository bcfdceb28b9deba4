import { createHash } from 'node:crypto'
import { readFile, realpath, rm, stat, utimes, writeFile } from 'node:fs/promises'
import { createConnection, createServer, type Server } from 'node:net'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'

/**
 * One server per storage folder (unless they share state over Redis). Taken before anything in the folder
 * is touched, and held for the life of the process.
 *
 * On one host the lock is a listening Unix socket whose name is derived from the folder's real path: binding
 * it is atomic, and the kernel releases it the moment the process dies, SIGKILL and power cuts included, so
 * a crashed server never leaves a stale lock behind. (On Linux the socket lives in the abstract namespace and
 * has no file at all; elsewhere it is a file in the temp folder, and one that nobody answers on is stale.)
 * An owner file in the folder names the holder, for the message a second server prints, and its heartbeat
 * lets a server on another host that shares the folder (NFS) see that it is in use.
 */
export class FolderLockError extends Error {
  override readonly name = 'FolderLockError'
}

/** A folder lock whose owner file has not been touched for this long belongs to a server that is gone. */
const HEARTBEAT_MS = 5000
const STALE_AFTER_MS = 3 * HEARTBEAT_MS
const OWNER_FILE = '.lock'

interface Owner {
  pid: number
  host: string
  since: string
  /** `shared`: instances that share state over Redis; several may hold the folder at once. */
  mode: 'exclusive' | 'shared'
}

export class FolderLock {
  private constructor(
    private readonly dir: string,
    private readonly server: Server | undefined,
    private readonly heartbeat: NodeJS.Timeout,
  ) {}

  /**
   * `exclusive`: this process alone (the embedded store). `shared`: any number of `shared` holders (instances
   * over Redis), but never beside an exclusive one.
   */
  static async acquire(dir: string, mode: 'exclusive' | 'shared' = 'exclusive'): Promise<FolderLock> {
    const real = await realpath(dir)
    const address = socketAddress(real)
    const ownerFile = join(real, OWNER_FILE)
    const owner = await readOwner(ownerFile)
    const here = hostname()
    const fresh = owner !== undefined && Date.now() - owner.touched < STALE_AFTER_MS
    // Instances sharing the folder over Redis all keep its heartbeat fresh: one alone may not join them.
    if (fresh && owner.mode === 'shared' && mode === 'exclusive') throw inUse(dir, owner)
    if (fresh && owner.host !== here && owner.mode === 'exclusive') throw inUse(dir, owner)

    let server: Server | undefined
    if (mode === 'exclusive') {
      server = await bind(address).catch(async (error: NodeJS.ErrnoException) => {
        if (error.code !== 'EADDRINUSE') throw error
        // A socket file (not Linux) whose owner died stays behind: nobody answers on it, so it is free.
        if (address.startsWith('\0') || (await answers(address))) throw inUse(dir, owner)
        await rm(address, { force: true })
        return bind(address)
      })
    } else if (await answers(address)) {
      throw inUse(dir, owner)
    }

    const me: Owner = { pid: process.pid, host: here, since: new Date().toISOString(), mode }
    await writeFile(ownerFile, `${JSON.stringify(me)}\n`)
    const heartbeat = setInterval(() => {
      const now = new Date()
      void utimes(ownerFile, now, now).catch(() =>
        writeFile(ownerFile, `${JSON.stringify(me)}\n`).catch(() => undefined),
      )
    }, HEARTBEAT_MS).unref()
    return new FolderLock(real, server, heartbeat)
  }

  async release(): Promise<void> {
    clearInterval(this.heartbeat)
    const server = this.server
    if (server) {
      await rm(join(this.dir, OWNER_FILE), { force: true })
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}

function socketAddress(real: string): string {
  const name = `throttled-uploads-${createHash('sha256').update(real).digest('hex').slice(0, 32)}`
  return process.platform === 'linux' ? `\0${name}` : join(tmpdir(), `${name}.sock`)
}

function bind(address: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    // Anyone who connects is told nothing and let go: the socket exists only to be held.
    const server = createServer((socket) => socket.destroy())
    server.once('error', reject)
    server.listen(address, () => {
      server.off('error', reject)
      server.unref()
      resolve(server)
    })
  })
}

function answers(address: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection(address)
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

async function readOwner(file: string): Promise<(Owner & { touched: number }) | undefined> {
  try {
    const [text, info] = await Promise.all([readFile(file, 'utf8'), stat(file)])
    return { ...(JSON.parse(text) as Owner), touched: info.mtimeMs }
  } catch {
    return undefined
  }
}

function inUse(dir: string, owner: Owner | undefined): FolderLockError {
  const who = owner ? ` (pid ${owner.pid} on ${owner.host}, since ${owner.since})` : ''
  const shared = owner?.mode === 'shared'
  return new FolderLockError(
    shared
      ? `UPLOAD_DIR ${dir} is used by instances that share state over Redis${who}: start this one with the same REDIS_URL, or give it another UPLOAD_DIR`
      : `UPLOAD_DIR ${dir} is in use by another server${who}: stop it or give this one another UPLOAD_DIR; to run several instances on one folder, set REDIS_URL on all of them`,
  )
}
