/**
 * The dashboard: upload files, watch them move, and act on them. State arrives over the uploadProgress
 * subscription (graphql-ws); actions go through the REST routes. No framework: a table updated in place, so
 * focus and typed values survive live updates.
 */
import { createClient } from 'graphql-ws'

interface Upload {
  id: string
  filename: string
  status: 'IN_PROGRESS' | 'PAUSED' | 'COMPLETED' | 'CANCELED' | 'FAILED'
  uploadedSize: number
  totalSize: number
  currentSpeed: number
  targetSpeed: number
  downloadUrl: string | null
  error: string | null
}

const FIELDS = 'id filename status uploadedSize totalSize currentSpeed targetSpeed downloadUrl error'

const $ = <T extends HTMLElement>(selector: string) => document.querySelector(selector) as T
const tbody = $<HTMLTableSectionElement>('#uploads')
const message = $<HTMLParagraphElement>('#message')
const tokenInput = $<HTMLInputElement>('#token')
tokenInput.value = sessionStorage.getItem('token') ?? ''
tokenInput.addEventListener('change', () => {
  sessionStorage.setItem('token', tokenInput.value)
  void start()
})

const authHeaders = (): Record<string, string> =>
  tokenInput.value ? { authorization: `Bearer ${tokenInput.value}` } : {}

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024
    i++
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`
}
const speed = (n: number) => (n === 0 ? 'unlimited' : `${bytes(n)}/s`)
function timeLeft(u: Upload): string {
  if (u.status !== 'IN_PROGRESS' || u.currentSpeed <= 0) return '–'
  const s = Math.ceil((u.totalSize - u.uploadedSize) / u.currentSpeed)
  return s >= 3600
    ? `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`
    : s >= 60
      ? `${Math.floor(s / 60)} min ${s % 60} s`
      : `${s} s`
}
const say = (text: string) => (message.textContent = text)

async function api(method: string, path: string, body?: BodyInit): Promise<unknown> {
  const response = await fetch(path, { method, headers: authHeaders(), body })
  const json = (await response.json().catch(() => ({}))) as { detail?: string }
  if (!response.ok) throw new Error(json.detail ?? `${response.status} ${response.statusText}`)
  return json
}

// ---- the table -----------------------------------------------------------------------------------------

function cell(row: HTMLTableRowElement, label: string, className = ''): HTMLTableCellElement {
  const td = row.insertCell()
  td.dataset.label = label
  td.className = className
  return td
}

function button(
  text: string,
  label: string,
  onClick: () => Promise<unknown>,
  secondary = true,
): HTMLButtonElement {
  const b = document.createElement('button')
  b.type = 'button'
  b.textContent = text
  b.setAttribute('aria-label', label)
  if (secondary) b.className = 'secondary'
  b.addEventListener('click', () => {
    b.disabled = true
    onClick()
      .catch((error: Error) => say(error.message))
      .finally(() => render(rows.get(b.closest('tr')?.dataset.id ?? '')))
  })
  return b
}

const rows = new Map<string, Upload>()
const showEmpty = () => ($('#empty').hidden = rows.size > 0)

/** The elements of one row that change, kept so updates never search the DOM. */
interface RowView {
  size: HTMLTableCellElement
  progress: HTMLProgressElement
  percent: HTMLSpanElement
  speed: HTMLTableCellElement
  left: HTMLTableCellElement
  status: HTMLTableCellElement
  pause: HTMLButtonElement
  resume: HTMLButtonElement
  cancel: HTMLButtonElement
  remove: HTMLButtonElement
  link: HTMLAnchorElement
}
const views = new Map<string, RowView>()

function createRow(u: Upload): RowView {
  const row = tbody.insertRow(0)
  row.dataset.id = u.id
  cell(row, 'Name', 'name').textContent = u.filename
  const size = cell(row, 'Size')
  const progress = document.createElement('progress')
  progress.setAttribute('aria-label', `Progress of ${u.filename}`)
  const percent = document.createElement('span')
  cell(row, 'Progress').append(progress, percent)
  const speedCell = cell(row, 'Speed')
  const left = cell(row, 'Time left')
  const status = cell(row, 'Status', 'status')
  const resumeSpeed = document.createElement('input')
  resumeSpeed.type = 'number'
  resumeSpeed.min = '0'
  resumeSpeed.value = String(Math.round(u.targetSpeed / 1024))
  resumeSpeed.setAttribute('aria-label', `Resume speed for ${u.filename} in KiB/s (0 = unlimited)`)
  const link = document.createElement('a')
  link.textContent = 'Download'
  link.setAttribute('aria-label', `Download ${u.filename}`)
  const view: RowView = {
    size,
    progress,
    percent,
    speed: speedCell,
    left,
    status,
    link,
    pause: button('Pause', `Pause ${u.filename}`, () => api('POST', `/api/upload/${u.id}/pause`)),
    resume: button('Resume', `Resume ${u.filename}`, () =>
      api(
        'POST',
        `/api/upload/${u.id}/resume?speed=${Math.max(0, Math.round(Number(resumeSpeed.value) * 1024))}`,
      ),
    ),
    cancel: button('Cancel', `Cancel ${u.filename}`, () => api('POST', `/api/upload/${u.id}/cancel`)),
    remove: button('Delete', `Delete ${u.filename}`, async () => {
      await api('DELETE', `/api/files/${u.id}`)
      rows.delete(u.id)
      views.delete(u.id)
      row.remove()
      showEmpty()
      say(`Deleted ${u.filename}`)
    }),
  }
  cell(row, 'Actions', 'actions').append(view.pause, resumeSpeed, view.resume, view.cancel, view.remove, link)
  views.set(u.id, view)
  return view
}

function render(u: Upload | undefined): void {
  if (!u) return
  const view = views.get(u.id) ?? createRow(u)
  view.size.textContent = bytes(u.totalSize)
  view.progress.max = Math.max(1, u.totalSize)
  view.progress.value = u.totalSize === 0 && u.status === 'COMPLETED' ? 1 : u.uploadedSize
  const percent = u.totalSize
    ? Math.floor((u.uploadedSize / u.totalSize) * 100)
    : u.status === 'COMPLETED'
      ? 100
      : 0
  view.percent.textContent = ` ${percent} %`
  const current = u.status === 'IN_PROGRESS' ? (u.currentSpeed > 0 ? speed(u.currentSpeed) : '0 B/s') : '–'
  view.speed.textContent = `${current} / ${speed(u.targetSpeed)}`
  view.left.textContent = timeLeft(u)
  view.status.textContent = u.status.toLowerCase().replace('_', ' ') + (u.error ? `: ${u.error}` : '')
  view.status.className = `status ${u.status}`
  view.pause.disabled = u.status !== 'IN_PROGRESS'
  view.resume.disabled = u.status !== 'PAUSED'
  view.cancel.disabled = u.status !== 'IN_PROGRESS' && u.status !== 'PAUSED'
  view.remove.disabled = u.status === 'IN_PROGRESS' || u.status === 'PAUSED'
  view.link.hidden = !u.downloadUrl
  if (u.downloadUrl) view.link.href = u.downloadUrl
  showEmpty()
}

function update(u: Upload): void {
  rows.set(u.id, u)
  render(u)
}

// ---- live state ----------------------------------------------------------------------------------------

let client: ReturnType<typeof createClient> | undefined

async function start(): Promise<void> {
  await client?.dispose()
  tbody.replaceChildren()
  rows.clear()
  views.clear()
  const response = await fetch('/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...authHeaders() },
    body: JSON.stringify({ query: `{ uploads { ${FIELDS} } }` }),
  })
  const { data, errors } = (await response.json()) as {
    data?: { uploads: Upload[] }
    errors?: { message: string }[]
  }
  if (!data) return void say(errors?.[0]?.message ?? 'Could not load the uploads')
  for (const u of data.uploads) update(u)
  showEmpty()
  client = createClient({
    url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/graphql`,
    connectionParams: () => (tokenInput.value ? { authorization: `Bearer ${tokenInput.value}` } : {}),
    retryAttempts: Infinity,
  })
  client.subscribe<{ uploadProgress: Upload }>(
    { query: `subscription { uploadProgress { ${FIELDS} } }` },
    {
      next: ({ data }) => data && update(data.uploadProgress),
      error: () => say('Live updates stopped; reload the page'),
      complete: () => undefined,
    },
  )
}

