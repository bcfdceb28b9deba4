// Builds the dashboard into dist/web once, when the package is built or installed (npm's `prepare`), so
// the server bundles nothing at start-up: web/app.ts with graphql-ws's client and tus-js-client's browser
// build (the package's `browser` field, which esbuild follows), minified, plus its page. Nothing is loaded
// from anywhere else: the page's CSP allows this server only.
import { build } from 'esbuild'
import { copyFile, mkdir, utimes } from 'node:fs/promises'
import { URL } from 'node:url'

const out = new URL('../dist/web/', import.meta.url)
await mkdir(out, { recursive: true })
await build({
  entryPoints: [new URL('../web/app.ts', import.meta.url).pathname],
  bundle: true,
  format: 'esm',
  target: 'es2022',
  minify: true,
  outfile: new URL('app.js', out).pathname,
  logLevel: 'warning',
})
for (const name of ['index.html', 'style.css'])
  await copyFile(new URL(`../web/${name}`, import.meta.url), new URL(name, out))
// The build's finish line: the test setup compares sources with dist/main.js.
const now = new Date()
await utimes(new URL('../dist/main.js', import.meta.url), now, now)
