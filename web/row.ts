/**
 * One upload's row, updated in place: focus and typed values survive live updates. A running or paused row
 * has its speed field (with units) and its actions; an ended row is compact, with only what still applies
 * (Download, Delete): no disabled buttons, no speed to edit.
 */
import { isFinal, type Upload } from './api.js'
import { bytes, duration, percent, speed } from './format.js'
import { SpeedField } from './speed-field.js'

export interface RowActions {
  setSpeed(upload: Upload, speed: number): Promise<void>
  pause(upload: Upload): Promise<void>
  resume(upload: Upload, speed: number): Promise<void>
  cancel(upload: Upload): Promise<void>
  remove(upload: Upload): Promise<void>
  say(text: string): void
}

const STATUS_TEXT: Record<Upload['status'], string> = {
  RECEIVING: 'receiving',
  IN_PROGRESS: 'in progress',
  PAUSED: 'paused',
  COMPLETED: 'completed',
  CANCELED: 'canceled',
  FAILED: 'failed',
}

function timeLeft(u: Upload): string {
  if (u.status !== 'IN_PROGRESS') return ''
  if (u.currentSpeed <= 0) return '–'
  return duration((u.totalSize - u.uploadedSize) / u.currentSpeed)
}

function cell(row: HTMLTableRowElement, label: string, className: string): HTMLTableCellElement {
  const td = row.insertCell()
  td.dataset.label = label
  td.className = className
  return td
}

/** The controls of a running or paused upload. */
interface ActiveControls {
  field: SpeedField
  submit: HTMLButtonElement
  pause: HTMLButtonElement
}

export class Row {
  readonly tr = document.createElement('tr')
  private readonly name: HTMLTableCellElement
  private readonly size: HTMLTableCellElement
  private readonly bar = document.createElement('progress')
  private readonly percent = document.createElement('span')
  private readonly current = document.createElement('span')
  private readonly target = document.createElement('span')
  private readonly left: HTMLTableCellElement
  private readonly status: HTMLTableCellElement
  /** Inside the Actions cell (a flex box; the cell itself stays a table cell). */
  private readonly actions = document.createElement('div')
  private active: ActiveControls | undefined
  private ended = false
  private busy = false

  constructor(
    public upload: Upload,
    private readonly act: RowActions,
  ) {
    const { tr } = this
    tr.dataset.id = upload.id
    this.name = cell(tr, 'Name', 'name')
    this.name.textContent = upload.filename
    // Somewhere to put focus that does nothing on Enter, when the control that had it goes away.
    this.name.tabIndex = -1
    this.size = cell(tr, 'Size', 'size')
    this.bar.setAttribute('aria-label', `Progress of ${upload.filename}`)
    this.percent.className = 'percent'
    cell(tr, 'Progress', 'progress').append(this.bar, this.percent)
    this.target.className = 'target'
    cell(tr, 'Speed', 'rate').append(this.current, this.target)
    this.left = cell(tr, 'Time left', 'left')
    this.status = cell(tr, 'Status', 'status')
    this.actions.className = 'actions'
    cell(tr, 'Actions', 'actions-cell').append(this.actions)
    this.update(upload)
  }

  update(u: Upload): void {
    this.upload = u
    const final = isFinal(u.status)
    this.tr.classList.toggle('ended', final)
    this.tr.dataset.status = u.status
    const moving = u.status === 'IN_PROGRESS' || u.status === 'RECEIVING'
    if (u.status === 'RECEIVING') {
      // Still arriving: how much is in, of a size known only when its sender said it (tus), else unknown.
      this.size.textContent = u.totalSize > 0 ? bytes(u.totalSize) : `${bytes(u.receivedSize)} so far`
      this.bar.max = Math.max(1, u.totalSize)
      if (u.totalSize > 0) this.bar.value = u.receivedSize
      else this.bar.removeAttribute('value')
      this.percent.textContent = u.totalSize > 0 ? `${percent(u.receivedSize, u.totalSize)} % in` : 'arriving'
    } else {
      this.size.textContent = bytes(u.totalSize)
      this.bar.max = Math.max(1, u.totalSize)
      this.bar.value = u.status === 'COMPLETED' ? this.bar.max : u.uploadedSize
      // An ended row shows its outcome (its status); the share it had reached when it stopped is no news.
      this.percent.textContent =
        u.status === 'COMPLETED' ? '100 %' : final ? '' : `${percent(u.uploadedSize, u.totalSize)} %`
    }
    this.current.textContent = !moving
      ? final
        ? ''
        : '–'
      : u.currentSpeed > 0
        ? speed(u.currentSpeed)
        : '0 B/s'
    this.target.textContent = final ? '' : ` / ${speed(u.targetSpeed)}`
    this.left.textContent = timeLeft(u)
    this.status.textContent = STATUS_TEXT[u.status] + (u.error ? `: ${u.error}` : '')
    this.status.className = `status ${u.status}`
    if (final) this.showEnded()
    else this.showActive()
  }