// ---- uploading -----------------------------------------------------------------------------------------

const fileInput = $<HTMLInputElement>('#file')
const drop = $<HTMLLabelElement>('#drop')

function chosenSpeed(): number {
  const unit = Number($<HTMLSelectElement>('#unit').value)
  return unit === 0 ? 0 : Math.max(0, Math.round(Number($<HTMLInputElement>('#speed').value) * unit))
}

async function upload(files: Iterable<File>): Promise<void> {
  for (const file of files) {
    const form = new FormData()
    form.append('file', file, file.name)
    say(`Sending ${file.name}…`)
    try {
      const started = (await api('POST', `/api/upload?speed=${chosenSpeed()}`, form)) as { upload_id: string }
      say(`${file.name} is being stored`)
      const { data } = (await (
        await fetch('/graphql', {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...authHeaders() },
          body: JSON.stringify({ query: `{ upload(id: "${started.upload_id}") { ${FIELDS} } }` }),
        })
      ).json()) as { data?: { upload: Upload } }
      if (data) update(data.upload)
    } catch (error) {
      say(`${file.name}: ${(error as Error).message}`)
    }
  }
}

$<HTMLFormElement>('#upload-form').addEventListener('submit', (event) => {
  event.preventDefault()
  if (!fileInput.files?.length) return void say('Choose a file first')
  void upload(Array.from(fileInput.files)).then(() => (fileInput.value = ''))
})
drop.addEventListener('dragover', (event) => {
  event.preventDefault()
  drop.classList.add('over')
})
drop.addEventListener('dragleave', () => drop.classList.remove('over'))
drop.addEventListener('drop', (event) => {
  event.preventDefault()
  drop.classList.remove('over')
  if (event.dataTransfer?.files.length) void upload(Array.from(event.dataTransfer.files))
})

void start()
