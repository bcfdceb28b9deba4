/**
 * Helpers for the dashboard's browser tests: a page that records every console error, page error and failed
 * response; uploads made fast through the REST API; what a page measures (height, buttons, tab stops).
 */
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Browser, Page } from 'playwright-core'

export const VIEWPORTS = {
  desktop: { width: 1280, height: 800 },
  phone: { width: 390, height: 844 },
} as const
export type ViewportName = keyof typeof VIEWPORTS

export interface DashboardPage {
  page: Page
  /** Console errors, uncaught page errors and answers of 400 or more, as they happened. */
  problems: string[]
}

/**
 * Opens the dashboard and waits until it has loaded (its list, or its request for a token). Answers whose
 * status is in `allowStatuses` (a 401 while no token is given) are expected, not problems.
 */
export async function openDashboard(
  browser: Browser,
  url: string,
  viewport: ViewportName,
  { allowStatuses = [] as number[], acceptDownloads = false } = {},
): Promise<DashboardPage> {
  const page = await browser.newPage({ viewport: VIEWPORTS[viewport], acceptDownloads })
  const problems: string[] = []
  const allowed = (text: string) => allowStatuses.some((status) => text.includes(`status of ${status}`))
  page.on('console', (message) => {
    if (message.type() === 'error' && !allowed(message.text())) problems.push(`console: ${message.text()}`)
  })
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`))
  page.on('response', (response) => {
    if (response.status() >= 400 && !allowStatuses.includes(response.status()))
      problems.push(`${response.status()} ${response.request().method()} ${response.url()}`)
  })
  await page.goto(`${url}/`)
  await page.locator('#workspace:not([hidden]), #auth:not([hidden])').first().waitFor()
  return { page, problems }
}

/** The page's favicon link, fetched as the browser would: it must be there (no 404 in the console). */
export async function favicon(page: Page): Promise<{ href: string; status: number; type: string }> {
  const href = await page.locator('link[rel=icon]').evaluate((link) => (link as HTMLLinkElement).href)
  const response = await page.request.get(href)
  return {
    href: new URL(href).pathname,
    status: response.status(),
    type: response.headers()['content-type'] ?? '',
  }
}

export interface Metrics {
  height: number
  buttons: number
  visibleButtons: number
  tabStops: number
  rows: number
  overflow: number
}

/** How tall the page is, how many buttons it holds (all, and shown), its Tab stops and horizontal overflow. */
export function measure(page: Page): Promise<Metrics> {
  return page.evaluate(() => {
    const focusable = Array.from(
      document.querySelectorAll<HTMLElement>('a[href], button, input, select, textarea, [tabindex]'),
    ).filter((el) => el.tabIndex >= 0 && !(el as HTMLButtonElement).disabled && el.checkVisibility())
    // A radio group is one Tab stop.
    const radios = new Set<string>()
    const tabStops = focusable.filter((el) => {
      if (!(el instanceof HTMLInputElement) || el.type !== 'radio') return true
      if (radios.has(el.name)) return false
      radios.add(el.name)
      return true
    }).length
    const buttons = Array.from(document.querySelectorAll('button'))
    return {
      height: document.documentElement.scrollHeight,
      buttons: buttons.length,
      visibleButtons: buttons.filter((b) => b.checkVisibility()).length,
      tabStops,
      rows: document.querySelectorAll('#uploads tr').length,
      overflow: document.documentElement.scrollWidth - window.innerWidth,
    }
  })
}

/** Controls with no accessible name: no aria-label, no <label>, no text. */
/** The focused element's accessible name, near enough: aria-label, its <label>, or its text. */
export const focusedName = (page: Page) =>
  page.evaluate(() => {
    const el = document.activeElement as HTMLInputElement | null
    return (
      el?.getAttribute('aria-label') ?? el?.labels?.[0]?.textContent?.trim() ?? el?.textContent?.trim() ?? ''
    )
  })

export function unlabelled(page: Page): Promise<string[]> {
  return page.evaluate(() =>
    Array.from(document.querySelectorAll('input, select, button, progress, a, dialog'))
      .filter(
        (el) =>
          !el.getAttribute('aria-label') &&
          !el.getAttribute('aria-labelledby') &&
          !(el as HTMLInputElement).labels?.length &&
          !el.textContent?.trim(),
      )
      .map((el) => el.outerHTML.slice(0, 120)),
  )
}

/** The filenames in the table, top to bottom. */
export const shownNames = (page: Page) =>
  page.locator('#uploads td.name').evaluateAll((cells) => cells.map((cell) => cell.textContent ?? ''))

/** Resolves once `check` holds, trying every 50 ms; for state outside the page (the storage folder). */
export async function until<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(50)
  }
}

/** Files in staging: a tus upload's bytes as they arrive (`{id}`), or a multipart body (`….incoming`). */
export const staged = async (dir: string) =>
  (await readdir(join(dir, '.staging')).catch(() => [] as string[])).filter((name) => !name.startsWith('.'))

/** A request the page made to tus (/files/): its method, upload id and, for a PATCH, the offset it starts at. */
export interface TusRequest {
  method: string
  id: string
  offset: number | undefined
  /** What the test called the time it was made in (`phase.now`), e.g. before or after a restart. */
  phase: string
}

/** Records every tus request `page` makes, from now on (across reloads), tagged with `phase.now`. */
export function recordTus(page: Page, phase: { now: string }): TusRequest[] {
  const seen: TusRequest[] = []
  page.on('request', (request) => {
    const { pathname } = new URL(request.url())
    if (!pathname.startsWith('/files/')) return
    const offset = request.headers()['upload-offset']
    seen.push({
      method: request.method(),
      id: decodeURIComponent(pathname.slice('/files/'.length)),
      offset: offset === undefined ? undefined : Number(offset),
      phase: phase.now,
    })
  })
  return seen
}

export interface Made {
  id: string
  filename: string
}

/** POST /api/upload, as curl -F does; `token` for a server with API_TOKEN. */
export async function restUpload(
  url: string,
  filename: string,
  size: number,
  speed: number,
  token?: string,
): Promise<Made> {
  const form = new FormData()
  form.append('file', new Blob([new Uint8Array(size).fill(filename.length)]), filename)
  const response = await fetch(`${url}/api/upload?speed=${speed}`, {
    method: 'POST',
    body: form,
    headers: token ? { authorization: `Bearer ${token}` } : {},
  })
  const body = (await response.json()) as { upload_id?: string; detail?: string }
  if (!body.upload_id) throw new Error(`upload of ${filename} refused: ${response.status} ${body.detail}`)
  return { id: body.upload_id, filename }
}

export async function rest(url: string, method: string, path: string): Promise<Record<string, unknown>> {
  const response = await fetch(`${url}${path}`, { method })
  const body = (await response.json()) as Record<string, unknown>
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(body)}`)
  return body
}

