import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { writeAll } from '../src/durable-fs.js'
import { closeFile, DiskPace, IN_PLACE_MAX, openFile, readAt, renameFile } from '../src/in-place-fs.js'

/** The pace on its own, with the times the test chooses (through the server they are the disk's). */
describe('when quick file-system calls stop going in place', () => {
  it('a disk slow three times in quick succession sends every call to the pool for ten seconds, then in place is tried again', () => {
    const pace = new DiskPace()
    let now = 1000
    for (let call = 0; call < 50; call++) pace.took(0.05, (now += 1))
    expect(pace.inPlace(now)).toBe(true)

    pace.took(30, (now += 30))
    pace.took(30, (now += 30))
    expect(pace.inPlace(now)).toBe(true)
    pace.took(30, (now += 30))
    expect(pace.inPlace(now)).toBe(false)
    expect(pace.inPlace(now + 9_999)).toBe(false)
    expect(pace.inPlace(now + 10_000)).toBe(true)
  })

  it('one slow call now and then (a busy machine’s preemption) never does', () => {
    const pace = new DiskPace()
    let now = 0
    for (let call = 0; call < 10_000; call++) {
      pace.took(call % 20 === 0 ? 50 : 0.05, (now += 1))
      expect(pace.inPlace(now)).toBe(true)
    }
  })
})

describe('calls made in place', () => {
  let dir: string
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'uploads-in-place-'))
  })
  afterAll(() => rm(dir, { recursive: true, force: true }))

  it('write, read and rename the bytes on disk, small and past IN_PLACE_MAX alike', async () => {
    for (const size of [16, IN_PLACE_MAX, IN_PLACE_MAX + 1, 3 * IN_PLACE_MAX + 7]) {
      const bytes = Buffer.from(Array.from({ length: size }, (_, i) => (i * 31 + size) % 256))
      const path = join(dir, `f-${size}`)
      const fd = await openFile(path, 'w+')
      try {
        await writeAll(fd, bytes, 0)
        const back = Buffer.alloc(size)
        let have = 0
        while (have < size) have += await readAt(fd, back, have, size - have, have)
        expect(back.equals(bytes)).toBe(true)
      } finally {
        await closeFile(fd)
      }
      await renameFile(path, `${path}.moved`)
      expect((await readFile(`${path}.moved`)).equals(bytes)).toBe(true)
    }
  })

  it('fail as the pool’s calls do: a rejection with the errno code, nothing thrown at the caller', async () => {
    const missing = join(dir, 'no-such-folder', 'f')
    // Opening a file that exists goes in place; one that may create it, to the pool: both fail alike.
    const opening = openFile(missing, 'r')
    expect(opening).toBeInstanceOf(Promise)
    await expect(opening).rejects.toMatchObject({ code: 'ENOENT' })
    await expect(openFile(missing, 'w')).rejects.toMatchObject({ code: 'ENOENT' })
    await writeFile(join(dir, 'there'), 'x')
    await expect(openFile(join(dir, 'there'), 'wx')).rejects.toMatchObject({ code: 'EEXIST' })
    await expect(renameFile(missing, join(dir, 'g'))).rejects.toMatchObject({ code: 'ENOENT' })
  })
})
