import type { Locker } from '@tus/utils'
import { LocalBus } from './bus/local.js'
import { LocalLeases } from './leases/local.js'
import { LocalStore, StateFileError } from './records/local.js'
import type { Storage } from './storage/index.js'
import { memoryLocker } from './tus-lock/memory.js'

/**
 * The seams of a server alone on its folder: records in the embedded store (a lowdb snapshot and a
 * journal), every lease its own, a bus of function calls, and @tus/server's in-memory lock.
 */
export async function openEmbedded(stateFile: string, storage: Storage, uploadDir: string) {
  // A first start writes an empty snapshot (see LocalStore.open), so no state beside unfinished bytes means
  // the state was lost: starting afresh would sweep those bytes as orphans.
  if (!(await LocalStore.exists(stateFile)) && (await storage.holdsTransfers())) {
    throw new StateFileError(
      `state file ${stateFile} is missing, but ${uploadDir} holds unfinished uploads' bytes (in .transfers or .staging): restore the state file (or STATE_FILE), or remove those files to start afresh`,
    )
  }
  const records = await LocalStore.open(stateFile)
  let locker: Promise<Locker> | undefined
  return {
    mode: 'embedded' as const,
    records,
    leases: new LocalLeases(),
    bus: new LocalBus(),
    tusLocker: () => (locker ??= memoryLocker()),
    unhealthy: async (): Promise<string | undefined> => undefined,
    close: () => records.close(),
  }
}
