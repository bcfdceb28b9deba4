import { log } from '../log.js'
import type { Leftover } from '../seams/storage/index.js'
import type { Context } from './context.js'
import { stillOrphans } from './recovery.js'

/**
 * The periodic sweep of what storage holds that no unfinished upload owns, while the server runs: the
 * start-up sweep only sees what was left before that start, and in a bucket shared by several instances
 * nobody may restart for a long time. Left behind are, say, the staging and multipart uploads of an upload
 * whose record expired or was removed, or of a body that an instance was receiving when it died.
 *
 * Age is judged by observation, not by the dates storage reports (moto says every multipart upload was
 * initiated on one fixed day; clocks differ): a leftover is removed only once two sweeps in a row found it,
 * unchanged (the same name: the same keys and multipart uploads) and owned by nobody, and then only if its
 * upload still has no unfinished record, and a body arriving at an instance that lives is never touched. A
 * key that appears between the listing of records and the listing of the bucket is thus never removed: the
 * next sweep finds its record.
 */
export interface Sweeping {
  busy: boolean
  /** The names of the leftovers the last sweep found abandoned. */
  seen: Set<string>
}

export async function sweep(ctx: Context, state: Sweeping): Promise<void> {
  if (state.busy || ctx.state.closed || !ctx.state.recovered) return
  state.busy = true
  try {
    const found = (await ctx.storage.leftovers(await ctx.store.unfinished())).filter(
      (leftover) =>
        leftover.id === undefined || (!ctx.runs.has(leftover.id) && !ctx.arriving.has(leftover.id)),
    )
    const abandoned = await stillOrphans(ctx, found)
    const again: Leftover[] = abandoned.filter((leftover) => state.seen.has(leftover.name))
    state.seen = new Set(abandoned.map((leftover) => leftover.name))
    if (again.length === 0 || ctx.state.closed) return
    await ctx.storage.removeLeftovers(again)
    for (const leftover of again) state.seen.delete(leftover.name)
    log('info', 'storage.swept', { count: again.length, leftovers: again.map((leftover) => leftover.name) })
  } catch (error) {
    // Storage or the records away: the next sweep tries again, and nothing was removed on a guess.
    log('warn', 'storage.sweep_failed', { error })
  } finally {
    state.busy = false
  }
}
