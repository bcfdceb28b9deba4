/**
 * The dashboard: choose files (each with its own speed), send them, and watch and act on the uploads on
 * record, a page at a time. State arrives over the uploadProgress subscription (live.ts); the page asks the
 * server again only when that feed says something changed. No framework: rows are updated in place, so focus
 * and typed values survive live updates.
 */
import { AuthError, getToken, gql, isFinal, setToken, type Counts, type Upload } from './api.js'
import { ClearFinished } from './clear.js'
import { Confirm } from './confirm.js'
import { bytes } from './format.js'
import { UploadList } from './list.js'
import { followUploads } from './live.js'
import { followHookDeliveries } from './hooks.js'
import { Overall } from './overall.js'
import { SendQueue } from './queue.js'
import { SpeedField } from './speed-field.js'
import { UnfinishedNote } from './unfinished.js'

const $ = <T extends HTMLElement>(selector: string) => document.querySelector(selector) as T

const message = $<HTMLParagraphElement>('#message')
const say = (text: string) => (message.textContent = text)

// ---- access ------------------------------------------------------------------------------------------

const auth = $<HTMLDivElement>('#auth')
const authMessage = $<HTMLParagraphElement>('#auth-message')
const tokenForm = $<HTMLFormElement>('#token-form')
const tokenInput = $<HTMLInputElement>('#token')
const workspace = $<HTMLDivElement>('#workspace')
tokenInput.value = getToken()
tokenForm.hidden = getToken() === ''

/** One clear state when the server wants a token: say so, offer the field, show nothing else. */
function needToken(error: AuthError): void {
  stopLive()
  authMessage.textContent = error.hadToken
    ? 'The access token was refused. Check it (the server’s API_TOKEN) and try again.'
    : 'This server needs an access token (its API_TOKEN). Enter it to see and send uploads.'
  auth.hidden = false
  tokenForm.hidden = false
  workspace.hidden = true
  if (document.activeElement === document.body || !tokenForm.contains(document.activeElement))
    tokenInput.focus()
}

tokenForm.addEventListener('submit', (event) => {
  event.preventDefault()
  setToken(tokenInput.value)
  void start()
})

function failed(error: Error): void {
  if (error instanceof AuthError) needToken(error)
  else say(error.message)
}

// ---- live state --------------------------------------------------------------------------------------

/** The latest state of every upload the live feed has mentioned, with when (in events) it arrived. */
const latest = new Map<string, { upload: Upload; at: number }>()
let events = 0

const overall = new Overall($('#overall'))

function live(u: Upload): void {
  if (u.removed) {
    latest.delete(u.id)
    overall.forget(u.id)
    list.drop(u.id)
    list.recount()
    return
  }
  const known = latest.get(u.id)?.upload
  // An ended upload never runs again: a late progress event must not bring it back.
  if (known && isFinal(known.status) && !isFinal(u.status)) return
  latest.set(u.id, { upload: u, at: ++events })
  overall.update(u)
  list.live(u)
  if (known?.status !== u.status) list.recount()
}

let stopLive = () => {}

// ---- the list ----------------------------------------------------------------------------------------

const clearFinished = new ClearFinished(
  {
    button: $('#clear'),
    dialog: $('#clear-dialog'),
    summary: $('#clear-summary'),
    confirm: $('#clear-confirm'),
    fallbackFocus: () => document.querySelector<HTMLInputElement>('#filter input:checked'),
  },
  async (keepFiles) => {
    try {
      const { clearUploads } = await gql<{ clearUploads: number }>(
        `mutation Clear($keepFiles: Boolean) { clearUploads(keepFiles: $keepFiles) }`,
        { keepFiles },
      )
      say(
        `Cleared ${clearUploads} finished ${clearUploads === 1 ? 'upload' : 'uploads'}; ` +
          (keepFiles ? 'their files stay in the storage folder' : 'their files were deleted'),
      )
      list.restart()
    } catch (error) {
      failed(error as Error)
    }
  },
)

const confirmation = new Confirm({
  dialog: $('#confirm-dialog'),
  title: $('#confirm-title'),
  detail: $('#confirm-detail'),
  confirm: $('#confirm-yes'),
  keep: $('#confirm-keep'),
})

const mutate = async (query: string, variables: Record<string, unknown>) => {
  try {
    await gql(query, variables)
  } catch (error) {
    if (error instanceof AuthError) needToken(error)
    throw error
  }
}

const pageSize = $<HTMLSelectElement>('#page-size')
// About a screen of rows: phones show their rows as cards, a few to a screen.
if (matchMedia('(max-width: 900px)').matches) pageSize.value = '10'

