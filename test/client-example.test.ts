import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { run } from '../examples/client/example.js'
import { bytes } from './support/clients.js'
import { startServer, type TestServer } from './support/server.js'

/** The typed client example in examples/client (generated from the schema, typechecked in CI) runs for real. */
let server: TestServer
let scratch: string
beforeAll(async () => {
  server = await startServer()
  scratch = await mkdtemp(join(tmpdir(), 'client-example-'))
})
afterAll(async () => {
  await server.stop()
  await rm(scratch, { recursive: true, force: true })
})

describe('the typed client example', () => {
  it('uploads a file, follows it over the subscription to completion, and pauses it on the way', async () => {
    const content = bytes(128 * 1024)
    const path = join(scratch, 'example.bin')
    await writeFile(path, content)
    const lines: string[] = []
    const { id, sha256, statuses } = await run(path, server.url, (line) => lines.push(line))
    expect(sha256).toBe(createHash('sha256').update(content).digest('hex'))
    expect(statuses[0]).toBe('IN_PROGRESS')
    expect(statuses).toContain('PAUSED')
    expect(statuses.at(-1)).toBe('COMPLETED')
    expect(lines.some((line) => /^paused at \d+$/.test(line))).toBe(true)
    expect(await readFile(join(server.dir, `${id}_example.bin`))).toEqual(content)
  })
})
