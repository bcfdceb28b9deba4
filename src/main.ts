import { ConfigError, loadConfig } from './config.js'
import { log, setLogFormat, setLogLevel } from './log.js'
import { startApp } from './app/compose.js'
import { setHeapGrowth } from './heap.js'

/** A shutdown that takes longer than this is cut short; state was checkpointed as it went. */
const SHUTDOWN_LIMIT_MS = 5000

/** What an operator must fix: one line on stderr, no stack trace. (By name: Redis's code loads only when used.) */
const OPERATOR_ERRORS = new Set([
  'ConfigError',
  'StartupError',
  'FolderLockError',
  'StateFileError',
  'RedisUnreachableError',
  'S3SetupError',
])

async function main(): Promise<void> {
  setHeapGrowth()
  const config = loadConfig()
  setLogLevel(config.logLevel)
  setLogFormat(config.logFormat)
  const app = await startApp(config)
  log('info', 'server.started', {
    url: app.url,
    graphiql: `${app.url}/graphql`,
    uploadDir: config.uploadDir,
    ...(config.storage.kind === 's3'
      ? { storage: `s3://${config.storage.bucket}/${config.storage.prefix}` }
      : {}),
    state: config.mode.kind === 'embedded' ? config.stateFile : 'shared over Redis',
    access: config.apiToken === undefined ? 'open (no API_TOKEN)' : 'token required',
  })

  const shutdown = (signal: string) => {
    log('info', 'server.stopping', { signal })
    setTimeout(() => {
      log('error', 'server.stop_timeout', { limitMs: SHUTDOWN_LIMIT_MS })
      process.exit(1)
    }, SHUTDOWN_LIMIT_MS).unref()
    app.close().then(
      () => {
        log('info', 'server.stopped')
        process.exit(0)
      },
      (error: unknown) => {
        log('error', 'server.stop_failed', { error })
        process.exit(1)
      },
    )
  }
  process.once('SIGTERM', shutdown)
  process.once('SIGINT', shutdown)
}

main().catch((error: unknown) => {
  if (error instanceof Error && OPERATOR_ERRORS.has(error.name)) {
    const prefix = error instanceof ConfigError ? 'Configuration error: ' : ''
    console.error(`${prefix}${(error as Error).message}`)
    log('error', 'server.start_failed', { error: (error as Error).message })
  } else {
    log('error', 'server.start_failed', { error })
  }
  process.exit(1)
})
