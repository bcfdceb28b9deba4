/** How the dashboard writes sizes, speeds and durations: binary units, as the speed fields take them. */

const SIZE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB']

/** `n` bytes with the largest unit that keeps it at 1 or more: 0 B, 512 B, 1.5 KiB, 20 KiB, 1.2 GiB. */
export function bytes(n: number): string {
  let i = 0
  while (n >= 1024 && i < SIZE_UNITS.length - 1) {
    n /= 1024
    i++
  }
  return `${i === 0 ? n : trim(n)} ${SIZE_UNITS[i]}`
}

/** One decimal, none when it is .0: 20 KiB, not 20.0 KiB. */
const trim = (n: number) => (Math.round(n * 10) / 10).toString()

/** A speed in bytes per second; 0 is unlimited, as the API has it. */
export const speed = (n: number) => (n === 0 ? 'unlimited' : `${bytes(n)}/s`)

/** Seconds as people read them: 45 s, 3 min 20 s, 2 h 5 min. */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.ceil(seconds))
  if (s >= 3600) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`
  if (s >= 60) return `${Math.floor(s / 60)} min ${s % 60} s`
  return `${s} s`
}

export const percent = (done: number, total: number) => (total > 0 ? Math.floor((done / total) * 100) : 0)
