/**
 * Reads a `.cpuprofile` (node --cpu-prof) and prints where the time went: the frames with the most self time,
 * and the same summed by package (node_modules/<name>, node: internals, our src/, (program), (idle), (gc)).
 *
 *   node --import tsx bench/profile-top.ts <file.cpuprofile> [top=25]
 */
import { readFileSync } from 'node:fs'

interface Node {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  hitCount?: number
  children?: number[]
}
interface Profile {
  nodes: Node[]
  samples: number[]
  timeDeltas: number[]
  startTime: number
  endTime: number
}

const [file, topArg = '25'] = process.argv.slice(2)
if (!file) throw new Error('usage: profile-top.ts <file.cpuprofile> [top]')
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile
const top = Number(topArg)

const byId = new Map(profile.nodes.map((n) => [n.id, n]))
const self = new Map<number, number>()
for (let i = 0; i < profile.samples.length; i++) {
  const id = profile.samples[i]!
  self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0))
}
const total = [...self.values()].reduce((a, b) => a + b, 0)

const where = (url: string) => {
  if (!url) return ''
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (pkg) return pkg[1]!
  if (url.startsWith('node:')) return url
  const src = /\/(src|dist|bench)\/(.*)$/.exec(url)
  return src ? `${src[1]}/${src[2]}` : url
}
const label = (n: Node) =>
  `${n.callFrame.functionName || '(anonymous)'} ${where(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`

const frames = new Map<string, number>()
const packages = new Map<string, number>()
for (const [id, us] of self) {
  const n = byId.get(id)!
  frames.set(label(n), (frames.get(label(n)) ?? 0) + us)
  const pkg = where(n.callFrame.url).replace(/^(src|dist)\/.*/, 'ours ($1/)') || n.callFrame.functionName
  const key = pkg.startsWith('node:') ? 'node: internals' : pkg
  packages.set(key, (packages.get(key) ?? 0) + us)
}
const pct = (us: number) => `${((us / total) * 100).toFixed(1).padStart(5)} %`
console.log(`${file}: ${(total / 1e6).toFixed(2)} s sampled`)
console.log('\nself time by frame:')
for (const [k, us] of [...frames].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(us)}  ${k}`)
console.log('\nself time by package:')
for (const [k, us] of [...packages].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(us)}  ${k}`)
