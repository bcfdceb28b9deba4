import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Bus } from '../../src/seams/bus/index.js'
import type { UploadView } from '../../src/model/record.js'
import { record } from './records.js'

export const view = (id: string, uploadedSize: number): UploadView => ({
  ...record(1, 'IN_PROGRESS'),
  id,
  uploadedSize,
  currentSpeed: 5,
})

export interface BusSubject {
  /** One process's bus, and another's on the same service (in one process: the same bus). */
  one: Bus
  two: Bus
  /** The name commands for `two` are sent to. */
  twoIs: string
}

/**
 * What the service relies on from any Bus (seams/bus): every state reaches every process (marked local
 * where it was published), a command reaches its owner and its outcome, or its error, comes back, and new
 * limits reach every process, this one's included.
 */
export function busContract(name: string, make: () => Promise<BusSubject>): void {
  describe(`Bus contract: ${name}`, () => {
    let one: Bus
    let two: Bus
    let twoIs: string
    beforeAll(async () => {
      ;({ one, two, twoIs } = await make())
    })
    afterAll(async () => {
      await one.close()
      if (two !== one) await two.close()
    })

    it('a published state reaches listeners here (local) and on the other side', async () => {
      const here: [string, boolean][] = []
      const there: [string, boolean][] = []
      one.onState((v, local) => here.push([v.id, local]))
      const arrived = new Promise<void>((resolve) =>
        two.onState((v, local) => {
          there.push([v.id, local])
          if (v.id === 'b') resolve()
        }),
      )
      one.publish(view('a', 1))
      one.publish(view('b', 2))
      await arrived
      expect(here).toEqual([
        ['a', true],
        ['b', true],
      ])
      expect(there.map(([id]) => id)).toEqual(['a', 'b'])
    })

    it('a command reaches its owner, and its outcome (or its error) comes back', async () => {
      two.onCommand(async (command) =>
        command.op === 'pause'
          ? { ok: view(command.id, 7) }
          : { error: { code: 'INVALID_STATE', message: 'no' } },
      )
      expect(await one.request(twoIs, { op: 'pause', id: 'u1' })).toEqual({ ok: view('u1', 7) })
      expect(await one.request(twoIs, { op: 'cancel', id: 'u1' })).toEqual({
        error: { code: 'INVALID_STATE', message: 'no' },
      })
    })

    it('new limits reach every process, this one at once', async () => {
      const here: number[] = []
      one.onLimits(({ maxTotalSpeed }) => here.push(maxTotalSpeed))
      const there = new Promise<number>((resolve) =>
        two.onLimits(({ maxTotalSpeed }) => resolve(maxTotalSpeed)),
      )
      one.publishLimits({ maxTotalSpeed: 4096 })
      expect(here).toEqual([4096])
      expect(await there).toBe(4096)
    })
  })
}
