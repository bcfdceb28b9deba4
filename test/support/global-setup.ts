import { execFileSync } from 'node:child_process'
import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

/** The newest modification time of any file under `dir`. */
function newest(dir: string): number {
  let latest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) latest = Math.max(latest, statSync(join(entry.parentPath, entry.name)).mtimeMs)
  }
  return latest
}

/**
 * Child-process servers run the built server (`node dist/main.js`, as `npm start` does) and every server
 * serves the built dashboard, so the suite builds first, once, unless dist/ is newer than every source.
 */
export default function setup(): void {
  const built = (() => {
    try {
      return statSync(join(ROOT, 'dist', 'main.js')).mtimeMs
    } catch {
      return 0
    }
  })()
  const sources = Math.max(...['src', 'web', 'schema', 'scripts'].map((dir) => newest(join(ROOT, dir))))
  if (sources > built) execFileSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, stdio: 'inherit' })
}
