import { existsSync } from 'node:fs'
import { mkdir, readFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { chromium, type Browser, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startServer, type TestServer } from './support/server.js'

const CHROMIUM = '/usr/bin/chromium'
const ARTIFACTS = new URL('../test-artifacts/', import.meta.url).pathname

// .ci/run installs Debian's chromium; a machine without it says so rather than passing quietly.
const hasChromium = existsSync(CHROMIUM)
if (!hasChromium)
  console.warn(`dashboard tests skipped: ${CHROMIUM} is missing (apt-get install -y chromium)`)

let server: TestServer
let browser: Browser
beforeAll(async () => {
  if (!hasChromium) return
  await mkdir(ARTIFACTS, { recursive: true })
  server = await startServer()
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  })
}, 60_000)
afterAll(async () => {
  await browser?.close()
  await server?.stop()
})

const progressOf = (page: Page, name: string) =>
  page.getByLabel(`Progress of ${name}`).evaluate((el) => (el as HTMLProgressElement).value)

describe.skipIf(!hasChromium)('the dashboard in a real browser', () => {
  it('uploads a file, shows it moving, pauses, resumes faster, completes, downloads and deletes it', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 }, acceptDownloads: true })
    const errors: string[] = []
    page.on('pageerror', (error) => errors.push(error.message))
    await page.goto(`${server.url}/`)
    await expect(page.getByRole('heading', { name: 'Uploads' }).isVisible()).resolves.toBe(true)

    const content = randomBytes(120 * 1024)
    await page
      .getByLabel('Choose or drop files')
      .setInputFiles({ name: 'report.bin', mimeType: 'application/octet-stream', buffer: content })
    await page.getByLabel('Speed', { exact: true }).fill('20')
    await page.getByLabel('Speed unit').selectOption({ label: 'KiB/s' })
    await page.getByRole('button', { name: 'Upload' }).click()

    // The bar moves: live updates over the subscription, no polling.
    await page.getByText('in progress').waitFor()
    const first = await progressOf(page, 'report.bin')
    await page.waitForFunction(
      (start) => ((document.querySelector('progress') as HTMLProgressElement | null)?.value ?? 0) > start,
      first,
      { timeout: 5000 },
    )
    await page.screenshot({ path: `${ARTIFACTS}dashboard-running.png` })

    await page.getByRole('button', { name: 'Pause report.bin' }).click()
    await page.getByText('paused').waitFor()
    const paused = await progressOf(page, 'report.bin')
    await page.waitForTimeout(400)
    expect(await progressOf(page, 'report.bin')).toBe(paused)

    await page.getByLabel('Resume speed for report.bin in KiB/s (0 = unlimited)').fill('0')
    await page.getByRole('button', { name: 'Resume report.bin' }).click()
    await page.getByText('completed').waitFor({ timeout: 10_000 })
    expect(await progressOf(page, 'report.bin')).toBe(content.length)
    await page.screenshot({ path: `${ARTIFACTS}dashboard-completed.png` })

    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('link', { name: 'Download report.bin' }).click(),
    ])
    expect(download.suggestedFilename()).toBe('report.bin')
    expect((await readFile((await download.path())!)).equals(content)).toBe(true)

    await page.getByRole('button', { name: 'Delete report.bin' }).click()
    await page.getByText('No uploads yet.').waitFor()
    expect(errors).toEqual([])
    await page.close()
  }, 60_000)

  it('is usable at phone width and from the keyboard, with every control labelled', async () => {
    const page = await browser.newPage({ viewport: { width: 390, height: 844 } })
    await page.goto(`${server.url}/`)
    await page
      .getByLabel('Choose or drop files')
      .setInputFiles({ name: 'phone.txt', mimeType: 'text/plain', buffer: Buffer.alloc(50_000, 1) })
    await page.getByLabel('Speed unit').selectOption({ label: 'KiB/s' })
    await page.getByLabel('Speed', { exact: true }).fill('10')
    // Keyboard only: focus the Upload button with Tab and press Enter.
    await page.getByLabel('Access token').focus()
    await page.keyboard.press('Tab')
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Upload')
    await page.keyboard.press('Enter')
    await page.getByText('in progress').waitFor()
    const unlabelled = await page.evaluate(
      () =>
        Array.from(document.querySelectorAll('input, select, button, progress')).filter(
          (el) =>
            !el.getAttribute('aria-label') &&
            !(el as HTMLInputElement).labels?.length &&
            !el.textContent?.trim(),
        ).length,
    )
    expect(unlabelled).toBe(0)
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
    expect(overflow).toBeLessThanOrEqual(0)
    await page.screenshot({ path: `${ARTIFACTS}dashboard-phone.png`, fullPage: true })
    await page.getByRole('button', { name: 'Cancel phone.txt' }).click()
    await page.getByText('canceled').waitFor()
    await page.close()
  }, 60_000)
})
