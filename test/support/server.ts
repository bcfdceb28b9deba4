import { mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig, type Config } from '../../src/config.js'
import { setLogLevel } from '../../src/log.js'
import { startApp, type App } from '../../src/app/compose.js'

// In-process servers share the test runner's stdout; their info lines would bury its report. (The servers
// spawned as processes log everything, and test/observability.test.ts reads it.)
setLogLevel('warn')

export interface TestServer {
  app: App
  url: string
  dir: string
  config: Config
  /** Closes the server and starts a new one on the same storage folder and state file. */
  restart(): Promise<TestServer>
  stop(): Promise<void>
}

/** The real server, on 127.0.0.1 and an ephemeral port, storing into a fresh temporary folder. */
export async function startServer(env: Record<string, string> = {}, dir?: string): Promise<TestServer> {
  const folder = dir ?? (await mkdtemp(join(tmpdir(), 'uploads-test-')))
  const config = loadConfig({ UPLOAD_DIR: folder, PORT: '0', HOST: '127.0.0.1', ...env })
  const app = await startApp(config)
  // Start-up's sweep and recovery run after the port is bound; tests start from where they are done.
  await app.recovered
  const server: TestServer = {
    app,
    url: app.url,
    dir: folder,
    config,
    async restart() {
      await app.close()
      return startServer(env, folder)
    },
    async stop() {
      await app.close()
      await rm(folder, { recursive: true, force: true })
    },
  }
  return server
}

/** Where a running or paused upload's bytes are written, until they are verified and renamed into place. */
export const transferFile = (dir: string, id: string) => join(dir, '.transfers', id)

/** Files in the storage folder (not the state file), in staging, and transfers' files. */
/** Bytes of bodies still arriving in the staging folder (`*.incoming`), all together. */
export async function incomingBytes(dir: string): Promise<number> {
  const names = (await readdir(join(dir, '.staging')).catch(() => [])).filter((name) =>
    name.endsWith('.incoming'),
  )
  const sizes = await Promise.all(
    names.map((name) =>
      stat(join(dir, '.staging', name)).then(
        (info) => info.size,
        () => 0,
      ),
    ),
  )
  return sizes.reduce((a, b) => a + b, 0)
}

export async function listStorage(
  dir: string,
): Promise<{ stored: string[]; staging: string[]; transfers: string[] }> {
  const stored = (await readdir(dir)).filter((name) => !name.startsWith('.'))
  const staging = await readdir(join(dir, '.staging')).catch(() => [])
  const transfers = await readdir(join(dir, '.transfers')).catch(() => [])
  return { stored: stored.sort(), staging: staging.sort(), transfers: transfers.sort() }
}
