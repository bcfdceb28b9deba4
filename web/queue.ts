/**
 * Files on their way in: chosen (each with its own speed, the form's until edited), then sent one at a time
 * over tus with their progress and a Cancel, until the server has all of each one's bytes. A send that loses
 * the server keeps trying (and says so); a file chosen again after a reload goes on where the server has it.
 */
import { AuthError } from './api.js'
import type { Question } from './confirm.js'
import { bytes, percent, speed } from './format.js'
import { sendFile, SendCanceled, type Sending } from './send.js'
import { SpeedField } from './speed-field.js'

type State = 'pending' | 'waiting' | 'sending'

interface Item {
  file: File
  state: State
  li: HTMLLIElement
  /** The pending file's controls (its speed and Remove), or the sending ones (progress and Cancel). */
  controls: HTMLSpanElement
  field: SpeedField
  speed: number
  sending?: Sending
  progress?: HTMLProgressElement
  note?: HTMLSpanElement
  sent: number
  total: number
  /** The upload's id on the server, once it has one. */
  id?: string
  /** Enables the Upload button again, once this (the first file of a batch) has started or left. */
  release?: () => void
}

export interface QueueOptions {
  list: HTMLUListElement
  /** The form's speed: the one every chosen file starts with. */
  defaultSpeed: SpeedField
  button: HTMLButtonElement
  /** What the file input shows: the files chosen and not yet sent (the browser's own text is hidden). */
  chosen: HTMLElement
  say(text: string): void
  /** Asks before something that loses work (a send's bytes); resolves true for yes. */
  confirm(question: Question): Promise<boolean>
  /** The server refused the token; the file is back in the list, to be sent once it is fixed. */
  unauthorized(error: AuthError): void
  /** Something changed that the sending line reports (a send started, moved, ended). */
  changed(): void
  /** A send found its upload on the server, or ended: which sends are left unfinished may have changed. */
  sendsChanged(): void
}

export class SendQueue {
  private readonly items: Item[] = []

  constructor(private readonly options: QueueOptions) {
    const { defaultSpeed } = options
    const follow = () => {
      for (const item of this.items)
        if (item.state === 'pending' && !item.field.dirty) item.field.copy(defaultSpeed)
    }
    defaultSpeed.number.addEventListener('input', follow)
    defaultSpeed.unit.addEventListener('change', follow)
    this.show()
  }

  get pendingCount(): number {
    return this.items.filter((item) => item.state === 'pending').length
  }

  /** The ids of the uploads being sent now. */
  sendingIds(): string[] {
    return this.items.flatMap((item) => (item.state === 'sending' && item.id ? [item.id] : []))
  }

  /**
   * What this page is sending now, from the sends' own states: the file on its way (or how many), and bytes
   * sent of all; empty when nothing is sent or waiting.
   */
  summary(): string {
    const moving = this.items.filter((item) => item.state !== 'pending')
    if (moving.length === 0) return ''
    const sent = moving.reduce((n, item) => n + item.sent, 0)
    const total = moving.reduce((n, item) => n + (item.total || item.file.size), 0)
    const current = moving.find((item) => item.state === 'sending')
    const what =
      moving.length === 1 && current
        ? current.file.name
        : `${moving.length} files` + (current ? ` (now ${current.file.name})` : '')
    return `Sending ${what}: ${bytes(sent)} of ${bytes(total)}, ${percent(sent, total)} %`
  }

  add(files: Iterable<File>): void {
    for (const file of files) {
      const li = document.createElement('li')
      const name = document.createElement('span')
      name.className = 'name'
      name.textContent = file.name
      const size = document.createElement('span')
      size.className = 'size'
      size.textContent = bytes(file.size)
      const field = SpeedField.create(
        `Speed for ${file.name} (to send)`,
        `Speed unit for ${file.name} (to send)`,
        0,
      )
      field.copy(this.options.defaultSpeed)
      const controls = document.createElement('span')
      controls.className = 'controls'
      const item: Item = { file, state: 'pending', li, controls, field, speed: 0, sent: 0, total: 0 }
      li.append(name, size, controls)
      this.pendingControls(item)
      this.items.push(item)
      this.options.list.append(li)
    }
    this.show()
  }

  /** The Upload button: every pending file leaves the list at once (a second click finds none to send). */
  submit(): void {
    const pending = this.items.filter((item) => item.state === 'pending')
    const [first] = pending
    if (!first) return this.options.say('Choose a file first')
    // What the line said of an earlier action is no longer the news.
    this.options.say('')
    const { button } = this.options
    const hadFocus = document.activeElement === button
    const focusInList = this.options.list.contains(document.activeElement)
    button.disabled = true
    for (const item of pending) {
      item.speed = item.field.value() ?? 0
      this.sendingControls(item)
    }
    if (focusInList) pending[0]?.li.querySelector('button')?.focus()
    // Enabled again once the first of them is on its way, has left, or waits behind another file's send.
    first.release = () => {
      first.release = undefined
      button.disabled = false
      if (hadFocus && document.activeElement === document.body) button.focus()
    }
    this.pump()
    if (first.state === 'waiting') first.release()
    this.options.changed()
  }