export type Kind = 'completed' | 'running' | 'paused' | 'canceled'

/**
 * `kinds.length` uploads named file-000.bin and on, made a few at a time: completed ones are 16 bytes at
 * unlimited speed, the others 1 MiB at 1 KiB/s (running for a quarter of an hour), paused or canceled at once.
 * Answers with them in the order the server recorded them (its list's order).
 */
export async function makeUploads(
  url: string,
  kinds: Kind[],
  parallel = 6,
): Promise<(Made & { kind: Kind })[]> {
  const made: (Made & { kind: Kind })[] = []
  let next = 0
  const worker = async () => {
    while (next < kinds.length) {
      const i = next++
      const kind = kinds[i]!
      const filename = `file-${String(i).padStart(3, '0')}.bin`
      const upload =
        kind === 'completed'
          ? await restUpload(url, filename, 16, 0)
          : await restUpload(url, filename, 1024 * 1024, 1024)
      if (kind === 'paused') await rest(url, 'POST', `/api/upload/${upload.id}/pause`)
      if (kind === 'canceled') await rest(url, 'POST', `/api/upload/${upload.id}/cancel`)
      made.push({ ...upload, kind })
    }
  }
  await Promise.all(Array.from({ length: parallel }, worker))
  const listed = (await rest(url, 'GET', '/api/uploads')).uploads as { upload_id: string; filename: string }[]
  const kindOf = new Map(made.map((u) => [u.id, u.kind]))
  return listed.map((u) => ({ id: u.upload_id, filename: u.filename, kind: kindOf.get(u.upload_id)! }))
}

export async function gql<T>(
  url: string,
  query: string,
  variables: Record<string, unknown> = {},
): Promise<T> {
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ query, variables }),
  })
  const body = (await response.json()) as { data?: T; errors?: { message: string }[] }
  if (!body.data) throw new Error(`GraphQL: ${JSON.stringify(body.errors)}`)
  return body.data
}

export interface Counts {
  total: number
  inProgress: number
  paused: number
  completed: number
  canceled: number
  failed: number
}

export const counts = async (url: string) =>
  (
    await gql<{ uploadCounts: Counts }>(
      url,
      '{ uploadCounts { total inProgress paused completed canceled failed } }',
    )
  ).uploadCounts

/** Resolves once the server's counts are `expected` (tiny uploads complete a moment after they are made). */
export const settled = (url: string, expected: Partial<Counts>) =>
  until(`counts ${JSON.stringify(expected)}`, async () => {
    const now = await counts(url)
    return Object.entries(expected).every(([key, value]) => now[key as keyof Counts] === value) && now
  })
