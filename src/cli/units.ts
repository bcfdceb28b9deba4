import { usage } from './errors.js'

/**
 * Speeds as people write them. Every prefix is binary, whether or not B or iB follows it:
 * 1K = 1KB = 1KiB = 1024 bytes/s, 1M = 1MB = 1MiB = 1024² bytes/s, and so on for G and T. That is what
 * curl's --limit-rate, rclone's --bwlimit and the aws cli's max_bandwidth take, and the unit the dashboard
 * shows (KiB/s, MiB/s). A lower-case b after a prefix (Mb) is refused: it usually means bits.
 */
export const SPEED_HELP = `Speeds (S) are bytes per second: a number, an optional unit and /s, such as 512K, 512KiB, 1M,
1MiB, 2.5MB/s or 1048576; 0 or "unlimited" for no limit. Every unit is binary (1024-based), with
or without B or iB: 1K = 1KB = 1KiB = 1024 bytes/s, 1M = 1MB = 1MiB = 1048576 bytes/s (G and T
likewise), as curl --limit-rate, rclone --bwlimit and the aws cli read them.`

const PREFIX: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }

/** Bytes per second from "512K", "1MiB", "2.5MB/s", "0" or "unlimited"; a usage error (exit 2) otherwise. */
export function parseSpeed(raw: string, command = 'put'): number {
  const text = raw.trim()
  if (/^unlimited$/i.test(text)) return 0
  const bad = (why: string) => usage(`bad speed ${JSON.stringify(raw.slice(0, 40))}: ${why}`, command)
  const match = /^(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(i?)(b?)(?:\/s)?$/i.exec(text)
  if (!match) throw bad('write bytes per second such as 512K, 1MiB or 2.5MB/s (1K = 1024), or 0 / unlimited')
  const [, number = '', prefix = '', binary = '', byte = ''] = match
  if (binary !== '' && prefix === '') throw bad('write bytes per second such as 512K or 512KiB')
  if (byte === 'b')
    throw bad(`a lower-case b means bits; speeds are in bytes: write ${number}${prefix.toUpperCase()}B`)
  const value = Number(number) * (PREFIX[prefix.toLowerCase()] ?? Number.NaN)
  if (!Number.isFinite(value) || Math.round(value) > Number.MAX_SAFE_INTEGER)
    throw bad(`too large: at most ${Number.MAX_SAFE_INTEGER} bytes per second`)
  const bytes = Math.round(value)
  if (bytes === 0 && value > 0) throw bad('less than 1 byte per second (0 or unlimited means no limit)')
  return bytes
}

const SIZE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']

/** `n` bytes in binary units, as the dashboard writes them: 0 B, 512 B, 1.5 KiB, 20 KiB, 1.2 GiB. */
export function formatBytes(n: number): string {
  let value = n
  let unit = 0
  while (value >= 1024 && unit < SIZE_UNITS.length - 1) {
    value /= 1024
    unit++
  }
  const shown = unit === 0 ? String(value) : value.toFixed(1).replace(/\.0$/, '')
  return `${shown} ${SIZE_UNITS[unit]}`
}

/** A measured speed: 0 B/s, 512 KiB/s. */
export const formatRate = (bytesPerSecond: number): string => `${formatBytes(bytesPerSecond)}/s`

/** A speed asked for, where 0 means no limit. */
export const formatTarget = (bytesPerSecond: number): string =>
  bytesPerSecond === 0 ? 'unlimited' : formatRate(bytesPerSecond)

/** A duration: 9s, 1m05s, 2h03m. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.ceil(seconds))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
  const h = Math.floor(s / 3600)
  if (h >= 100) return `${h}h`
  return `${h}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`
}

/** The share `done` is of `total`, as a whole percentage (a file of 0 bytes is all there once done). */
export function percent(done: number, total: number): number {
  if (total <= 0) return 100
  return Math.min(100, Math.floor((done / total) * 100))
}
