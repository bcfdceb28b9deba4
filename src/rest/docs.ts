import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import type { Asset } from '../dashboard.js'
import { openApiDocument } from './openapi.js'

const require = createRequire(import.meta.url)

// swagger-ui sets style attributes as it renders, so its page allows inline styles (and nothing else inline).
const DOCS_CSP = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:"

const PAGE = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <title>REST API: throttled upload service</title>
    <link rel="stylesheet" href="/api/docs/swagger-ui.css" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="/api/docs/swagger-ui-bundle.js"></script>
    <script src="/api/docs/init.js"></script>
  </body>
</html>
`
const INIT = `window.ui = SwaggerUIBundle({ url: '/api/openapi.json', dom_id: '#swagger-ui', deepLinking: true })\n`

/** /api/openapi.json and an interactive page for it at /api/docs (swagger-ui-dist, served from here). */
export async function buildApiDocs(): Promise<Map<string, Asset>> {
  const dist = dirname(require.resolve('swagger-ui-dist/package.json'))
  const file = (name: string) => readFile(join(dist, name), 'utf8')
  return new Map<string, Asset>([
    ['/api/openapi.json', { type: 'application/json', body: JSON.stringify(openApiDocument(), null, 2) }],
    ['/api/docs', { type: 'text/html; charset=utf-8', body: PAGE, csp: DOCS_CSP }],
    ['/api/docs/init.js', { type: 'text/javascript; charset=utf-8', body: INIT }],
    ['/api/docs/swagger-ui.css', { type: 'text/css; charset=utf-8', body: await file('swagger-ui.css') }],
    [
      '/api/docs/swagger-ui-bundle.js',
      { type: 'text/javascript; charset=utf-8', body: await file('swagger-ui-bundle.js') },
    ],
  ])
}
