import { readFile } from 'node:fs/promises'
import { describe, expect, it } from 'vitest'
import { errorCatalogue } from '../src/errors.js'

/** The sentence of README's GraphQL API section that lists the codes a client can meet. */
async function documentedCodes(): Promise<Set<string>> {
  const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8')
  const section = readme.slice(readme.indexOf('\n## GraphQL API\n'))
  const start = section.indexOf('Errors carry `extensions.code`')
  const paragraph = section.slice(start, section.indexOf('\n\n', start))
  return new Set([...paragraph.matchAll(/`([A-Z_]+)`/g)].map((match) => match[1] ?? ''))
}

describe('the error catalogue', () => {
  it('documents every code a client can meet in README (as fastify checks its own)', async () => {
    const documented = await documentedCodes()
    const missing = Object.keys(errorCatalogue).filter((code) => !documented.has(code))
    expect(missing).toEqual([])
  })
})
