import { createRequire } from 'node:module'
import { defineConfig } from 'vitest/config'

const require = createRequire(import.meta.url)

export default defineConfig({
  resolve: {
    // graphql 16 ships CJS and ESM builds; Node (and every CJS dependency) loads the CJS one, vite would pick
    // the ESM one, and two graphql modules refuse each other's schemas. Use the one Node uses.
    alias: { graphql: require.resolve('graphql') },
  },
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    // Throttle and progress tests measure wall-clock pacing; more workers than cores would skew them.
    maxWorkers: 2,
  },
})
