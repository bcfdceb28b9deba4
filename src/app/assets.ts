import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { openApiDocument } from '../rest/openapi.js'

export interface Asset {
  type: string
  body: string | Buffer
  /** Content-Security-Policy; by default only this server, nothing inline. */
  csp?: string
}

const require = createRequire(import.meta.url)

/** Built by `npm run build` (scripts/build-web.mjs); from source, the same folder under dist/. */
const WEB = new URL(import.meta.url.endsWith('.ts') ? '../../dist/web/' : '../web/', import.meta.url)

// swagger-ui sets style attributes as it renders, so its page allows inline styles (and nothing else inline).
const DOCS_CSP = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:"

const DOCS_PAGE = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <title>REST API: throttled upload service</title>
    <link rel="icon" href="/favicon.svg" />
    <link rel="stylesheet" href="/api/docs/swagger-ui.css" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="/api/docs/swagger-ui-bundle.js"></script>
    <script src="/api/docs/init.js"></script>
  </body>
</html>
`
const DOCS_INIT = `window.ui = SwaggerUIBundle({ url: '/api/openapi.json', dom_id: '#swagger-ui', deepLinking: true })\n`

const FAVICON = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" fill="#1f6feb"/><path d="M16 7l-7 8h5v9h4v-9h5z" fill="#fff"/></svg>\n`

const swagger = (name: string) =>
  readFile(join(dirname(require.resolve('swagger-ui-dist/package.json')), name))
const web = (name: string) => readFile(new URL(name, WEB))

/** Every page and file the server serves besides its APIs; each is read when first asked for, then kept. */
const SOURCES: Record<string, () => Promise<Asset>> = {
  '/': async () => ({ type: 'text/html; charset=utf-8', body: await web('index.html') }),
  '/dashboard/app.js': async () => ({ type: 'text/javascript; charset=utf-8', body: await web('app.js') }),
  '/dashboard/style.css': async () => ({ type: 'text/css; charset=utf-8', body: await web('style.css') }),
  '/favicon.svg': async () => ({ type: 'image/svg+xml', body: FAVICON }),
  '/favicon.ico': async () => ({ type: 'image/svg+xml', body: FAVICON }),
  '/api/openapi.json': async () => ({
    type: 'application/json',
    body: `${JSON.stringify(openApiDocument(), null, 2)}\n`,
  }),
  '/api/docs': async () => ({ type: 'text/html; charset=utf-8', body: DOCS_PAGE, csp: DOCS_CSP }),
  '/api/docs/init.js': async () => ({ type: 'text/javascript; charset=utf-8', body: DOCS_INIT }),
  '/api/docs/swagger-ui.css': async () => ({
    type: 'text/css; charset=utf-8',
    body: await swagger('swagger-ui.css'),
  }),
  '/api/docs/swagger-ui-bundle.js': async () => ({
    type: 'text/javascript; charset=utf-8',
    body: await swagger('swagger-ui-bundle.js'),
  }),
}

const loaded = new Map<string, Promise<Asset>>()

export const isAsset = (pathname: string) => Object.hasOwn(SOURCES, pathname)

/** The asset at `pathname`; rejects when its file is missing (a dashboard that was never built). */
export function asset(pathname: string): Promise<Asset> {
  let found = loaded.get(pathname)
  if (!found) {
    const source = SOURCES[pathname]
    if (!source) return Promise.reject(new Error(`${pathname} is not an asset`))
    found = source()
    loaded.set(pathname, found)
    // A failure is not kept: the next request tries again (after `npm run build`, say).
    found.catch(() => loaded.delete(pathname))
  }
  return found
}
