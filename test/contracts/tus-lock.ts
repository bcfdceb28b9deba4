import { describe, expect, it } from 'vitest'
import type { Locker } from '../../src/seams/tus-lock/index.js'

/**
 * What @tus/server relies on from any Locker (seams/tus-lock), given two that guard the same uploads (one
 * process's requests, or two instances over one Redis): one request at a time holds an upload, a request that
 * wants it asks the holder to let go and gets it once it has, and one that gives up waiting is refused.
 */
export function tusLockContract(name: string, make: () => Promise<[Locker, Locker]>): void {
  describe(`tus Locker contract: ${name}`, () => {
    it('holds one request at a time, asks the holder to let go, and hands it over once it has', async () => {
      const [locker, other] = await make()
      const first = locker.newLock('u1')
      let asked = 0
      await first.lock(new AbortController().signal, () => {
        asked++
        void first.unlock()
      })
      const second = other.newLock('u1')
      const took = performance.now()
      await second.lock(new AbortController().signal, () => undefined)
      expect(asked).toBe(1)
      expect(performance.now() - took).toBeLessThan(1500)
      // A different upload is never held up by it.
      const unrelated = locker.newLock('u2')
      await unrelated.lock(new AbortController().signal, () => undefined)
      await unrelated.unlock()
      await second.unlock()
    })

    it('a request that gives up waiting (its signal) is refused, and the holder keeps the lock', async () => {
      const [locker] = await make()
      const holder = locker.newLock('u3')
      await holder.lock(new AbortController().signal, () => undefined) // never lets go
      const waiting = new AbortController()
      const refused = locker.newLock('u3').lock(waiting.signal, () => undefined)
      setTimeout(() => waiting.abort(), 200)
      await expect(refused).rejects.toMatchObject({ status_code: 500 })
      await holder.unlock()
      const after = locker.newLock('u3')
      await after.lock(new AbortController().signal, () => undefined)
      await after.unlock()
    })
  })
}
