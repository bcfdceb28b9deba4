import type { UploadRecord, UploadView } from '../model/record.js'
import type { Context } from './context.js'
import { isLive, isReceiving, isRunning } from './machine.js'

/** A state heard from another instance is trusted for a running upload's live figures this long. */
const REMOTE_FRESH_MS = 3000

/** A state published by the instance that runs the upload: its live figures, until they go stale. */
export function remember(ctx: Context, view: UploadView): void {
  if (isLive(view.status)) ctx.remote.set(view.id, { view, at: performance.now() })
  else ctx.remote.delete(view.id)
}

/** What clients see of a record: with the live counts of whoever receives or runs it. */
export function viewOf(ctx: Context, record: UploadRecord): UploadView {
  if (isReceiving(record.status)) {
    const arriving = ctx.arriving.get(record.id)
    if (!arriving) {
      // Arriving at another instance: its live count, as that instance last published it.
      const heard = ctx.remote.get(record.id)
      if (
        heard &&
        isReceiving(heard.view.status) &&
        performance.now() - heard.at < REMOTE_FRESH_MS &&
        heard.view.receivedSize >= record.receivedSize
      )
        return { ...record, receivedSize: heard.view.receivedSize, currentSpeed: heard.view.currentSpeed }
      return { ...record, currentSpeed: 0 }
    }
    return { ...record, receivedSize: arriving.received(), currentSpeed: Math.round(arriving.meter.rate()) }
  }
  const running = isRunning(record.status)
  const run = running ? ctx.runs.get(record.id) : undefined
  if (!run) {
    const reached = running ? ctx.finishing.get(record.id) : undefined
    if (reached === undefined && running) {
      // Running elsewhere: the store has its byte count of up to a second ago, its owner the live one.
      const heard = ctx.remote.get(record.id)
      if (
        heard &&
        performance.now() - heard.at < REMOTE_FRESH_MS &&
        heard.view.uploadedSize >= record.uploadedSize
      ) {
        const { uploadedSize, currentSpeed, updatedAt } = heard.view
        return {
          ...record,
          uploadedSize,
          currentSpeed,
          updatedAt: updatedAt > record.updatedAt ? updatedAt : record.updatedAt,
        }
      }
    }
    return { ...record, uploadedSize: reached ?? record.uploadedSize, currentSpeed: 0 }
  }
  return {
    ...record,
    targetSpeed: run.record.targetSpeed,
    uploadedSize: run.offset,
    updatedAt: run.updatedAt > record.updatedAt ? run.updatedAt : record.updatedAt,
    currentSpeed: Math.round(run.meter.rate()),
  }
}