const list = new UploadList(
  {
    heading: $('#list-title'),
    table: $('#table'),
    tbody: $('#uploads'),
    empty: $('#empty'),
    filter: $('#filter'),
    pageSize,
    pager: $('#pager'),
    pageInfo: $('#page-info'),
    first: $('#first'),
    previous: $('#previous'),
    next: $('#next'),
    last: $('#last'),
  },
  {
    say,
    failed,
    clock: () => events,
    newer: (u, since) => {
      const seen = latest.get(u.id)
      return seen && seen.at > since ? seen.upload : u
    },
    counted: (counts: Counts) => clearFinished.setCounts(counts),
    setSpeed: (u, speed) =>
      mutate(`mutation ($id: ID!, $speed: SafeInt!) { setSpeed(id: $id, speed: $speed) { id } }`, {
        id: u.id,
        speed,
      }),
    pause: (u) => mutate(`mutation ($id: ID!) { pauseUpload(id: $id) { id } }`, { id: u.id }),
    resume: (u, speed) =>
      mutate(`mutation ($id: ID!, $speed: SafeInt) { resumeUpload(id: $id, speed: $speed) { id } }`, {
        id: u.id,
        speed,
      }),
    cancel: async (u) => {
      const yes = await confirmation.ask({
        title: `Cancel ${u.filename}?`,
        detail:
          `It stops for good and what the server has of it (${bytes(u.receivedSize)}) is removed; ` +
          'a canceled upload cannot be resumed.',
        confirm: 'Cancel upload',
        keep: 'Keep it going',
      })
      if (yes) await mutate(`mutation ($id: ID!) { cancelUpload(id: $id) { id } }`, { id: u.id })
    },
    remove: async (u) => {
      const yes = await confirmation.ask({
        title: `Delete ${u.filename}?`,
        detail:
          u.status === 'COMPLETED'
            ? `Its record and its stored file (${bytes(u.totalSize)}) are deleted. This cannot be undone.`
            : 'Its record leaves the list. This cannot be undone.',
        confirm: u.status === 'COMPLETED' ? 'Delete file' : 'Delete record',
        keep: 'Keep it',
      })
      if (!yes) return
      await mutate(`mutation ($id: ID!) { deleteFile(id: $id) { id } }`, { id: u.id })
      say(`Deleted ${u.filename}`)
      // Deletions are not in the live feed: this page and the counts are asked for again.
      await list.load()
    },
  },
)

// ---- sending -----------------------------------------------------------------------------------------

const fileInput = $<HTMLInputElement>('#file')
const drop = $<HTMLLabelElement>('#drop')
const sendingLine = $<HTMLParagraphElement>('#sending')
let sendingScheduled = false
/** At most once a frame: a send reports progress many times a second. */
const showSending = () => {
  if (sendingScheduled) return
  sendingScheduled = true
  requestAnimationFrame(() => {
    sendingScheduled = false
    sendingLine.textContent = queue.summary()
    sendingLine.hidden = sendingLine.textContent === ''
  })
}
const queue = new SendQueue({
  list: $('#queue'),
  defaultSpeed: new SpeedField($('#speed'), $('#unit')),
  button: $('#upload'),
  chosen: $('#chosen'),
  say,
  confirm: (question) => confirmation.ask(question),
  unauthorized: needToken,
  changed: showSending,
  sendsChanged: () => unfinished.refresh(),
})
const unfinished = new UnfinishedNote($('#unfinished'), () => queue.sendingIds())

$<HTMLFormElement>('#upload-form').addEventListener('submit', (event) => {
  event.preventDefault()
  queue.submit()
})
fileInput.addEventListener('change', () => {
  if (fileInput.files?.length) queue.add(Array.from(fileInput.files))
  fileInput.value = ''
})
drop.addEventListener('dragover', (event) => {
  event.preventDefault()
  drop.classList.add('over')
})
drop.addEventListener('dragleave', () => drop.classList.remove('over'))
drop.addEventListener('drop', (event) => {
  event.preventDefault()
  drop.classList.remove('over')
  if (event.dataTransfer?.files.length) queue.add(Array.from(event.dataTransfer.files))
})

// ---- start -------------------------------------------------------------------------------------------

/** Loads the first page; once the token (if any) is accepted, follows every upload live. */
let stopHooks = () => {}
async function start(): Promise<void> {
  stopLive()
  stopHooks()
  try {
    await list.load(0)
  } catch (error) {
    return failed(error as Error)
  }
  auth.hidden = true
  authMessage.textContent = ''
  tokenForm.hidden = getToken() === ''
  workspace.hidden = false
  if (message.textContent?.startsWith('Live updates')) say('')
  unfinished.refresh()
  stopHooks = followHookDeliveries($('#hook-deliveries'))
  stopLive = followUploads({
    update: live,
    connected: (again) => {
      if (again) overall.reset()
      // What changed before the feed was open (or while it was closed) is asked for once.
      list.load().catch(failed)
    },
    unauthorized: () => needToken(new AuthError(getToken() !== '')),
    failed: (reason) => say(`Live updates stopped (${reason}); reload the page`),
  })
}

void start()
