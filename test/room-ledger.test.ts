import { describe, expect, it } from 'vitest'
import { RoomLedger } from '../src/seams/storage/room.js'

/**
 * The ledger on its own, with a file system whose free count the test sets: what order bytes land in and
 * promises move is then the test's to choose (through the server it is the hash worker's).
 */
describe('room promised to a request of several files', () => {
  it('bytes that land after one of its files moved its second copy out still leave the request promise', async () => {
    let free = 10_000
    const ledger = new RoomLedger(async () => free)
    const request = await ledger.grant(4_000) // two 1000-byte files, twice each
    let written = 0
    request.track(() => written)

    // The first file lands, then its second copy is promised out of the request's promise.
    written = 1_000
    free -= 1_000
    const first = await ledger.grant(1_000, request)
    expect(first.outstanding).toBe(1_000)

    // The second file lands afterwards: those bytes are on disk now, not still to come.
    written = 2_000
    free -= 1_000
    expect(request.outstanding).toBe(1_000)
    expect(await ledger.free()).toBe(10_000 - 2_000 - 2_000)
  })
})

describe('the free count, measured once for many grants', () => {
  it('a recent measure says yes without asking again; a no, or bytes nobody promised, are always measured afresh', async () => {
    let free = 10_000
    let measures = 0
    const ledger = new RoomLedger(async () => {
      measures++
      return free
    }, 60_000)
    const first = await ledger.grant(1_000)
    await ledger.grant(1_000)
    await ledger.check(1_000)
    expect(measures).toBe(1)

    // Bytes our promises wrote leave both counts: still no need to ask.
    let written = 0
    first.track(() => written)
    written = 1_000
    free -= 1_000
    await ledger.grant(5_000)
    expect(measures).toBe(1)

    // What the last measure cannot vouch for (7000 promised of 10000) is asked, and refused on what is true.
    free = 2_500
    await expect(ledger.grant(4_000)).rejects.toMatchObject({ code: 'INSUFFICIENT_STORAGE' })
    expect(measures).toBe(2)

    // A body of no declared length lands bytes no promise counts: while one is open, every grant asks.
    free = 100_000
    await ledger.grant(1_000)
    expect(measures).toBe(3)
    const chunked = ledger.hold(0)
    await ledger.grant(1_000)
    expect(measures).toBe(4)
    chunked.release()
    await ledger.grant(1_000)
    expect(measures).toBe(4)
  })
})
