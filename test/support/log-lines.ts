import { afterAll, beforeAll } from 'vitest'

/**
 * The log lines (JSON on stdout) of servers running in this test process, as they are written: what a
 * test reads to see that an event was logged, and with what. Call at a test file's top level.
 */
export function captureLogLines(): { lines: () => Record<string, unknown>[]; clear: () => void } {
  let lines: Record<string, unknown>[] = []
  const write = process.stdout.write.bind(process.stdout)
  beforeAll(() => {
    process.stdout.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
      for (const line of String(chunk).split('\n'))
        if (line.startsWith('{"time"')) lines.push(JSON.parse(line) as Record<string, unknown>)
      return write(chunk, ...rest)
    }) as typeof process.stdout.write
  })
  afterAll(() => {
    process.stdout.write = write
  })
  return { lines: () => lines, clear: () => (lines = []) }
}
