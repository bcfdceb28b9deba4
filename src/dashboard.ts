import { build } from 'esbuild'
import { readFile } from 'node:fs/promises'

const WEB = new URL('../web/', import.meta.url)

export interface Asset {
  type: string
  body: string
  /** Content-Security-Policy; by default only this server, nothing inline. */
  csp?: string
}

/**
 * The dashboard's files, built once at start-up: web/app.ts bundled by esbuild (graphql-ws's client
 * included) in memory, so `npm start` needs no build step and the page needs no network beyond this server.
 */
export async function buildDashboard(): Promise<Map<string, Asset>> {
  const bundle = await build({
    entryPoints: [new URL('app.ts', WEB).pathname],
    bundle: true,
    format: 'esm',
    target: 'es2022',
    minify: true,
    write: false,
    logLevel: 'silent',
  })
  const js = bundle.outputFiles[0]?.text ?? ''
  return new Map([
    ['/', { type: 'text/html; charset=utf-8', body: await readFile(new URL('index.html', WEB), 'utf8') }],
    ['/dashboard/app.js', { type: 'text/javascript; charset=utf-8', body: js }],
    [
      '/dashboard/style.css',
      { type: 'text/css; charset=utf-8', body: await readFile(new URL('style.css', WEB), 'utf8') },
    ],
  ])
}