  private showActive(): void {
    const u = this.upload
    const controls = this.active ?? this.buildActive()
    const running = u.status === 'IN_PROGRESS'
    // A file still arriving takes a speed for its transfer; only its sender can pause it.
    const speedable = running || u.status === 'RECEIVING'
    const hadFocus = document.activeElement === controls.pause
    controls.pause.hidden = !running
    if (hadFocus && !running) controls.submit.focus()
    controls.submit.textContent = speedable ? 'Set speed' : 'Resume'
    controls.submit.setAttribute(
      'aria-label',
      speedable ? `Set speed for ${u.filename}` : `Resume ${u.filename}`,
    )
    if (!controls.field.dirty && !controls.field.focused) controls.field.set(u.targetSpeed)
  }

  private buildActive(): ActiveControls {
    const u = this.upload
    const form = document.createElement('form')
    form.className = 'row-speed'
    form.setAttribute('aria-label', `Speed of ${u.filename}`)
    const field = SpeedField.create(`Speed for ${u.filename}`, `Speed unit for ${u.filename}`, u.targetSpeed)
    const submit = document.createElement('button')
    submit.type = 'submit'
    submit.className = 'secondary small'
    form.append(...field.elements, submit)
    form.addEventListener('submit', (event) => {
      event.preventDefault()
      const value = field.value()
      if (value === undefined) return this.act.say(`The speed for ${u.filename} must be a number, 0 or more`)
      const speedable = this.upload.status !== 'PAUSED'
      this.run(async () => {
        await (speedable ? this.act.setSpeed(this.upload, value) : this.act.resume(this.upload, value))
        field.dirty = false
      })
    })
    const pause = this.button('Pause', `Pause ${u.filename}`, () => this.act.pause(this.upload))
    const cancel = this.button('Cancel', `Cancel ${u.filename}`, () => this.act.cancel(this.upload))
    this.actions.replaceChildren(form, pause, cancel)
    this.active = { field, submit, pause }
    return this.active
  }

  private showEnded(): void {
    if (this.ended) return
    this.ended = true
    const hadFocus = this.tr.contains(document.activeElement)
    this.active = undefined
    const u = this.upload
    const children: HTMLElement[] = []
    if (u.downloadUrl) {
      const link = document.createElement('a')
      link.textContent = 'Download'
      link.href = u.downloadUrl
      link.setAttribute('aria-label', `Download ${u.filename}`)
      children.push(link)
    }
    children.push(this.button('Delete', `Delete ${u.filename}`, () => this.act.remove(this.upload)))
    this.actions.replaceChildren(...children)
    if (hadFocus) this.name.focus()
  }

  /** Focus on the row itself (its name), a place where Enter does nothing. */
  focus(): void {
    this.name.focus()
  }

  private button(text: string, label: string, action: () => Promise<void>): HTMLButtonElement {
    const b = document.createElement('button')
    b.type = 'button'
    b.className = 'secondary small'
    b.textContent = text
    b.setAttribute('aria-label', label)
    b.addEventListener('click', () => this.run(action))
    return b
  }

  /** One action at a time per row; a second click while the first is under way does nothing. */
  private run(action: () => Promise<void>): void {
    if (this.busy) return
    this.busy = true
    this.tr.setAttribute('aria-busy', 'true')
    action()
      .catch((error: Error) => this.act.say(`${this.upload.filename}: ${error.message}`))
      .finally(() => {
        this.busy = false
        this.tr.removeAttribute('aria-busy')
      })
  }
}
