import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

/**
 * Child-process servers run the built server (`node dist/main.js`, as `npm start` does) and every server
 * serves the built dashboard, so the suite builds first: one build, not one bundle per server started.
 */
export default function setup(): void {
  execFileSync('npm', ['run', '--silent', 'build'], {
    cwd: fileURLToPath(new URL('../..', import.meta.url)),
    stdio: 'inherit',
  })
}
