import { randomBytes } from 'node:crypto'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { launchChromium } from './support/browser.js'
import { openDashboard, shownNames } from './support/dashboard-page.js'
import { waitFor } from './support/clients.js'
import { startServer, type TestServer } from './support/server.js'
import { makeKey, mintToken, serveJwks, AUDIENCE, ISSUER, type JwksEndpoint } from './support/tokens.js'

/* The dashboard with per-user tokens (issue 24): after its token field, each user sees only their own uploads. */

let browser: Browser
let jwks: JwksEndpoint
let server: TestServer
let alice: string
let bob: string

beforeAll(async () => {
  browser = await launchChromium()
  const key = await makeKey('ES256')
  jwks = await serveJwks([key])
  server = await startServer({
    AUTH_JWKS_URL: jwks.url,
    AUTH_ISSUER: ISSUER,
    AUTH_AUDIENCE: AUDIENCE,
    AUTH_LINK_SECRET: 'l'.repeat(32),
  })
  alice = await mintToken(key, 'alice')
  bob = await mintToken(key, 'bob')
}, 60_000)

afterAll(async () => {
  await browser?.close()
  await server?.stop()
  await jwks?.close()
})

async function upload(token: string, name: string) {
  const form = new FormData()
  form.append('file', new Blob([randomBytes(100)]), name)
  const response = await fetch(`${server.url}/api/upload`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}` },
    body: form,
  })
  expect(response.status).toBe(200)
}

async function signIn(token: string): Promise<{ page: Page; problems: string[] }> {
  const opened = await openDashboard(browser, server.url, 'desktop', { allowStatuses: [401] })
  await opened.page.getByRole('alert').filter({ hasText: 'This server needs an access token' }).waitFor()
  await opened.page.getByLabel('Access token').fill(token)
  await opened.page.getByRole('button', { name: 'Use token' }).click()
  return opened
}

describe('dashboard with per-user tokens', () => {
  it('shows each user only their own uploads, live, and their own download links work', async () => {
    await upload(alice, 'alice-1.bin')
    await upload(bob, 'bob-1.bin')
    const a = await signIn(alice)
    const b = await signIn(bob)
    try {
      await a.page.locator('#uploads td.name', { hasText: 'alice-1.bin' }).waitFor()
      await b.page.locator('#uploads td.name', { hasText: 'bob-1.bin' }).waitFor()
      // Live: a new upload of each shows up on its owner's page only.
      await upload(alice, 'alice-2.bin')
      await upload(bob, 'bob-2.bin')
      await a.page.locator('#uploads td.name', { hasText: 'alice-2.bin' }).waitFor()
      await b.page.locator('#uploads td.name', { hasText: 'bob-2.bin' }).waitFor()
      await waitFor(async () => (await shownNames(a.page)).length === 2)
      expect((await shownNames(a.page)).sort()).toEqual(['alice-1.bin', 'alice-2.bin'])
      expect((await shownNames(b.page)).sort()).toEqual(['bob-1.bin', 'bob-2.bin'])
      const link = a.page.getByRole('link', { name: 'Download alice-1.bin' })
      await link.waitFor()
      const href = (await link.getAttribute('href')) ?? ''
      expect((await a.page.request.get(new URL(href, server.url).href)).status()).toBe(200)
      expect(a.problems).toEqual([])
      expect(b.problems).toEqual([])
    } finally {
      await a.page.close()
      await b.page.close()
    }
  }, 90_000)
})
