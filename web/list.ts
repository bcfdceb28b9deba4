/**
 * The uploads on record, a page at a time (the API's cursor pages, oldest first), for one status or all,
 * with how many there are in each. Live changes update the rows shown in place; uploads elsewhere (other
 * pages, other statuses) only change the counts, so the page never jumps. A new upload that belongs at the
 * end of the last page is added there.
 */
import { COUNTS, FIELDS, gql, order, type Counts, type Status, type Upload } from './api.js'
import { Row, type RowActions } from './row.js'

export type Filter = 'ALL' | Status

const COUNT_OF: Record<Filter, keyof Counts> = {
  ALL: 'total',
  RECEIVING: 'receiving',
  IN_PROGRESS: 'inProgress',
  PAUSED: 'paused',
  COMPLETED: 'completed',
  CANCELED: 'canceled',
  FAILED: 'failed',
}

const EMPTY_TEXT: Record<Filter, string> = {
  ALL: 'No uploads yet.',
  RECEIVING: 'No file is arriving.',
  IN_PROGRESS: 'No upload is in progress.',
  PAUSED: 'No upload is paused.',
  COMPLETED: 'No completed uploads.',
  CANCELED: 'No canceled uploads.',
  FAILED: 'No failed uploads.',
}

const PAGE_QUERY = `query Page($status: [UploadStatus!], $first: Int!, $after: String) {
  uploads(status: $status, first: $first, after: $after) { ${FIELDS} }
  ${COUNTS}
}`

export interface ListElements {
  /** The list's heading: focus goes there when no row is left to take it. */
  heading: HTMLElement
  table: HTMLTableElement
  tbody: HTMLTableSectionElement
  empty: HTMLElement
  filter: HTMLFieldSetElement
  pageSize: HTMLSelectElement
  pager: HTMLElement
  pageInfo: HTMLElement
  first: HTMLButtonElement
  previous: HTMLButtonElement
  next: HTMLButtonElement
  last: HTMLButtonElement
}

export interface ListEvents extends RowActions {
  /** The counts changed (so did what "Clear finished" would remove). */
  counted(counts: Counts): void
  /** A state newer than `upload` that the live feed has, if any, and whether it arrived after `since`. */
  newer(upload: Upload, since: number): Upload
  /** The live feed's clock: how many events have arrived. */
  clock(): number
  failed(error: Error): void
}

export class UploadList {
  filter: Filter = 'ALL'
  private pageSize: number
  /** The `after` cursor of each page reached so far; page 0 starts at the beginning. */
  private starts: (string | undefined)[] = [undefined]
  private index = 0
  private rows: Row[] = []
  private readonly byId = new Map<string, Row>()
  private hasNext = false
  private loaded = false
  private counts: Counts | undefined
  private generation = 0
  private countTimer: ReturnType<typeof setTimeout> | undefined

  constructor(
    private readonly el: ListElements,
    private readonly events: ListEvents,
  ) {
    this.pageSize = Number(el.pageSize.value)
    el.filter.addEventListener('change', () => {
      const checked = el.filter.querySelector<HTMLInputElement>('input:checked')
      this.filter = (checked?.value ?? 'ALL') as Filter
      this.restart()
    })
    el.pageSize.addEventListener('change', () => {
      this.pageSize = Number(el.pageSize.value)
      this.restart()
    })
    el.first.addEventListener('click', () => this.go(0))
    el.previous.addEventListener('click', () => this.go(this.index - 1))
    el.next.addEventListener('click', () => this.go(this.index + 1))
    el.last.addEventListener('click', () => void this.goLast().catch((error: Error) => events.failed(error)))
  }

  get statuses(): Status[] | undefined {
    return this.filter === 'ALL' ? undefined : [this.filter]
  }

  /** From the first page again (a new filter, page size, or after clearing). */
  restart(): void {
    this.starts = [undefined]
    this.go(0)
  }

  private go(index: number): void {
    this.load(Math.max(0, Math.min(index, this.starts.length - 1))).catch((error: Error) =>
      this.events.failed(error),
    )
  }

  /** Fetches page `index` (the one shown by default) and the counts; rejects with an AuthError for a bad token. */
  async load(index = this.index): Promise<void> {
    const generation = ++this.generation
    const since = this.events.clock()
    const data = await gql<{ uploads: Upload[]; uploadCounts: Counts }>(PAGE_QUERY, {
      status: this.statuses,
      first: this.pageSize + 1,
      after: this.starts[index],
    })
    if (generation !== this.generation) return
    const uploads = data.uploads.slice(0, this.pageSize).map((u) => this.events.newer(u, since))
    this.index = index
    this.hasNext = data.uploads.length > this.pageSize
    this.starts.length = index + 1
    const end = uploads.at(-1)
    if (this.hasNext && end) this.starts.push(end.cursor)
    this.show(uploads)
    this.loaded = true
    this.setCounts(data.uploadCounts)
  }

