import { parseBytes, UnitError } from '../units.js'
import { usage } from './errors.js'

/** How speeds are written (the server's settings read them the same way: see src/units.ts). */
export const SPEED_HELP = `Speeds (S) are bytes per second: a number, an optional unit and /s, such as 512K, 512KiB, 1M,
1MiB, 2.5MB/s or 1048576; 0 or "unlimited" for no limit. Every unit is binary (1024-based), with
or without B or iB: 1K = 1KB = 1KiB = 1024 bytes/s, 1M = 1MB = 1MiB = 1048576 bytes/s (G and T
likewise), as curl --limit-rate, rclone --bwlimit and the aws cli read them.`

/** Bytes per second from "512K", "1MiB", "2.5MB/s", "0" or "unlimited"; a usage error (exit 2) otherwise. */
export function parseSpeed(raw: string, command = 'put'): number {
  try {
    return parseBytes(raw, { speed: true })
  } catch (error) {
    if (!(error instanceof UnitError)) throw error
    throw usage(`bad speed ${JSON.stringify(raw.slice(0, 40))}: ${error.message}`, command)
  }
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
