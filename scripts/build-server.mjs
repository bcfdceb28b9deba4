// Bundles the server that `node dist/main.js` runs (issue 22): Node 20 resolves, reads and links each ES
// module on its own, and ~150 small ones cost start-up ~40 ms more than round 2's ~50. tsc's output stays
// beside it for upctl and for tests that import a module of it. Packages stay in node_modules. Entries and
// chunks go to dist/server/, one folder below dist/ like every module they come from, so the paths the code
// builds from its own URL (../web/, ../../schema/) still hold; the hash worker is a second entry, next to
// the chunk that starts it. dist/main.js then only imports the bundle. Chunks are named by their content
// and an older build's are left in place: a server started before this build still finds the ones it loads
// on first use (tus, graphql-ws, S3); `rm -rf dist` clears them.
import { build } from 'esbuild'
import { writeFile } from 'node:fs/promises'
import { URL } from 'node:url'

const dist = new URL('../dist/', import.meta.url)
const out = new URL('server/', dist)
await build({
  entryPoints: {
    main: new URL('main.js', dist).pathname,
    'hash-worker': new URL('core/transfer/hash-worker.js', dist).pathname,
  },
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  packages: 'external',
  outdir: out.pathname,
  logLevel: 'warning',
})
await writeFile(new URL('main.js', dist), "import './server/main.js'\n")
