import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    // Throttle and progress tests measure wall-clock pacing; two cores shared by many workers skews them.
    maxWorkers: 2,
  },
})
