import { describe, expect, it } from 'vitest'
import { safeFilename, storedNameFor } from '../src/uploads/filename.js'

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
      const stored = storedNameFor('0b0e0b8c-5b8a-4a57-9c62-5a2f3e0e7b11', input) + '.part'
      expect(Buffer.byteLength(stored)).toBeLessThanOrEqual(255)
    }
  })
})
