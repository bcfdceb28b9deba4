/**
 * The overall line: how many uploads are active (running, paused), their rate together and the time until
 * the running ones are done. Fed by the live feed, whatever page or filter is shown. What this page is
 * sending has its own line, beside Upload.
 */
import { isFinal, type Upload } from './api.js'
import { duration, speed } from './format.js'

export class Overall {
  private readonly active = new Map<string, Upload>()
  private scheduled = false

  constructor(private readonly element: HTMLElement) {
    this.render()
  }

  update(u: Upload): void {
    if (isFinal(u.status)) this.active.delete(u.id)
    else this.active.set(u.id, u)
    this.schedule()
  }

  forget(id: string): void {
    this.active.delete(id)
    this.schedule()
  }

  /** Forgets every upload (a reconnect: the live feed sends the unfinished ones again). */
  reset(): void {
    this.active.clear()
    this.schedule()
  }

  /** At most once a frame: progress arrives about ten times a second per upload. */
  private schedule(): void {
    if (this.scheduled) return
    this.scheduled = true
    requestAnimationFrame(() => {
      this.scheduled = false
      this.render()
    })
  }

  private render(): void {
    const all = [...this.active.values()]
    const running = all.filter((u) => u.status === 'IN_PROGRESS')
    const paused = all.filter((u) => u.status === 'PAUSED').length
    const arriving = all.length - running.length - paused
    const parts: string[] = []
    if (all.length === 0) parts.push('No active uploads')
    else {
      parts.push(
        `${all.length} active: ${running.length} running, ${paused} paused` +
          (arriving > 0 ? `, ${arriving} arriving` : ''),
      )
      if (running.length > 0) {
        const rate = running.reduce((n, u) => n + u.currentSpeed, 0)
        parts.push(`${speed(rate).replace('unlimited', '0 B/s')} in all`)
        // Each runs at its own speed: all are done when the slowest is.
        const left = Math.max(
          ...running.map((u) =>
            u.currentSpeed > 0 ? (u.totalSize - u.uploadedSize) / u.currentSpeed : Infinity,
          ),
        )
        parts.push(Number.isFinite(left) ? `${duration(left)} left` : 'time left unknown')
      }
    }
    this.element.textContent = parts.join(' · ')
  }
}
