/**
 * The dashboard in Debian's Chromium, at desktop (1280×800) and phone (390×844) width, against real servers:
 * speeds per file with units, sending progress and canceling a send, one record per click, a running upload's
 * speed changed without a pause, 200 uploads (filter, pages, overall line, height), clearing finished uploads
 * through a dialog, token mode, the keyboard, and no console errors or failed requests anywhere. Files go
 * over tus: a send goes on from the server's offset after the server restarts, after the network drops and
 * after a page reload (the same file chosen again), and stops when its upload is canceled on the server.
 */
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { launchChromium } from './support/browser.js'
import {
  counts,
  favicon,
  focusedName,
  gql,
  makeUploads,
  measure,
  openDashboard,
  recordTus,
  rest,
  restUpload,
  settled,
  shownNames,
  staged,
  unlabelled,
  until,
  VIEWPORTS,
  type DashboardPage,
  type Kind,
  type ViewportName,
} from './support/dashboard-page.js'
import { cutProxy } from './support/cut-proxy.js'
import { restartableServer } from './support/restartable.js'
import { startServer, type TestServer } from './support/server.js'

const ARTIFACTS = new URL('../test-artifacts/', import.meta.url).pathname
const DOCS = new URL('../docs/', import.meta.url).pathname
/** DASHBOARD_DOCS=1 refreshes the README's screenshots (docs/dashboard*.png) as well. */
const WRITE_DOCS = process.env.DASHBOARD_DOCS === '1'

/** The page before this dashboard, with 200 uploads on record (all completed, 16 bytes each). */
const BEFORE = {
  desktop: { height: 17_532, buttons: 801 },
  phone: { height: 56_546, buttons: 801 },
}

let browser: Browser
beforeAll(async () => {
  await mkdir(ARTIFACTS, { recursive: true })
  browser = await launchChromium()
}, 60_000)
afterAll(async () => {
  await browser?.close()
})

interface Session extends DashboardPage {
  server: TestServer
}

/** A fresh server (its own folder) and the dashboard open on it; both closed when the test ends. */
async function session(
  viewport: ViewportName,
  options: {
    env?: Record<string, string>
    before?: (server: TestServer) => Promise<unknown>
    allowStatuses?: number[]
  } = {},
): Promise<Session> {
  const server = await startServer(options.env)
  const open: { page?: Page } = {}
  onTestFinished(async () => {
    await open.page?.close()
    await server.stop()
  })
  await options.before?.(server)
  const opened = await openDashboard(browser, server.url, viewport, {
    allowStatuses: options.allowStatuses,
    acceptDownloads: true,
  })
  open.page = opened.page
  opened.page.setDefaultTimeout(20_000)
  return { ...opened, server }
}

const row = (page: Page, name: string) =>
  page.locator('#uploads tr').filter({ has: page.locator(`td.name:text-is("${name}")`) })

const statusOf = (page: Page, name: string) => row(page, name).locator('td.status').textContent()

async function waitForStatus(page: Page, name: string, status: string, timeout = 20_000): Promise<void> {
  await row(page, name).locator(`td.status:text-is("${status}")`).waitFor({ timeout })
}

/** Answers the confirmation dialog titled `title` with its button `answer`, and waits for it to close. */
async function confirmIn(page: Page, title: string, answer: string): Promise<void> {
  const dialog = page.getByRole('dialog', { name: title, exact: true })
  await dialog.waitFor()
  await dialog.getByRole('button', { name: answer, exact: true }).click()
  await dialog.waitFor({ state: 'hidden' })
}

const progressOf = (page: Page, name: string) =>
  page.getByLabel(`Progress of ${name}`).evaluate((el) => (el as HTMLProgressElement).value)

/** Resolves once the row's bar has moved past `from` (a live update arrived). */
const movedPast = (page: Page, name: string, from: number) =>
  page.waitForFunction(
    ([label, start]) =>
      ((document.querySelector(`progress[aria-label="${label}"]`) as HTMLProgressElement | null)?.value ??
        0) > start,
    [`Progress of ${name}`, from] as const,
  )

const uploadsOnServer = async (url: string) =>
  (
    await gql<{
      uploads: { id: string; filename: string; status: string; targetSpeed: number; storedName: string }[]
    }>(url, '{ uploads { id filename status targetSpeed storedName } }')
  ).uploads

async function screenshot(page: Page, name: string, viewport: ViewportName, docs?: string): Promise<void> {
  await page.screenshot({ path: `${ARTIFACTS}dashboard-${name}-${viewport}.png`, fullPage: true })
  if (docs && WRITE_DOCS) await page.screenshot({ path: `${DOCS}${docs}` })
}

/** tus-js-client's stored sends (fingerprint → upload URL) in the page's localStorage. */
const tusEntries = (page: Page) =>
  page.evaluate(() => Object.keys(localStorage).filter((key) => key.startsWith('tus::')))

/** Slows this page's network to `bytesPerSecond` up (DevTools throttling), so a send takes a while. */
async function throttleUploads(page: Page, bytesPerSecond: number): Promise<void> {
  const cdp = await page.context().newCDPSession(page)
  await cdp.send('Network.enable')
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false,
    latency: 0,
    downloadThroughput: -1,
    uploadThroughput: bytesPerSecond,
  })
}