  /** Starts the next waiting file when none is being sent. */
  private pump(): void {
    if (this.items.some((item) => item.state === 'sending')) return
    const item = this.items.find((i) => i.state === 'waiting')
    if (!item) return
    item.state = 'sending'
    if (item.note) item.note.textContent = 'sending'
    const note = (text: string) => {
      if (item.note) item.note.textContent = text
    }
    const sending = sendFile(item.file, item.speed, {
      started: () => item.release?.(),
      found: (id, resumed) => {
        item.id = id
        this.options.sendsChanged()
        if (resumed) this.options.say(`${item.file.name}: the send went on from where the server had it`)
      },
      retrying: (_delay, status) => {
        note(status === 0 ? 'connection lost, trying again' : `the server answered ${status}, trying again`)
        item.li.classList.add('retrying')
      },
      progress: (sent, total) => {
        item.sent = sent
        item.total = total
        if (item.progress) {
          item.progress.max = Math.max(1, total)
          item.progress.value = sent
        }
        item.li.classList.remove('retrying')
        note(`${percent(sent, total)} %`)
        this.options.changed()
      },
    })
    item.sending = sending
    sending.done.then(
      // Sent: its row in the list says the rest (a line here would go stale as the upload moves on).
      () => this.remove(item),
      (error: Error) => {
        if (error instanceof AuthError) {
          item.sent = 0
          item.total = 0
          item.id = undefined
          this.pendingControls(item)
          this.options.unauthorized(error)
        } else {
          this.options.say(
            error instanceof SendCanceled
              ? error.cleaned
                ? `Sending ${item.file.name} canceled; nothing was stored`
                : `Sending ${item.file.name} canceled; the server could not be reached, so what it has of it is removed when it expires`
              : `${item.file.name} was not sent: ${error.message}`,
          )
          this.remove(item)
        }
      },
    )
    sending.done
      .catch(() => undefined)
      .finally(() => {
        item.release?.()
        this.pump()
        this.options.changed()
        this.options.sendsChanged()
      })
  }

  private pendingControls(item: Item): void {
    item.state = 'pending'
    item.sending = undefined
    item.progress = undefined
    item.note = undefined
    const remove = document.createElement('button')
    remove.type = 'button'
    remove.className = 'secondary small'
    remove.textContent = 'Remove'
    remove.setAttribute('aria-label', `Remove ${item.file.name}`)
    remove.addEventListener('click', () => {
      const next = this.items[this.items.indexOf(item) + 1]
      this.remove(item)
      ;(next?.li.querySelector('input') ?? this.options.defaultSpeed.number).focus()
    })
    item.controls.replaceChildren(...item.field.elements, remove)
    item.li.className = 'pending'
    this.show()
  }

  private sendingControls(item: Item): void {
    item.state = 'waiting'
    const progress = document.createElement('progress')
    progress.setAttribute('aria-label', `Sending ${item.file.name}`)
    progress.max = Math.max(1, item.file.size)
    progress.value = 0
    const note = document.createElement('span')
    note.className = 'note'
    note.textContent = 'waiting'
    const cancel = document.createElement('button')
    cancel.type = 'button'
    cancel.className = 'secondary small'
    cancel.textContent = 'Cancel'
    cancel.setAttribute('aria-label', `Cancel sending ${item.file.name}`)
    cancel.addEventListener('click', () => {
      if (item.state === 'sending') {
        void this.options
          .confirm({
            title: `Stop sending ${item.file.name}?`,
            detail: `What the server has of it (${bytes(item.sent)} of ${bytes(item.total || item.file.size)}) is removed; sending it again starts over.`,
            confirm: 'Stop sending',
            keep: 'Keep sending',
          })
          .then((yes) => {
            if (!yes || item.state !== 'sending') return
            if (item.note) item.note.textContent = 'canceling'
            item.sending?.cancel()
          })
      } else if (item.state === 'waiting') {
        this.options.say(`Sending ${item.file.name} canceled; nothing was stored`)
        this.remove(item)
        this.options.changed()
      }
    })
    item.progress = progress
    item.note = note
    item.controls.replaceChildren(`at ${speed(item.speed)}`, progress, note, cancel)
    item.li.className = 'sending'
    this.show()
  }

  private remove(item: Item): void {
    item.release?.()
    const at = this.items.indexOf(item)
    if (at >= 0) this.items.splice(at, 1)
    item.li.remove()
    this.show()
  }

  private show(): void {
    this.options.list.hidden = this.items.length === 0
    const names = this.items.filter((item) => item.state === 'pending').map((item) => item.file.name)
    this.options.chosen.textContent =
      names.length === 0
        ? 'No file chosen'
        : names.length === 1
          ? `${names[0]} chosen`
          : `${names.length} files chosen: ${names.join(', ')}`
  }
}
