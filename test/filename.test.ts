import fc from 'fast-check'
import { basename, dirname, join, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { safeFilename, storedNameFor } from '../src/core/ingest/filename.js'

describe('safeFilename', () => {
  it.each([
    ['report.pdf', 'report.pdf'],
    ['../../etc/passwd', 'passwd'],
    ['C:\\Users\\me\\file.txt', 'file.txt'],
    ['dir/', 'file'],
    ['...', 'file'],
    ['   ', 'file'],
    ['a\u0000b', 'ab'],
    ['\u202egnp.exe', 'gnp.exe'],
    ['e\u0301', '\u00e9'],
  ])('%j → %j', (input, expected) => {
    expect(safeFilename(input)).toBe(expected)
  })

  it('always yields a plain name: no separator, not . or .., no control character, within 255 bytes stored', () => {
    const samples = [
      '/',
      '\\',
      '..',
      '.',
      '\u0000',
      '\n',
      'x'.repeat(1000),
      '日本'.repeat(200),
      'a/../../b',
      '.\u0000.',
    ]
    for (const input of samples) {
      const name = safeFilename(input)
      // eslint-disable-next-line no-control-regex -- control characters are exactly what must be absent
      expect(name).not.toMatch(/[/\\\u0000-\u001f]/)
      expect(['', '.', '..']).not.toContain(name)
      const stored = storedNameFor('0b0e0b8c-5b8a-4a57-9c62-5a2f3e0e7b11', input)
      expect(Buffer.byteLength(stored)).toBeLessThanOrEqual(255)
    }
  })
})

describe('safeFilename, for any string a client can send', () => {
  const anyName = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 300 }),
    fc
      .array(fc.constantFrom('..', '.', '/', '\\', '\u0000', '\n', 'a', 'é', ' ', '\u202e', ':'), {
        maxLength: 40,
      })
      .map((parts) => parts.join('')),
  )

  it('gives a plain file name that stays inside the storage folder and fits the file system', () => {
    const folder = resolve('/srv/uploads')
    fc.assert(
      // The id comes from the same seeded run as the name, so a failure comes back with the same inputs.
      fc.property(fc.uuid({ version: 4 }), anyName, (id, name) => {
        const stored = storedNameFor(id, name)
        const path = join(folder, stored)
        expect(dirname(path)).toBe(folder)
        expect(basename(path)).toBe(stored)
        expect(stored).not.toMatch(/[/\\]/)
        // eslint-disable-next-line no-control-regex -- control characters are exactly what must be absent
        expect(stored).not.toMatch(/[\u0000-\u001f\u007f]/)
        expect(Buffer.byteLength(stored)).toBeLessThanOrEqual(255)
        // Never a working folder's (.staging, .transfers), whatever the client called it.
        expect(stored.startsWith(`${id}_`)).toBe(true)
        expect(stored.normalize('NFC')).toBe(stored)
      }),
      { numRuns: 2000, seed: 20261125 },
    )
  })

  it('never gives two uploads the same path, even for the same or equivalent names', () => {
    fc.assert(
      fc.property(fc.array(anyName, { minLength: 2, maxLength: 30 }), (names) => {
        // Every upload has an id of its own (as randomUUID gives the server); here they are numbered.
        const id = (n: number) => `0b0e0b8c-5b8a-4a57-9c62-${n.toString(16).padStart(12, '0')}`
        const paths = names.flatMap((name, i) => [
          storedNameFor(id(2 * i), name),
          storedNameFor(id(2 * i + 1), name.normalize('NFD')),
        ])
        expect(new Set(paths).size).toBe(paths.length)
      }),
      { numRuns: 300, seed: 20261125 },
    )
  })
})