describe.each(Object.keys(VIEWPORTS) as ViewportName[])('the dashboard at %s width', (viewport) => {
  it('gives each chosen file its own speed in the form’s units, pauses, resumes at the row’s speed, downloads, deletes', async () => {
    const { page, problems, server } = await session(viewport)
    expect(await favicon(page)).toMatchObject({ href: '/favicon.svg', status: 200 })
    expect((await favicon(page)).type).toContain('image/svg+xml')
    await page.getByText('No uploads yet.').waitFor()

    const report = randomBytes(240 * 1024)
    await page.getByLabel('Speed', { exact: true }).fill('10')
    await page.getByLabel('Speed unit', { exact: true }).selectOption({ label: 'KiB/s' })
    await page.getByLabel('Choose or drop files').setInputFiles([
      { name: 'report.bin', mimeType: 'application/octet-stream', buffer: report },
      { name: 'fast.bin', mimeType: 'application/octet-stream', buffer: randomBytes(64 * 1024) },
    ])
    // Each waiting file has a speed of its own, with the form's units, starting at the form's.
    const formUnits = await page.getByLabel('Speed unit', { exact: true }).locator('option').allTextContents()
    expect(formUnits).toEqual(['KiB/s', 'MiB/s', 'GiB/s', 'unlimited'])
    for (const name of ['report.bin', 'fast.bin']) {
      expect(await page.getByLabel(`Speed for ${name} (to send)`).inputValue()).toBe('10')
      const unit = page.getByLabel(`Speed unit for ${name} (to send)`)
      expect(await unit.locator('option').allTextContents()).toEqual(formUnits)
      expect(await unit.locator('option:checked').textContent()).toBe('KiB/s')
    }
    // fast.bin gets its own; report.bin follows the form's until it is edited.
    await page.getByLabel('Speed unit for fast.bin (to send)').selectOption({ label: 'MiB/s' })
    await page.getByLabel('Speed for fast.bin (to send)').fill('2')
    await page.getByLabel('Speed', { exact: true }).fill('20')
    expect(await page.getByLabel('Speed for report.bin (to send)').inputValue()).toBe('20')
    expect(await page.getByLabel('Speed for fast.bin (to send)').inputValue()).toBe('2')
    await screenshot(page, 'chosen', viewport)
    await page.getByRole('button', { name: 'Upload', exact: true }).click()

    await waitForStatus(page, 'report.bin', 'in progress')
    await waitForStatus(page, 'fast.bin', 'completed')
    const recorded = await uploadsOnServer(server.url)
    expect(recorded.map((u) => [u.filename, u.targetSpeed])).toEqual([
      ['report.bin', 20 * 1024],
      ['fast.bin', 2 * 1024 * 1024],
    ])
    // The running row shows its target speed with its unit, and its speed field holds it in the same units.
    expect(await row(page, 'report.bin').locator('.target').textContent()).toBe(' / 20 KiB/s')
    expect(await page.getByLabel('Speed for report.bin', { exact: true }).inputValue()).toBe('20')
    expect(await page.getByLabel('Speed unit for report.bin', { exact: true }).inputValue()).toBe('1024')

    // The bar moves: live updates over the subscription, no polling.
    await movedPast(page, 'report.bin', await progressOf(page, 'report.bin'))
    await screenshot(page, 'running', viewport)

    await page.getByRole('button', { name: 'Pause report.bin' }).click()
    await waitForStatus(page, 'report.bin', 'paused')
    const [paused] = await uploadsOnServer(server.url)
    expect(paused?.status).toBe('PAUSED')
    // A paused row resumes at its speed field's speed: here unlimited.
    await page.getByLabel('Speed unit for report.bin', { exact: true }).selectOption({ label: 'unlimited' })
    await page.getByRole('button', { name: 'Resume report.bin' }).click()
    await waitForStatus(page, 'report.bin', 'completed')
    expect(await progressOf(page, 'report.bin')).toBe(report.length)
    expect((await uploadsOnServer(server.url))[0]?.targetSpeed).toBe(0)

    // Ended rows are compact: no speed to edit, no disabled buttons, two Tab stops (Download, Delete).
    const ended = row(page, 'report.bin')
    expect(await ended.locator('input, select').count()).toBe(0)
    expect(await ended.locator('button:disabled, button[hidden]').count()).toBe(0)
    expect(await ended.locator('a[href], button').count()).toBe(2)
    await screenshot(page, 'completed', viewport)

    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('link', { name: 'Download report.bin' }).click(),
    ])
    expect(download.suggestedFilename()).toBe('report.bin')
    expect((await readFile((await download.path())!)).equals(report)).toBe(true)

    // Focus goes to the row that takes a deleted one's place, then to the list's heading.
    await page.getByRole('button', { name: 'Delete report.bin' }).click()
    await confirmIn(page, 'Delete report.bin?', 'Delete file')
    await row(page, 'report.bin').waitFor({ state: 'detached' })
    expect(await focusedName(page)).toBe('fast.bin')
    await page.getByRole('button', { name: 'Delete fast.bin' }).click()
    await confirmIn(page, 'Delete fast.bin?', 'Delete file')
    await page.getByText('No uploads yet.').waitFor()
    expect(await focusedName(page)).toBe('On the server')
    expect(await counts(server.url)).toMatchObject({ total: 0 })
    expect(problems).toEqual([])
  }, 90_000)

  it('shows a file’s sending progress and cancels the send: nothing is recorded', async () => {
    const { page, problems, server } = await session(viewport)
    await page.getByText('No uploads yet.').waitFor()
    await throttleUploads(page, 64 * 1024)
    const requests = recordTus(page, { now: 'sending' })
    await page
      .getByLabel('Choose or drop files')
      .setInputFiles({ name: 'big.bin', mimeType: 'application/octet-stream', buffer: randomBytes(2 << 20) })
    // Whether the Upload button is disabled, each time that changes.
    await page.locator('#upload').evaluate((button) => {
      const states: boolean[] = []
      ;(window as unknown as { states: boolean[] }).states = states
      // Each change on its own (one callback may bring several): disabled after it if it was not before.
      new MutationObserver((changes) => {
        for (const change of changes) states.push(change.oldValue === null)
      }).observe(button, { attributeFilter: ['disabled'], attributeOldValue: true })
    })
    await page.getByRole('button', { name: 'Upload', exact: true }).click()

    // Bytes going up, before the server has a record: a bar of its own, and the overall line says so.
    await page.waitForFunction(
      () =>
        ((document.querySelector('progress[aria-label="Sending big.bin"]') as HTMLProgressElement)?.value ??
          0) > 0,
    )
    expect(await page.locator('#sending').textContent()).toMatch(/^Sending big\.bin: .+ of 2 MiB, \d+ %$/)
    await until('the body to start arriving', async () => (await staged(server.dir)).length > 0)
    // The server has it from its first byte on: a row of its own, receiving.
    await waitForStatus(page, 'big.bin', 'receiving')
    await screenshot(page, 'sending', viewport)
    // Disabled while the send was starting, enabled again once its bytes were on their way.
    expect(await page.getByRole('button', { name: 'Upload', exact: true }).isEnabled()).toBe(true)
    expect(await page.evaluate(() => (window as unknown as { states: boolean[] }).states)).toEqual([
      true,
      false,
    ])

    await page.getByRole('button', { name: 'Cancel sending big.bin' }).click()
    await confirmIn(page, 'Stop sending big.bin?', 'Stop sending')
    await page.getByText('Sending big.bin canceled; nothing was stored').waitFor()
    await page.locator('#sending').waitFor({ state: 'hidden' })
    expect(await page.getByLabel('Sending big.bin', { exact: true }).count()).toBe(0)
    // The send is ended on the server (tus termination), which drops the half-sent bytes and the record.
    await until('the half-sent body to be dropped', async () => (await staged(server.dir)).length === 0)
    expect(await counts(server.url)).toMatchObject({ total: 0 })
    await page.getByText('No uploads yet.').waitFor()
    await page
      .locator('#overall')
      .filter({ hasText: /^No active uploads$/ })
      .waitFor()
    // Ended with tus's termination (DELETE) of the one upload the send made.
    const [made] = requests.filter((r) => r.method === 'POST')
    expect(requests.filter((r) => r.method === 'DELETE').map((r) => r.id)).toEqual([
      requests.find((r) => r.method === 'PATCH')?.id,
    ])
    expect(made).toBeDefined()
    // Nothing left to go on with: choosing big.bin again would send it anew.
    expect(await tusEntries(page)).toEqual([])

    // The next file goes through.
    await throttleUploads(page, -1)
    await page
      .getByLabel('Choose or drop files')
      .setInputFiles({ name: 'small.bin', mimeType: 'application/octet-stream', buffer: randomBytes(4096) })
    await page.getByRole('button', { name: 'Upload', exact: true }).click()
    await waitForStatus(page, 'small.bin', 'completed')
    expect((await uploadsOnServer(server.url)).map((u) => u.filename)).toEqual(['small.bin'])
    expect(problems).toEqual([])
  }, 90_000)

  it('makes one record of a double-clicked Upload', async () => {
    const { page, problems, server } = await session(viewport)
    await page.getByText('No uploads yet.').waitFor()
    await page
      .getByLabel('Choose or drop files')
      .setInputFiles({ name: 'once.bin', mimeType: 'application/octet-stream', buffer: randomBytes(200_000) })
    await page.getByRole('button', { name: 'Upload', exact: true }).dblclick()
    await waitForStatus(page, 'once.bin', 'completed')
    // Everything sent has been answered: no file waits or is on its way.
    await page.waitForFunction(() => !document.querySelector('#queue li.sending'))
    expect((await uploadsOnServer(server.url)).map((u) => u.filename)).toEqual(['once.bin'])
    await page.locator('#queue').waitFor({ state: 'hidden' })
    expect(await row(page, 'once.bin').count()).toBe(1)
    expect(problems).toEqual([])
  }, 60_000)

  it('changes a running upload’s speed without pausing it; focus and typed values survive live updates', async () => {
    const { page, problems, server } = await session(viewport, {
      before: async (s) => {
        await restUpload(s.url, 'notes.txt', 2000, 0)
        await restUpload(s.url, 'backup.tar', 24 << 20, 1 << 20)
        await restUpload(s.url, 'photos.zip', 4 << 20, 24 * 1024)
        const video = await restUpload(s.url, 'video.mp4', 8 << 20, 64 * 1024)
        await rest(s.url, 'POST', `/api/upload/${video.id}/pause`)
        await settled(s.url, { completed: 1 })
      },
    })
    await waitForStatus(page, 'photos.zip', 'in progress')
    await waitForStatus(page, 'video.mp4', 'paused')
    // The overall line follows the rows on its own tick: awaited, not read once.
    await page
      .locator('#overall')
      .filter({ hasText: /^3 active: 2 running, 1 paused · .+\/s in all · .+ left$/ })
      .waitFor()
    await movedPast(page, 'backup.tar', await progressOf(page, 'backup.tar'))
    // For the README's picture, a bar well on its way.
    if (WRITE_DOCS) await movedPast(page, 'backup.tar', 9 << 20)
    await screenshot(page, 'moving', viewport, viewport === 'desktop' ? 'dashboard.png' : undefined)

    // Every status the row shows from now on.
    await row(page, 'photos.zip')
      .locator('td.status')
      .evaluate((cell) => {
        const seen: string[] = [cell.textContent ?? '']
        ;(window as unknown as { seen: string[] }).seen = seen
        new MutationObserver(() => seen.push(cell.textContent ?? '')).observe(cell, {
          childList: true,
          characterData: true,
          subtree: true,
        })
      })
    const field = page.getByLabel('Speed for photos.zip', { exact: true })
    expect(await field.inputValue()).toBe('24')
    expect(await page.getByLabel('Speed unit for photos.zip', { exact: true }).inputValue()).toBe('1024')
    await field.fill('48')
    // Live updates keep coming (the bar moves twice); the typed value and the focus stay.
    const at = await progressOf(page, 'photos.zip')
    await movedPast(page, 'photos.zip', at)
    await movedPast(page, 'photos.zip', await progressOf(page, 'photos.zip'))
    expect(await focusedName(page)).toBe('Speed for photos.zip')
    expect(await field.inputValue()).toBe('48')

    await page.keyboard.press('Enter')
    await row(page, 'photos.zip').locator('.target:text-is(" / 48 KiB/s")').waitFor()
    const photos = (await uploadsOnServer(server.url)).find((u) => u.filename === 'photos.zip')
    expect(photos).toMatchObject({ status: 'IN_PROGRESS', targetSpeed: 48 * 1024 })
    // Still moving, and never paused on the way.
    await movedPast(page, 'photos.zip', await progressOf(page, 'photos.zip'))
    const seen = await page.evaluate(() => (window as unknown as { seen: string[] }).seen)
    expect(new Set(seen)).toEqual(new Set(['in progress']))

    // A paused row keeps its speed for the resume: set while paused, then resumed at it.
    await page.getByLabel('Speed for video.mp4', { exact: true }).fill('128')
    await page.getByRole('button', { name: 'Resume video.mp4' }).click()
    await waitForStatus(page, 'video.mp4', 'in progress')
    expect((await uploadsOnServer(server.url)).find((u) => u.filename === 'video.mp4')?.targetSpeed).toBe(
      128 * 1024,
    )
    expect(problems).toEqual([])
  }, 90_000)

  it('with 200 uploads: filters by status with counts, pages through them, sums them up, stays about two screens tall', async () => {
    const kinds: Kind[] = Array.from({ length: 200 }, (_, i) =>
      i % 25 === 3 ? 'running' : i % 25 === 7 ? 'paused' : i % 25 === 11 ? 'canceled' : 'completed',
    )
    let made: { id: string; filename: string; kind: Kind }[] = []
    const { page, problems, server } = await session(viewport, {
      before: async (s) => {
        made = await makeUploads(s.url, kinds)
        await settled(s.url, { total: 200, completed: 176, inProgress: 8, paused: 8, canceled: 8 })
      },
    })
    const perPage = viewport === 'phone' ? 10 : 25
    // The counts, one per status, in the filter's labels (they come with the first page).
    for (const [label, n] of [
      ['All', 200],
      ['In progress', 8],
      ['Paused', 8],
      ['Completed', 176],
      ['Canceled', 8],
      ['Failed', 0],
    ] as const)
      await page.getByRole('radio', { name: `${label} ${n}`, exact: true }).waitFor({ state: 'attached' })
    // The overall line: what is active, at what rate together, until when.
    await page
      .locator('#overall')
      .filter({ hasText: /^16 active: 8 running, 8 paused · [\d.]+ (B|KiB)\/s in all · .+ left$/ })
      .waitFor()

    const metrics = await measure(page)
    const { height, buttons } = BEFORE[viewport]
    console.log(
      `200 uploads at ${viewport} width: ${metrics.height} px tall (before: ${height}), ` +
        `${metrics.buttons} buttons, ${metrics.visibleButtons} shown (before: ${buttons}), ${metrics.tabStops} Tab stops`,
    )
    expect(metrics.height).toBeLessThanOrEqual(2 * VIEWPORTS[viewport].height)
    // Page 1 leads with the 16 running and paused rows, three buttons each.
    expect(metrics.buttons).toBeLessThan(80)
    expect(metrics.overflow).toBeLessThanOrEqual(0)
    expect(await unlabelled(page)).toEqual([])
    await screenshot(
      page,
      '200',
      viewport,
      viewport === 'desktop' ? 'dashboard-200.png' : 'dashboard-phone.png',
    )

    // Pages: the active uploads first, then the ended ones, each in the server's order.
    await page
      .locator('#page-info')
      .filter({ hasText: `Page 1 of ${200 / perPage} · 1–${perPage} of 200` })
      .waitFor()
    const isActive = (u: { kind: Kind }) => u.kind === 'running' || u.kind === 'paused'
    const active = made.filter(isActive).map((u) => u.filename)
    const ended = made.filter((u) => !isActive(u)).map((u) => u.filename)
    const names = [...active, ...ended]
    expect(await shownNames(page)).toEqual(names.slice(0, perPage))
    await page.getByRole('button', { name: 'Next page' }).click()
    await page.locator('#page-info').filter({ hasText: 'Page 2 of' }).waitFor()
    expect(await shownNames(page)).toEqual(names.slice(perPage, 2 * perPage))
    await page.getByRole('button', { name: 'Last page' }).click()
    await page
      .locator('#page-info')
      .filter({ hasText: `Page ${200 / perPage} of` })
      .waitFor()
    expect(await shownNames(page)).toEqual(names.slice(200 - perPage))
    expect(await page.getByRole('button', { name: 'Next page' }).isDisabled()).toBe(true)
    await page.getByRole('button', { name: 'Previous page' }).click()
    await page
      .locator('#page-info')
      .filter({ hasText: `Page ${200 / perPage - 1} of` })
      .waitFor()
    expect(await shownNames(page)).toEqual(names.slice(200 - 2 * perPage, 200 - perPage))
    await page.getByRole('button', { name: 'First page' }).click()
    await page.locator('#page-info').filter({ hasText: 'Page 1 of' }).waitFor()
    expect(await shownNames(page)).toEqual(names.slice(0, perPage))

    // A new upload joins the end of the active ones: the rows above it do not move.
    const scrolled = await page.evaluate(() => {
      window.scrollTo(0, 300)
      return window.scrollY
    })
    const rowTops = () =>
      page.locator('#uploads tr').evaluateAll((rows) => rows.map((r) => r.getBoundingClientRect().top))
    const tops = await rowTops()
    await restUpload(server.url, 'late.bin', 1 << 20, 1024)
    await page.getByRole('radio', { name: 'All 201', exact: true }).waitFor({ state: 'attached' })
    await page.getByRole('radio', { name: 'In progress 9', exact: true }).waitFor({ state: 'attached' })
    const withLate = [...active, 'late.bin', ...ended].slice(0, perPage)
    await page.waitForFunction(
      (expected) =>
        Array.from(document.querySelectorAll('#uploads td.name'), (c) => c.textContent).join('|') ===
        expected,
      withLate.join('|'),
    )
    expect(await page.evaluate(() => window.scrollY)).toBe(scrolled)
    const above = Math.min(active.length, perPage)
    expect((await rowTops()).slice(0, above)).toEqual(tops.slice(0, above))

    // One status: only its uploads, a page of them; a new one that belongs at its end joins it.
    await page.getByRole('radio', { name: /^Canceled/ }).check()
    await page.waitForFunction(() => {
      const statuses = Array.from(document.querySelectorAll('#uploads td.status'), (c) => c.textContent)
      return statuses.length === 8 && statuses.every((s) => s === 'canceled')
    })
    const canceled = made.filter((u) => u.kind === 'canceled').map((u) => u.filename)
    expect(await shownNames(page)).toEqual(canceled)
    await page.getByRole('radio', { name: /^In progress/ }).check()
    await page.waitForFunction(() => document.querySelectorAll('#uploads tr').length === 9)
    expect(await shownNames(page)).toEqual([
      ...made.filter((u) => u.kind === 'running').map((u) => u.filename),
      'late.bin',
    ])
    const another = await restUpload(server.url, 'later.bin', 1 << 20, 1024)
    await row(page, 'later.bin').waitFor()
    expect((await shownNames(page)).at(-1)).toBe('later.bin')
    await rest(server.url, 'POST', `/api/upload/${another.id}/cancel`)
    await waitForStatus(page, 'later.bin', 'canceled')
    await page.getByRole('radio', { name: 'Canceled 9', exact: true }).waitFor({ state: 'attached' })
    await page.getByRole('radio', { name: /^Failed/ }).check()
    await page.getByText('No failed uploads.').waitFor()
    expect(problems).toEqual([])
  }, 120_000)

  it('clears finished uploads after a dialog, keeping their files or deleting them', async () => {
    const { page, problems, server } = await session(viewport, {
      before: async (s) => {
        await makeUploads(s.url, ['completed', 'completed', 'canceled', 'running', 'completed'])
        await settled(s.url, { completed: 3, canceled: 1, inProgress: 1 })
      },
    })
    const stored = async () => (await uploadsOnServer(server.url)).filter((u) => u.status === 'COMPLETED')
    const keptNames = (await stored()).map((u) => u.storedName)
    expect(keptNames).toHaveLength(3)
    await page.getByRole('radio', { name: 'All 5', exact: true }).waitFor({ state: 'attached' })

    // Escape changes nothing.
    await page.getByRole('button', { name: 'Clear finished…' }).click()
    const dialog = page.getByRole('dialog', { name: 'Clear finished uploads?' })
    await dialog.waitFor()
    expect(await dialog.textContent()).toContain(
      '4 finished uploads will leave the list: 3 completed, 1 canceled, 0 failed',
    )
    expect(await unlabelled(page)).toEqual([])
    await screenshot(page, 'clear-dialog', viewport)
    await page.keyboard.press('Escape')
    await dialog.waitFor({ state: 'hidden' })
    expect(await counts(server.url)).toMatchObject({ total: 5 })

    // Keep the files: the records go, the files stay in the folder.
    await page.getByRole('button', { name: 'Clear finished…' }).click()
    expect(await dialog.getByRole('radio', { name: 'Keep them in the storage folder' }).isChecked()).toBe(
      true,
    )
    await dialog.getByRole('button', { name: 'Clear 4 uploads' }).click()
    await page.getByText('Cleared 4 finished uploads; their files stay in the storage folder').waitFor()
    await page.waitForFunction(() => document.querySelectorAll('#uploads tr').length === 1)
    expect(await shownNames(page)).toEqual(['file-003.bin'])
    expect(await counts(server.url)).toMatchObject({ total: 1, inProgress: 1 })
    for (const name of keptNames) expect(existsSync(join(server.dir, name))).toBe(true)
    // Nothing left to clear: no button for it.
    expect(await page.getByRole('button', { name: 'Clear finished…' }).count()).toBe(0)

    // Delete the files too.
    await makeUploads(server.url, ['completed', 'completed'])
    await settled(server.url, { completed: 2 })
    const doomed = (await stored()).map((u) => u.storedName)
    await page.getByRole('radio', { name: 'Completed 2', exact: true }).waitFor({ state: 'attached' })
    await page.getByRole('button', { name: 'Clear finished…' }).click()
    await dialog.getByRole('radio', { name: 'Delete them too' }).check()
    await dialog.getByRole('button', { name: 'Clear 2 uploads' }).click()
    await page.getByText('Cleared 2 finished uploads; their files were deleted').waitFor()
    expect(await counts(server.url)).toMatchObject({ total: 1, completed: 0 })
    for (const name of doomed) expect(existsSync(join(server.dir, name))).toBe(false)
    for (const name of keptNames) expect(existsSync(join(server.dir, name))).toBe(true)
    expect(problems).toEqual([])
  }, 90_000)

  it('with API_TOKEN: says a token is needed, refuses a wrong one, works with the right one', async () => {
    const token = 'dashboard-test-token-0123456789'
    const { page, problems, server } = await session(viewport, {
      env: { API_TOKEN: token },
      allowStatuses: [401],
    })
    const alert = page.getByRole('alert')
    await alert.filter({ hasText: 'This server needs an access token' }).waitFor()
    // One state: the reason, the token field, nothing that pretends the list is empty.
    expect(await page.getByText('No uploads yet.').isVisible()).toBe(false)
    expect(await page.getByRole('button', { name: 'Upload', exact: true }).isVisible()).toBe(false)
    expect(await page.evaluate(() => (document.activeElement as HTMLInputElement).id)).toBe('token')
    await screenshot(page, 'token-needed', viewport)

    await page.getByLabel('Access token').fill('not-the-token-at-all')
    await page.keyboard.press('Enter')
    await alert.filter({ hasText: 'The access token was refused' }).waitFor()
    expect(await page.getByText('No uploads yet.').isVisible()).toBe(false)

    await page.getByLabel('Access token').fill(token)
    await page.getByRole('button', { name: 'Use token' }).click()
    await page.getByText('No uploads yet.').waitFor()
    expect(await alert.count()).toBe(0)
    // Sending and live updates carry the token.
    await page.getByLabel('Choose or drop files').setInputFiles({
      name: 'secret.bin',
      mimeType: 'application/octet-stream',
      buffer: randomBytes(50_000),
    })
    await page.getByRole('button', { name: 'Upload', exact: true }).click()
    await waitForStatus(page, 'secret.bin', 'completed')
    const link = await page.getByRole('link', { name: 'Download secret.bin' }).getAttribute('href')
    expect((await page.request.get(`${server.url}${link}`)).status()).toBe(200)

    // A reload keeps the token for this tab.
    await page.reload()
    await waitForStatus(page, 'secret.bin', 'completed')
    expect(await alert.count()).toBe(0)
    expect(problems).toEqual([])
  }, 60_000)

  it('asks before Cancel and Delete, naming the file; keeping it (the focused answer, or Escape) changes nothing', async () => {
    const { page, problems, server } = await session(viewport, {
      before: async (s) => {
        await restUpload(s.url, 'keep me.bin', 1 << 20, 1024)
        await restUpload(s.url, 'done.txt', 16, 0)
        await settled(s.url, { completed: 1, inProgress: 1 })
      },
    })
    const mutations: string[] = []
    page.on('request', (request) => {
      const name = /\b(cancelUpload|deleteFile)\b/.exec(request.postData() ?? '')?.[1]
      if (name) mutations.push(name)
    })
    await waitForStatus(page, 'keep me.bin', 'in progress')
    const cancel = page.getByRole('dialog', { name: 'Cancel keep me.bin?', exact: true })
    await page.getByRole('button', { name: 'Cancel keep me.bin' }).click()
    await cancel.waitFor()
    expect(await cancel.textContent()).toContain('a canceled upload cannot be resumed')
    expect(await unlabelled(page)).toEqual([])
    await screenshot(page, 'confirm-cancel', viewport)
    // The safe answer has the focus: Enter keeps the upload, and focus goes back where it was.
    expect(await focusedName(page)).toBe('Keep it going')
    await page.keyboard.press('Enter')
    await cancel.waitFor({ state: 'hidden' })
    expect(await focusedName(page)).toBe('Cancel keep me.bin')
    await page.getByRole('button', { name: 'Cancel keep me.bin' }).click()
    await cancel.waitFor()
    await page.keyboard.press('Escape')
    await cancel.waitFor({ state: 'hidden' })

    const remove = page.getByRole('dialog', { name: 'Delete done.txt?', exact: true })
    await page.getByRole('button', { name: 'Delete done.txt' }).click()
    await remove.waitFor()
    expect(await remove.textContent()).toContain('its stored file (16 B) are deleted')
    await remove.getByRole('button', { name: 'Keep it', exact: true }).click()
    await remove.waitFor({ state: 'hidden' })
    // A round trip later, nothing was asked of the server and both are as they were.
    expect(await counts(server.url)).toMatchObject({ total: 2, inProgress: 1, completed: 1 })
    expect(mutations).toEqual([])
    expect(await statusOf(page, 'keep me.bin')).toBe('in progress')
    expect(await row(page, 'done.txt').count()).toBe(1)

    // Yes does it.
    await page.getByRole('button', { name: 'Cancel keep me.bin' }).click()
    await confirmIn(page, 'Cancel keep me.bin?', 'Cancel upload')
    await waitForStatus(page, 'keep me.bin', 'canceled')
    await page.getByRole('button', { name: 'Delete done.txt' }).click()
    await confirmIn(page, 'Delete done.txt?', 'Delete file')
    await row(page, 'done.txt').waitFor({ state: 'detached' })
    expect(mutations).toEqual(['cancelUpload', 'deleteFile'])
    expect(await counts(server.url)).toMatchObject({ total: 1, canceled: 1 })
    expect(problems).toEqual([])
  }, 60_000)

  it('shows the files chosen until they are sent, and beside Upload what this page is sending now', async () => {
    const { page, problems } = await session(viewport)
    await page.getByText('No uploads yet.').waitFor()
    const chosen = page.locator('#chosen')
    const sending = page.locator('#sending')
    expect(await chosen.textContent()).toBe('No file chosen')
    await throttleUploads(page, 32 * 1024)
    await page.getByLabel('Choose or drop files').setInputFiles([
      { name: 'alpha.bin', mimeType: 'application/octet-stream', buffer: randomBytes(512 * 1024) },
      { name: 'bravo.bin', mimeType: 'application/octet-stream', buffer: randomBytes(256 * 1024) },
      { name: 'charlie report.pdf', mimeType: 'application/pdf', buffer: randomBytes(128 * 1024) },
    ])
    expect(await chosen.textContent()).toBe('3 files chosen: alpha.bin, bravo.bin, charlie report.pdf')
    await page.getByRole('button', { name: 'Remove bravo.bin' }).click()
    expect(await chosen.textContent()).toBe('2 files chosen: alpha.bin, charlie report.pdf')
    expect(await sending.isVisible()).toBe(false)
    await page.getByRole('button', { name: 'Upload', exact: true }).click()
    await chosen.filter({ hasText: /^No file chosen$/ }).waitFor()

    // What is true now: two files on their way, one of them being sent, and how far they are together.
    await sending.filter({ hasText: /^Sending 2 files \(now alpha\.bin\): .+ of 640 KiB, \d+ %$/ }).waitFor()
    await screenshot(page, 'sending-line', viewport)
    await page.getByRole('button', { name: 'Cancel sending alpha.bin' }).click()
    await confirmIn(page, 'Stop sending alpha.bin?', 'Stop sending')
    await sending.filter({ hasText: /^Sending charlie report\.pdf: .+ of 128 KiB, \d+ %$/ }).waitFor()
    await throttleUploads(page, -1)
    await waitForStatus(page, 'charlie report.pdf', 'completed')
    // Nothing is being sent: the line is gone, and nothing claims a file is still on its way.
    await sending.waitFor({ state: 'hidden' })
    expect(await page.locator('#message').textContent()).toBe(
      'Sending alpha.bin canceled; nothing was stored',
    )
    expect(problems).toEqual([])
  }, 90_000)

  it('keeps its layout while uploads move: columns stay, a percentage keeps clear of its bar, ended rows show their outcome and keep their actions on their line', async () => {
    const { page, problems, server } = await session(viewport, {
      before: async (s) => {
        await restUpload(s.url, 'a rather long file name, for the layout.bin', 20 * 1024, 0)
        const stopped = await restUpload(s.url, 'stopped midway.bin', 1 << 20, 256 * 1024)
        await until('it to be partly copied', async () => {
          const { upload } = await gql<{ upload: { uploadedSize: number } }>(
            s.url,
            `query ($id: ID!) { upload(id: $id) { uploadedSize } }`,
            { id: stopped.id },
          )
          return upload.uploadedSize > 0
        })
        await rest(s.url, 'POST', `/api/upload/${stopped.id}/cancel`)
        await settled(s.url, { completed: 1, canceled: 1 })
      },
    })
    await waitForStatus(page, 'stopped midway.bin', 'canceled')
    const columns = () =>
      page
        .locator('#table thead th')
        .evaluateAll((cells) => cells.map((c) => Math.round(c.getBoundingClientRect().left)))
    const before = await columns()

    await restUpload(server.url, 'moving.bin', 8 << 20, 64 * 1024)
    await waitForStatus(page, 'moving.bin', 'in progress')
    await movedPast(page, 'moving.bin', 0)
    await screenshot(page, 'layout', viewport)
    // Wide: the columns are where they were before a running row came.
    if (viewport === 'desktop') expect(await columns()).toEqual(before)

    // The running row's percentage keeps clear of its bar.
    const gap = await row(page, 'moving.bin')
      .locator('td.progress')
      .evaluate((cell) => {
        const bar = cell.querySelector('progress')!.getBoundingClientRect()
        const range = document.createRange()
        range.selectNodeContents(cell.querySelector('.percent')!)
        return range.getBoundingClientRect().left - bar.right
      })
    expect(gap).toBeGreaterThanOrEqual(6)

    // An ended row says how it ended, not where it stopped.
    expect(await row(page, 'stopped midway.bin').locator('td.progress').textContent()).toBe('')
    expect(await statusOf(page, 'stopped midway.bin')).toBe('canceled')

    // Each ended row's actions sit on the line of its facts (at phone width too).
    for (const name of ['a rather long file name, for the layout.bin', 'stopped midway.bin']) {
      const [status, actions] = await Promise.all(
        ['td.status', '.actions'].map((selector) =>
          row(page, name)
            .locator(selector)
            .evaluate((el) => {
              const box = el.getBoundingClientRect()
              return { top: box.top, bottom: box.bottom }
            }),
        ),
      )
      expect(actions!.top, name).toBeLessThan(status!.bottom)
      expect(actions!.bottom, name).toBeGreaterThan(status!.top)
    }
    expect((await measure(page)).overflow).toBeLessThanOrEqual(0)
    expect(problems).toEqual([])
  }, 60_000)

  it('works from the keyboard: choose, send, set a speed, pause, resume', async () => {
    const { page, problems } = await session(viewport)
    await page.getByText('No uploads yet.').waitFor()
    await page
      .getByLabel('Choose or drop files')
      .setInputFiles({ name: 'keys.txt', mimeType: 'text/plain', buffer: Buffer.alloc(400_000, 1) })
    await page.getByLabel('Choose or drop files').focus()
    const order: (string | null | undefined)[] = []
    const tab = async () => {
      await page.keyboard.press('Tab')
      order.push(await focusedName(page))
    }
    // The form's speed: 8 KiB/s, typed and chosen with keys; the chosen file follows it.
    await tab()
    await page.keyboard.press('Control+A')
    await page.keyboard.type('8')
    await tab()
    await page.keyboard.press('ArrowUp')
    for (let i = 0; i < 4; i++) await tab()
    expect(order).toEqual([
      'Speed',
      'Speed unit',
      'Speed for keys.txt (to send)',
      'Speed unit for keys.txt (to send)',
      'Remove keys.txt',
      'Upload',
    ])
    expect(await page.getByLabel('Speed for keys.txt (to send)').inputValue()).toBe('8')
    expect(await page.getByLabel('Speed unit for keys.txt (to send)').inputValue()).toBe('1024')
    await page.keyboard.press('Enter')
    await waitForStatus(page, 'keys.txt', 'in progress')
    // Focus is back on Upload (it was disabled for a moment while the send started).
    await page.waitForFunction(() => document.activeElement?.id === 'upload')
    expect(await row(page, 'keys.txt').locator('.target').textContent()).toBe(' / 8 KiB/s')

    // Into the list: the row's speed, Enter sets it; Pause; focus lands on Resume.
    for (let i = 0; i < 12 && (await focusedName(page)) !== 'Speed for keys.txt'; i++)
      await page.keyboard.press('Tab')
    expect(await focusedName(page)).toBe('Speed for keys.txt')
    await page.keyboard.press('Control+A')
    await page.keyboard.type('4')
    await page.keyboard.press('Enter')
    await row(page, 'keys.txt').locator('.target:text-is(" / 4 KiB/s")').waitFor()
    for (let i = 0; i < 4 && (await focusedName(page)) !== 'Pause keys.txt'; i++)
      await page.keyboard.press('Tab')
    await page.keyboard.press('Enter')
    await waitForStatus(page, 'keys.txt', 'paused')
    await page.waitForFunction(() => document.activeElement?.getAttribute('aria-label') === 'Resume keys.txt')
    await page.keyboard.press('Enter')
    await waitForStatus(page, 'keys.txt', 'in progress')
    expect(await unlabelled(page)).toEqual([])
    expect((await measure(page)).overflow).toBeLessThanOrEqual(0)
    await page.getByRole('button', { name: 'Cancel keys.txt' }).click()
    await confirmIn(page, 'Cancel keys.txt?', 'Cancel upload')
    await waitForStatus(page, 'keys.txt', 'canceled')
    expect(await statusOf(page, 'keys.txt')).toBe('canceled')
    expect(problems).toEqual([])
  }, 60_000)
})

