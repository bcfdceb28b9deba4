import { ConfigError, loadConfig } from './config.js'
import { log, setLogLevel } from './log.js'
import { startApp } from './server.js'

/** A shutdown that takes longer than this is cut short; state was checkpointed as it went. */
const SHUTDOWN_LIMIT_MS = 5000

async function main(): Promise<void> {
  const config = loadConfig()
  setLogLevel(config.logLevel)
  const app = await startApp(config)
  log('info', 'server.started', {
    url: app.url,
    graphiql: `${app.url}/graphql`,
    uploadDir: config.uploadDir,
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
  // A configuration error is the operator's to fix: say it plainly, on stderr, as well as in the log.
  if (error instanceof ConfigError) console.error(`Configuration error: ${error.message}`)
  log('error', 'server.start_failed', { error })
  process.exit(1)
})
