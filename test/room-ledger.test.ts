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