  /** The last page: every page's start, from the cursors alone (the API pages forward only). */
  private async goLast(): Promise<void> {
    const cursors: string[] = []
    for (;;) {
      const { uploads } = await gql<{ uploads: { cursor: string }[] }>(
        `query Cursors($status: [UploadStatus!], $after: String) { uploads(status: $status, first: 1000, after: $after) { cursor } }`,
        { status: this.statuses, after: cursors[cursors.length - 1] },
      )
      cursors.push(...uploads.map((u) => u.cursor))
      if (uploads.length < 1000) break
    }
    const pages = Math.max(1, Math.ceil(cursors.length / this.pageSize))
    this.starts = [undefined]
    for (let page = 1; page < pages; page++) this.starts.push(cursors[page * this.pageSize - 1])
    await this.load(pages - 1)
  }

  /** Shows `uploads`, keeping the rows (and their focus, typed speeds) of those already shown. */
  private show(uploads: Upload[]): void {
    const keep = new Set(uploads.map((u) => u.id))
    // Focus in a row that goes (a deleted upload) moves to the row that takes its place.
    const focusedAt = this.rows.findIndex((row) => row.tr.contains(document.activeElement))
    const focusedRow = this.rows[focusedAt]
    const losesFocus = focusedRow !== undefined && !keep.has(focusedRow.upload.id)
    for (const row of this.rows) {
      if (!keep.has(row.upload.id)) {
        row.tr.remove()
        this.byId.delete(row.upload.id)
      }
    }
    this.rows = uploads.map((u) => {
      const row = this.byId.get(u.id)
      if (row) {
        row.update(u)
        return row
      }
      const made = new Row(u, this.events)
      this.byId.set(u.id, made)
      return made
    })
    // Rows already in place stay put (moving a node would take focus away); new ones go where they belong.
    this.rows.forEach((row, i) => {
      const at = this.el.tbody.children[i]
      if (at !== row.tr) this.el.tbody.insertBefore(row.tr, at ?? null)
    })
    this.showEmpty()
    if (losesFocus) (this.rows[Math.min(focusedAt, this.rows.length - 1)] ?? this.el.heading).focus()
  }

  /** An upload that has left the record (deleted, or its file never arrived): its row goes at once. */
  drop(id: string): void {
    const row = this.byId.get(id)
    if (!row) return
    const hadFocus = row.tr.contains(document.activeElement)
    const at = this.rows.indexOf(row)
    row.tr.remove()
    this.byId.delete(id)
    this.rows.splice(at, 1)
    this.showEmpty()
    if (hadFocus) (this.rows[Math.min(at, this.rows.length - 1)] ?? this.el.heading).focus()
  }

  /** A state from the live feed. */
  live(u: Upload): void {
    const row = this.byId.get(u.id)
    if (row) return row.update(u)
    if (!this.loaded || (this.statuses && !this.statuses.includes(u.status)) || this.hasNext) return
    const last = this.rows[this.rows.length - 1]
    const belongsAtEnd = last ? order(u) > order(last.upload) : this.index === 0
    if (!belongsAtEnd) return
    if (this.rows.length < this.pageSize) {
      const made = new Row(u, this.events)
      this.byId.set(u.id, made)
      this.rows.push(made)
      this.el.tbody.append(made.tr)
      this.showEmpty()
    } else if (last) {
      // It starts the next page.
      this.hasNext = true
      this.starts.push(last.upload.cursor)
      this.showPager()
    }
  }

  /** Some upload changed status: the counts are asked for again, once for a burst of changes. */
  recount(): void {
    if (this.countTimer !== undefined) return
    this.countTimer = setTimeout(() => {
      this.countTimer = undefined
      gql<{ uploadCounts: Counts }>(`{ ${COUNTS} }`).then(
        ({ uploadCounts }) => this.setCounts(uploadCounts),
        (error: Error) => this.events.failed(error),
      )
    }, 200)
  }

  private setCounts(counts: Counts): void {
    this.counts = counts
    for (const span of this.el.filter.querySelectorAll<HTMLElement>('[data-count]'))
      span.textContent = String(counts[span.dataset.count as keyof Counts])
    this.showPager()
    this.showEmpty()
    this.events.counted(counts)
  }

  private showEmpty(): void {
    const none = this.rows.length === 0
    this.el.table.hidden = none
    this.el.empty.hidden = !none
    this.el.empty.textContent =
      this.filter === 'ALL' || this.counts?.total !== 0 ? EMPTY_TEXT[this.filter] : EMPTY_TEXT.ALL
  }

  private showPager(): void {
    const total = this.counts?.[COUNT_OF[this.filter]] ?? this.rows.length
    const pages = Math.max(1, Math.ceil(total / this.pageSize), this.index + 1 + (this.hasNext ? 1 : 0))
    const { pager, pageInfo, first, previous, next, last } = this.el
    pager.hidden = pages <= 1
    const from = this.index * this.pageSize + 1
    pageInfo.textContent =
      this.rows.length === 0
        ? `Page ${this.index + 1} of ${pages}`
        : `Page ${this.index + 1} of ${pages} · ${from}–${from + this.rows.length - 1} of ${total}`
    const focused = document.activeElement
    first.disabled = previous.disabled = this.index === 0
    next.disabled = last.disabled = !this.hasNext
    // A button that just went disabled (Next on the last page) drops focus; keep it in the pager.
    if (focused instanceof HTMLButtonElement && focused.disabled && pager.contains(focused))
      (next.disabled ? previous : next).focus()
  }
}
