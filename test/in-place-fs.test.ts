import { fstatSync } from 'node:fs'
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { writeAll } from '../src/durable-fs.js'
import {
  allowInPlace,
  closeFile,
  DiskPace,
  IN_PLACE_MAX,
  onLocalDisks,
  openFile,
  readAt,
  renameFile,
} from '../src/in-place-fs.js'

/** The pace on its own, with the times the test chooses (through the server they are the disk's). */
describe('when quick file calls stop going in place', () => {
  it('one call that holds the event loop past the budget (50 ms) sends every call to the pool for ten seconds', () => {
    const pace = new DiskPace()
    let now = 1000
    for (let call = 0; call < 50; call++) pace.took(0.05, (now += 1))
    expect(pace.inPlace(now)).toBe(true)
    pace.took(60, (now += 60))
    expect(pace.inPlace(now)).toBe(false)
    expect(pace.inPlace(now + 9_999)).toBe(false)
    expect(pace.inPlace(now + 10_000)).toBe(true)
  })

  it('slow calls that add up to it within about a second do too: one write in five held 20 ms', () => {
    const pace = new DiskPace()
    let now = 0
    let calls = 0
    while (pace.inPlace(now) && calls < 1000) {
      const ms = ++calls % 5 === 0 ? 20 : 0.05
      pace.took(ms, (now += ms + 1))
    }
    expect(calls).toBeLessThanOrEqual(15)
  })

  it('a busy machine’s stalls (a 5 ms call four times a second) never do', () => {
    const pace = new DiskPace()
    let now = 0
    for (let call = 1; call <= 100_000; call++) {
      pace.took(call % 250 === 0 ? 5 : 0.05, (now += 1))
      expect(pace.inPlace(now)).toBe(true)
    }
  })

  it('a disk still slow after its spell in the pool gets a spell twice as long, up to five minutes', () => {
    const pace = new DiskPace()
    let now = 0
    const spells: number[] = []
    for (let trip = 0; trip < 8; trip++) {
      pace.took(100, now)
      const from = now
      while (!pace.inPlace(now)) now += 1000
      spells.push(now - from)
    }
    expect(spells).toEqual([10, 20, 40, 80, 160, 300, 300, 300].map((s) => s * 1000))
    // Quick for longer than five minutes: the next slow spell starts short again.
    now += 6 * 60_000
    pace.took(100, now)
    expect(pace.inPlace(now + 10_000)).toBe(true)
  })
})

describe('calls made in place', () => {
  let dir: string
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'uploads-in-place-'))
  })
  afterEach(() => allowInPlace(false))
  afterAll(() => rm(dir, { recursive: true, force: true }))

  it('once allowed (start-up does, on a local disk): a small write has landed before its promise is awaited', async () => {
    const fd = await openFile(join(dir, 'landed'), 'w+')
    try {
      allowInPlace(true)
      const writing = writeAll(fd, Buffer.from('sixteen bytes ok'), 0)
      expect(fstatSync(fd).size).toBe(16)
      await writing
    } finally {
      await closeFile(fd)
    }
  })

  for (const inPlace of [true, false])
    it(`write, read and rename the bytes on disk, small and past IN_PLACE_MAX (${inPlace ? 'in place' : 'through the pool'})`, async () => {
      allowInPlace(inPlace)
      for (const size of [16, IN_PLACE_MAX, IN_PLACE_MAX + 1, 3 * IN_PLACE_MAX + 7]) {
        const bytes = Buffer.from(Array.from({ length: size }, (_, i) => (i * 31 + size) % 256))
        const path = join(dir, `f-${inPlace}-${size}`)
        const fd = await openFile(path, 'w+')
        try {
          await writeAll(fd, bytes, 0)
        } finally {
          await closeFile(fd)
        }
        const again = await openFile(path, 'r')
        try {
          const back = Buffer.alloc(size)
          let have = 0
          while (have < size) have += await readAt(again, back, have, size - have, have)
          expect(back.equals(bytes)).toBe(true)
        } finally {
          await closeFile(again)
        }
        await renameFile(path, `${path}.moved`)
        expect((await readFile(`${path}.moved`)).equals(bytes)).toBe(true)
      }
    })

  it('fail as the pool’s calls do: a rejection with the errno code, nothing thrown at the caller', async () => {
    allowInPlace(true)
    const missing = join(dir, 'no-such-folder', 'f')
    // Opening a file that exists goes in place; one that may create it, to the pool: both fail alike.
    const opening = openFile(missing, 'r')
    expect(opening).toBeInstanceOf(Promise)
    await expect(opening).rejects.toMatchObject({ code: 'ENOENT' })
    await expect(openFile(missing, 'w')).rejects.toMatchObject({ code: 'ENOENT' })
    await writeFile(join(dir, 'there'), 'x')
    await expect(openFile(join(dir, 'there'), 'wx')).rejects.toMatchObject({ code: 'EEXIST' })
    await expect(renameFile(missing, join(dir, 'g'))).rejects.toMatchObject({ code: 'ENOENT' })
    // A FileHandle closed under a write: EBADF, as the pool says it.
    const handle = await open(join(dir, 'there'), 'r+')
    await handle.close()
    await expect(writeAll(handle, Buffer.from('late'), 0)).rejects.toMatchObject({ code: 'EBADF' })
  })
})

describe('where calls may go in place', () => {
  it('on a local disk (this machine’s temporary folder), not on /proc or in a folder that is not there', async () => {
    expect(await onLocalDisks([tmpdir()])).toBe(true)
    expect(await onLocalDisks([tmpdir(), '/proc'])).toBe(false)
    expect(await onLocalDisks([join(tmpdir(), 'no-such-folder-at-all')])).toBe(false)
  })
})