/** What the server says of its uploads, with how much of each has arrived. */
const arrivals = async (url: string) =>
  (
    await gql<{
      uploads: {
        id: string
        filename: string
        status: string
        receivedSize: number
        targetSpeed: number
        storedName: string
      }[]
    }>(url, '{ uploads { id filename status receivedSize targetSpeed storedName } }')
  ).uploads

/** What a page logs while its server is out of reach (by design here): requests refused, cut or offline. */
const LOST = [
  'CONNECTION_REFUSED',
  'CONNECTION_RESET',
  'CONNECTION_CLOSED',
  'EMPTY_RESPONSE',
  'SOCKET_NOT_CONNECTED',
]
const lostConnection = (problem: string) =>
  LOST.some((code) => problem === `console: Failed to load resource: net::ERR_${code}`) ||
  /^console: WebSocket connection to '[^']+' failed/.test(problem)

describe('the dashboard sends over tus (resumable)', () => {
  it('goes on from the server’s offset when the server stops mid-send and starts again: one upload, never started over', async () => {
    const server = await restartableServer()
    const open: { page?: Page } = {}
    onTestFinished(async (context) => {
      // The server's own account, for a failure that is its doing.
      if (context.task.result?.state === 'fail') console.log(`server log:\n${server.current().output()}`)
      await open.page?.close()
      await server.stop()
    })
    const { page, problems } = await openDashboard(browser, server.url, 'desktop')
    open.page = page
    page.setDefaultTimeout(30_000)
    await page.getByText('No uploads yet.').waitFor()
    const phase = { now: 'before' }
    const requests = recordTus(page, phase)
    await throttleUploads(page, 256 * 1024)
    const content = randomBytes(4 << 20)
    await page.getByLabel('Speed unit', { exact: true }).selectOption({ label: 'unlimited' })
    await page
      .getByLabel('Choose or drop files')
      .setInputFiles({ name: 'across.bin', mimeType: 'application/octet-stream', buffer: content })
    await page.getByRole('button', { name: 'Upload', exact: true }).click()

    // Receiving: the row shows what the server has, while the page is still sending.
    await waitForStatus(page, 'across.bin', 'receiving')
    const arrived = await until(
      'a MiB to arrive',
      async () => {
        const [upload] = await arrivals(server.url)
        return upload?.status === 'RECEIVING' && upload.receivedSize >= 1 << 20 && upload
      },
      60_000,
    )
    await movedPast(page, 'across.bin', 0)
    expect(await row(page, 'across.bin').locator('td.progress').textContent()).toMatch(/\d+ % in$/)

    // The server goes away mid-request: the page keeps trying, and says so.
    await server.kill('SIGKILL')
    phase.now = 'after'
    await page.locator('#queue li.retrying').filter({ hasText: 'connection lost, trying again' }).waitFor()
    expect(await page.getByRole('button', { name: 'Cancel sending across.bin' }).isVisible()).toBe(true)
    await screenshot(page, 'retrying', 'desktop')

    // Back on the same port and folder: the page finds it by itself and sends only the rest.
    await server.start()
    await waitForStatus(page, 'across.bin', 'completed', 120_000)
    const patches = requests.filter((r) => r.method === 'PATCH')
    const resumedAt = patches.find((r) => r.phase === 'after')?.offset
    // It asked where to go on from (HEAD), and went on from there: well past the start.
    expect(requests.some((r) => r.method === 'HEAD' && r.phase === 'after')).toBe(true)
    expect(resumedAt).toBeGreaterThanOrEqual(512 * 1024)
    expect(patches.filter((r) => r.phase === 'after').every((r) => (r.offset ?? 0) >= resumedAt!)).toBe(true)
    // One upload, made once, carried to the end under the same id.
    expect(requests.filter((r) => r.method === 'POST')).toHaveLength(1)
    expect(new Set(requests.filter((r) => r.method !== 'POST').map((r) => r.id))).toEqual(
      new Set([arrived.id]),
    )
    const stored = await arrivals(server.url)
    expect(stored.map((u) => [u.id, u.status])).toEqual([[arrived.id, 'COMPLETED']])
    expect((await readFile(join(server.dir, stored[0]!.storedName))).equals(content)).toBe(true)
    // Sent in full: nothing is kept to go on with.
    await page.locator('#queue').waitFor({ state: 'hidden' })
    expect(await tusEntries(page)).toEqual([])
    expect(problems.filter((problem) => !lostConnection(problem))).toEqual([])
  }, 180_000)

  it('goes on from the server’s offset after the network drops mid-send and comes back', async () => {
    const server = await startServer()
    const proxy = await cutProxy(server.url)
    const open: { page?: Page } = {}
    onTestFinished(async () => {
      await open.page?.close()
      await proxy.close()
      await server.stop()
    })
    // The page reaches the server through a network that the test can drop.
    const { page, problems } = await openDashboard(browser, proxy.url, 'desktop')
    open.page = page
    page.setDefaultTimeout(30_000)
    await page.getByText('No uploads yet.').waitFor()
    const phase = { now: 'before' }
    const requests = recordTus(page, phase)
    await throttleUploads(page, 256 * 1024)
    const content = randomBytes(2 << 20)
    await page.getByLabel('Speed unit', { exact: true }).selectOption({ label: 'unlimited' })
    await page
      .getByLabel('Choose or drop files')
      .setInputFiles({ name: 'dropped.bin', mimeType: 'application/octet-stream', buffer: content })
    await page.getByRole('button', { name: 'Upload', exact: true }).click()
    const arrived = await until(
      'half a MiB to arrive',
      async () => {
        const [upload] = await arrivals(server.url)
        return upload?.status === 'RECEIVING' && upload.receivedSize >= 512 * 1024 && upload
      },
      60_000,
    )

    // The network drops: the request under way is cut off, and the page keeps trying while it is down.
    proxy.cut()
    phase.now = 'after'
    await page.locator('#queue li.retrying').filter({ hasText: 'connection lost, trying again' }).waitFor()
    // The server keeps what arrived, and waits for the rest.
    const kept = await until('the cut-off request to end on the server', async () => {
      const upload = await server.app.service.get(arrived.id)
      return upload?.status === 'RECEIVING' && upload.receivedSize >= 512 * 1024 && upload.receivedSize
    })

    // Back: the next attempt asks where to go on from, and sends only the rest.
    proxy.restore()
    await waitForStatus(page, 'dropped.bin', 'completed', 90_000)
    const resumedAt = requests.find((r) => r.method === 'PATCH' && r.phase === 'after')?.offset
    expect(resumedAt).toBe(kept)
    expect(requests.filter((r) => r.method === 'HEAD' && r.phase === 'after').length).toBeGreaterThan(0)
    expect(requests.filter((r) => r.method === 'POST')).toHaveLength(1)
    const stored = await arrivals(server.url)
    expect(stored.map((u) => [u.id, u.status])).toEqual([[arrived.id, 'COMPLETED']])
    expect((await readFile(join(server.dir, stored[0]!.storedName))).equals(content)).toBe(true)
    expect(problems.filter((problem) => !lostConnection(problem))).toEqual([])
  }, 120_000)

  it('stops its send when the upload is canceled on the server while it arrives, and makes no new one', async () => {
    // The send hears of it as tus does: its upload is gone (410 or 404).
    const { page, problems, server } = await session('desktop', { allowStatuses: [404, 410] })
    page.setDefaultTimeout(30_000)
    await page.getByText('No uploads yet.').waitFor()
    const requests = recordTus(page, { now: 'sending' })
    await throttleUploads(page, 128 * 1024)
    await page.getByLabel('Choose or drop files').setInputFiles({
      name: 'stopped.bin',
      mimeType: 'application/octet-stream',
      buffer: randomBytes(2 << 20),
    })
    await page.getByRole('button', { name: 'Upload', exact: true }).click()
    await waitForStatus(page, 'stopped.bin', 'receiving')
    await movedPast(page, 'stopped.bin', 0)

    // Canceled from its row (or by anyone else): the page stops sending and says why.
    await page.getByRole('button', { name: 'Cancel stopped.bin' }).click()
    await confirmIn(page, 'Cancel stopped.bin?', 'Cancel upload')
    await waitForStatus(page, 'stopped.bin', 'canceled')
    await page
      .getByText(
        'stopped.bin was not sent: the server no longer has this upload (it was canceled, failed or expired there)',
      )
      .waitFor()
    await page.locator('#queue').waitFor({ state: 'hidden' })
    // No new upload in its place, and nothing kept to go on with.
    expect(requests.filter((r) => r.method === 'POST')).toHaveLength(1)
    expect(await counts(server.url)).toMatchObject({ total: 1, canceled: 1 })
    await page.waitForFunction(() => !Object.keys(localStorage).some((key) => key.startsWith('tus::')))
    expect(await staged(server.dir)).toEqual([])
    expect(problems.filter((problem) => !lostConnection(problem))).toEqual([])
  }, 90_000)

  it('goes on after a page reload when the same file is chosen again (its fingerprint kept in localStorage)', async () => {
    const { page, problems, server } = await session('desktop')
    const folder = await mkdtemp(join(tmpdir(), 'dashboard-files-'))
    onTestFinished(() => rm(folder, { recursive: true, force: true }))
    const content = randomBytes(3 << 20)
    const file = join(folder, 'again.bin')
    await writeFile(file, content)
    page.setDefaultTimeout(30_000)
    await page.getByText('No uploads yet.').waitFor()
    const phase = { now: 'before' }
    const requests = recordTus(page, phase)
    await throttleUploads(page, 256 * 1024)
    await page.getByLabel('Speed unit', { exact: true }).selectOption({ label: 'unlimited' })
    await page.getByLabel('Choose or drop files').setInputFiles(file)
    await page.getByRole('button', { name: 'Upload', exact: true }).click()
    await waitForStatus(page, 'again.bin', 'receiving')
    const arrived = await until(
      'half a MiB to arrive',
      async () => {
        const [upload] = await arrivals(server.url)
        return upload?.status === 'RECEIVING' && upload.receivedSize >= 512 * 1024 && upload
      },
      60_000,
    )
    expect(await tusEntries(page)).toHaveLength(1)

    // A reload ends the send; the page names the file to choose again.
    phase.now = 'after'
    await page.reload()
    await page.locator('#unfinished').filter({ hasText: 'again.bin' }).waitFor()
    expect(await page.locator('#unfinished').textContent()).toBe(
      'Not sent in full from this browser: again.bin (3 MiB). ' +
        'Choose it again to send the rest; the server keeps what arrived.',
    )
    await waitForStatus(page, 'again.bin', 'receiving')
    expect(await tusEntries(page)).toHaveLength(1)
    await screenshot(page, 'unfinished', 'desktop')

    // Chosen again (at another speed): it goes on where the server has it, at the speed chosen now.
    await page.getByLabel('Speed', { exact: true }).fill('2')
    await page.getByLabel('Speed unit', { exact: true }).selectOption({ label: 'MiB/s' })
    await page.getByLabel('Choose or drop files').setInputFiles(file)
    await page.getByRole('button', { name: 'Upload', exact: true }).click()
    await page.getByText('again.bin: the send went on from where the server had it').waitFor()
    await page.locator('#unfinished').waitFor({ state: 'hidden' })
    await waitForStatus(page, 'again.bin', 'completed', 90_000)
    const resumedAt = requests.find((r) => r.method === 'PATCH' && r.phase === 'after')?.offset
    expect(resumedAt).toBeGreaterThanOrEqual(256 * 1024)
    expect(requests.filter((r) => r.method === 'POST')).toHaveLength(1)
    const stored = await arrivals(server.url)
    expect(stored.map((u) => [u.id, u.status, u.targetSpeed])).toEqual([[arrived.id, 'COMPLETED', 2 << 20]])
    expect((await readFile(join(server.dir, stored[0]!.storedName))).equals(content)).toBe(true)
    await page.locator('#queue').waitFor({ state: 'hidden' })
    expect(await tusEntries(page)).toEqual([])
    expect(problems).toEqual([])
  }, 120_000)
})
