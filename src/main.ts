import { ConfigError, loadConfig } from './config.js'
import { startApp } from './server.js'

/** A shutdown that takes longer than this is cut short; state was checkpointed as it went. */
const SHUTDOWN_LIMIT_MS = 5000

async function main(): Promise<void> {
  const config = loadConfig()
  const app = await startApp(config)
  console.log(
    `Upload service on ${app.url} (GraphiQL: ${app.url}/graphql, REST: ${app.url}/api), storage ${config.uploadDir}`,
  )

  const shutdown = (signal: string) => {
    console.log(`${signal}: shutting down`)
    setTimeout(() => {
      console.error(`Shutdown took over ${SHUTDOWN_LIMIT_MS} ms; exiting anyway`)
      process.exit(1)
    }, SHUTDOWN_LIMIT_MS).unref()
    app.close().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error(error)
        process.exit(1)
      },
    )
  }
  process.once('SIGTERM', shutdown)
  process.once('SIGINT', shutdown)
}

main().catch((error: unknown) => {
  console.error(error instanceof ConfigError ? `Configuration error: ${error.message}` : error)
  process.exit(1)
})
