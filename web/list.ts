/**
 * The uploads on record, a page at a time (the API's cursor pages), for one status or all, with how many
 * there are in each. All of them: the active ones (arriving, running, paused) first, where the eye is, then
 * the ended ones, each group oldest first. Live changes update the rows shown in place; uploads elsewhere
 * (other pages, other statuses) only change the counts, so the page never jumps; a row that ends stays where
 * it is until the page is next loaded. A new upload joins the end of its group when that is on this page.
 */
import { COUNTS, FIELDS, FINAL, gql, order, type Counts, type Status, type Upload } from './api.js'
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

/** The groups "All" shows, in this order; a filter shows one group of one status. */
const ACTIVE: Status[] = ['RECEIVING', 'IN_PROGRESS', 'PAUSED']
const GROUPS_OF_ALL: Status[][] = [ACTIVE, [...FINAL]]

/** Where a page starts: in which group, after which upload of it (none: at the group's start). */
interface PageStart {
  group: number
  after?: string
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
  /** Where each page reached so far starts; page 0 starts at the beginning. */
  private starts: PageStart[] = [{ group: 0 }]
  private index = 0
  private rows: Row[] = []
  private readonly byId = new Map<string, Row>()
  /** The group each row shown was found in (its status then: a row that ends stays put). */
  private readonly groupOf = new Map<string, number>()
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

  private get groups(): Status[][] {
    return this.filter === 'ALL' ? GROUPS_OF_ALL : [[this.filter]]
  }

  /** From the first page again (a new filter, page size, or after clearing). */
  restart(): void {
    this.starts = [{ group: 0 }]
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
    const groups = this.groups
    const want = this.pageSize + 1
    const found: { upload: Upload; group: number }[] = []
    let { group, after } = this.starts[index] ?? { group: 0 }
    let counts: Counts | undefined
    // A page that reaches the end of one group goes on with the next.
    while (found.length < want && group < groups.length) {
      const first = want - found.length
      const data = await gql<{ uploads: Upload[]; uploadCounts: Counts }>(PAGE_QUERY, {
        status: groups[group],
        first,
        after,
      })
      counts = data.uploadCounts
      for (const upload of data.uploads) found.push({ upload, group })
      if (data.uploads.length === first) break
      group++
      after = undefined
    }
    if (generation !== this.generation || !counts) return
    const page = found.slice(0, this.pageSize)
    const uploads = page.map(({ upload }) => this.events.newer(upload, since))
    this.index = index
    this.hasNext = found.length > this.pageSize
    this.starts.length = index + 1
    const end = page.at(-1)
    if (this.hasNext && end) this.starts.push({ group: end.group, after: end.upload.cursor })
    for (const { upload, group: g } of page) this.groupOf.set(upload.id, g)
    this.show(uploads)
    this.loaded = true
    this.setCounts(counts)
  }

  /** The last page: every page's start, from the cursors alone (the API pages forward only). */
  private async goLast(): Promise<void> {
    const all: Required<PageStart>[] = []
    for (const [group, status] of this.groups.entries()) {
      let after: string | undefined
      for (;;) {
        const { uploads } = await gql<{ uploads: { cursor: string }[] }>(
          `query Cursors($status: [UploadStatus!], $after: String) { uploads(status: $status, first: 1000, after: $after) { cursor } }`,
          { status, after },
        )
        for (const u of uploads) all.push({ group, after: u.cursor })
        after = uploads.at(-1)?.cursor
        if (uploads.length < 1000) break
      }
    }
    const pages = Math.max(1, Math.ceil(all.length / this.pageSize))
    this.starts = [{ group: 0 }]
    for (let page = 1; page < pages; page++) this.starts.push(all[page * this.pageSize - 1] ?? { group: 0 })
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
        this.groupOf.delete(row.upload.id)
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
    this.groupOf.delete(id)
    this.rows.splice(at, 1)
    this.showEmpty()
    if (hadFocus) (this.rows[Math.min(at, this.rows.length - 1)] ?? this.el.heading).focus()
  }

  /** A state from the live feed. */
  live(u: Upload): void {
    const row = this.byId.get(u.id)
    if (row) return row.update(u)
    const group = this.groups.findIndex((statuses) => statuses.includes(u.status))
    if (!this.loaded || group < 0) return
    // One newer than every upload of its group on this page, when the group ends here, goes at its end
    // (before the next group's rows): a new upload, or one that has just joined the group (it ended).
    let at = this.rows.findIndex((r) => (this.groupOf.get(r.upload.id) ?? 0) > group)
    if (at < 0) {
      if (this.hasNext || (this.rows.length === 0 && this.index > 0)) return
      at = this.rows.length
    } else if (at === 0 && (this.starts[this.index]?.group ?? 0) > group) return
    const before = this.rows[at - 1]
    if (before && this.groupOf.get(before.upload.id) === group && order(u) <= order(before.upload)) return
    const made = new Row(u, this.events)
    this.byId.set(u.id, made)
    this.groupOf.set(u.id, group)
    this.el.tbody.insertBefore(made.tr, this.rows[at]?.tr ?? null)
    this.rows.splice(at, 0, made)
    const pushed = this.rows.length > this.pageSize ? this.rows.pop() : undefined
    const last = this.rows.at(-1)
    if (pushed && last) {
      // The page's last row now starts the next one.
      const hadFocus = pushed.tr.contains(document.activeElement)
      pushed.tr.remove()
      this.byId.delete(pushed.upload.id)
      this.groupOf.delete(pushed.upload.id)
      this.hasNext = true
      this.starts.length = this.index + 1
      this.starts.push({ group: this.groupOf.get(last.upload.id) ?? 0, after: last.upload.cursor })
      if (hadFocus) last.focus()
    }
    this.showEmpty()
    this.showPager()
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
