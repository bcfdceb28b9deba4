import { afterEach, describe, expect, it } from 'vitest'
import type { Leases } from '../../src/seams/leases/index.js'

export interface LeasesSubject {
  /** This process's leases, started (its heartbeat beating). */
  leases: Leases
  /** Another process's, over the same state; absent where there can be none (one process owns everything). */
  other?: Leases
  /** Makes the upload's lease another's, as if this one's had run out and been taken; absent where it cannot be. */
  takeOver?(id: string): Promise<void>
}

/**
 * What the service relies on from any Leases (seams/leases): a lease taken is held by this process under a
 * fence it may write with until its deadline, its holder is known to all, it is free again once let go,
 * one process holds it at a time (each new holder under a higher token), and a lease taken over is lost.
 */
export function leasesContract(name: string, make: () => Promise<LeasesSubject>): void {
  describe(`Leases contract: ${name}`, () => {
    const opened: Leases[] = []
    const open = async () => {
      const subject = await make()
      opened.push(subject.leases, ...(subject.other ? [subject.other] : []))
      return subject
    }
    afterEach(async () => {
      for (const leases of opened.splice(0)) await leases.close()
    })

    it('a lease taken is held here, under a fence that may be written with for a while, and named as held by this instance', async () => {
      const { leases } = await open()
      const fence = await leases.acquire('u1')
      expect(fence).toMatchObject({ id: 'u1' })
      expect(fence!.deadline).toBeGreaterThan(performance.now() + 1000)
      expect(leases.held('u1')).toEqual(fence)
      expect(await leases.holder('u1')).toBe(leases.instance)
      expect((await leases.holders(['u1']))[0]).toBe(leases.instance)
      expect(await leases.liveInstances()).toContain(leases.instance)
    })

    it('let go, it can be taken again', async () => {
      const { leases } = await open()
      await leases.acquire('u2')
      await leases.release('u2')
      await leases.release('never-held')
      expect(await leases.acquire('u2')).toMatchObject({ id: 'u2' })
      expect(leases.held('u2')).toBeDefined()
    })

    it('one holder at a time, a higher token each time, free again once released', async (context) => {
      const { leases: a, other: b } = await open()
      if (!b) return context.skip() // one process: nobody else to hold it
      const first = await a.acquire('u1')
      expect(first?.value).toMatch(new RegExp(`^${a.instance}:\\d+$`))
      expect(a.held('u1')).toEqual(first)
      expect(await b.acquire('u1')).toBeUndefined()
      expect(b.held('u1')).toBeUndefined()
      expect(await b.holder('u1')).toBe(a.instance)
      expect(await b.holders(['u1', 'u2'])).toEqual([a.instance, undefined])
      await a.release('u1')
      expect(a.held('u1')).toBeUndefined()
      expect(await b.holder('u1')).toBeUndefined()
      const second = await b.acquire('u1')
      expect(Number(second!.value.split(':')[1])).toBeGreaterThan(Number(first!.value.split(':')[1]))
      expect(a.held('u1')).toBeUndefined()
      expect(await a.liveInstances()).toEqual(new Set([a.instance, b.instance]))
    })

    it('exclusive: tasks on one name never overlap, whichever process runs them; other names do not wait', async () => {
      const { leases: a, other } = await open()
      const b = other ?? a
      let inside = 0
      let most = 0
      const order: number[] = []
      const task = (n: number) => async () => {
        most = Math.max(most, ++inside)
        // Long enough that the next caller, at either process, finds the lock held.
        await new Promise((resolve) => setTimeout(resolve, 20))
        order.push(n)
        inside--
        return n
      }
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, n) => (n % 2 ? b : a).exclusive('owner:x', task(n))),
      )
      expect(results).toEqual([0, 1, 2, 3, 4, 5, 6, 7])
      expect(most).toBe(1)
      expect(order.sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7])
      // Free again afterwards, and a task that failed lets go too.
      await expect(a.exclusive('owner:x', () => Promise.reject(new Error('no')))).rejects.toThrow('no')
      expect(await b.exclusive('owner:x', async () => 'again')).toBe('again')
    })

    it('exclusive: waiting is bounded; one that cannot have the lock is UNAVAILABLE, saying what it was told, and never runs', async () => {
      const { leases: a, other } = await open()
      const b = other ?? a
      let release = () => {}
      const held = new Promise<void>((resolve) => (release = resolve))
      let entered = () => {}
      const inside = new Promise<void>((resolve) => (entered = resolve))
      const holding = a.exclusive('owner:y', async () => {
        entered()
        await held
      })
      await inside
      let ran = false
      const refused = b.exclusive('owner:y', async () => void (ran = true), {
        ms: 200,
        busy: 'busy, try again',
      })
      await expect(refused).rejects.toMatchObject({ code: 'UNAVAILABLE', message: 'busy, try again' })
      // Another name is not held up meanwhile.
      expect(await b.exclusive('owner:z', async () => 'free', { ms: 200 })).toBe('free')
      release()
      await holding
      expect(ran).toBe(false)
      expect(await b.exclusive('owner:y', async () => 'mine')).toBe('mine')
    })

    it('a holder whose lease was taken over hears it at its next renewal, and stops holding it', async (context) => {
      const { leases, takeOver } = await open()
      if (!takeOver) return context.skip() // one process: nobody can take it over
      const lost: string[] = []
      leases.onLost((id) => lost.push(id))
      await leases.acquire('u1')
      await leases.acquire('u2')
      await takeOver('u1')
      const deadline = Date.now() + 3000
      while (lost.length === 0 && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 50))
      expect(lost).toEqual(['u1'])
      expect(leases.held('u1')).toBeUndefined()
      expect(leases.held('u2')).toBeDefined()
    })
  })
}
