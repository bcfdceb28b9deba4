/**
 * Reads a `.cpuprofile` (node --cpu-prof) and prints where the time went: the frames with the most self time,
 * and the same summed by package (node_modules/<name>, node: internals, our src/, (program), (idle), (gc)).
 *
 *   node --import tsx bench/profile-top.ts <file.cpuprofile> [top=25] [lastSeconds]
 *
 * With `lastSeconds`, only the samples of the profile's last seconds count (a bench's load ends just before
 * the server is stopped; the start-up, module loading included, is left out); `A:B` keeps those from A
 * seconds before the end to B seconds before it (an earlier load on the same server). Percentages are of the time the
 * thread was busy (not idle).
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

const [file, topArg = '25', lastArg] = process.argv.slice(2)
if (!file) throw new Error('usage: profile-top.ts <file.cpuprofile> [top]')
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile
const top = Number(topArg)

const byId = new Map(profile.nodes.map((n) => [n.id, n]))
const self = new Map<number, number>()
const at: number[] = []
for (let i = 0, t = profile.startTime; i < profile.samples.length; i++)
  at.push((t += profile.timeDeltas[i] ?? 0))
const [fromEnd, toEnd = '0'] = (lastArg ?? '').split(':')
const from = lastArg === undefined ? -Infinity : at.at(-1)! - Number(fromEnd) * 1e6
const to = at.at(-1)! - Number(toEnd) * 1e6
let idle = 0
let sampled = 0
for (let i = 0; i < profile.samples.length; i++) {
  if (at[i]! < from || at[i]! > to) continue
  const id = profile.samples[i]!
  const us = profile.timeDeltas[i] ?? 0
  sampled += us
  if (byId.get(id)!.callFrame.functionName === '(idle)') {
    idle += us
    continue
  }
  self.set(id, (self.get(id) ?? 0) + us)
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
console.log(
  `${file}: ${(sampled / 1e6).toFixed(2)} s sampled, busy ${(total / 1e6).toFixed(2)} s (${((total / sampled) * 100).toFixed(0)} %), idle ${(idle / 1e6).toFixed(2)} s`,
)
console.log('\nself time by frame:')
for (const [k, us] of [...frames].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(us)}  ${k}`)
console.log('\nself time by package:')
for (const [k, us] of [...packages].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(us)}  ${k}`)
