/**
 * Byte counts and speeds as people write them, read the same way wherever they come in: upctl's options and
 * the server's settings (a REST `?speed=` stays a whole number of bytes per second: that is its contract).
 * Every prefix is binary, whether or not B or iB follows it: 1K = 1KB = 1KiB = 1024 bytes, 1M = 1MB = 1MiB
 * = 1024² bytes, and so on for G and T. That is what curl's --limit-rate, rclone's --bwlimit and the aws
 * cli's max_bandwidth take, and the unit the dashboard shows (KiB/s, MiB/s). A lower-case b after a prefix
 * (Mb) is refused: it usually means bits.
 */

/** What was wrong with an amount, for the caller to put in its own words (a usage line, a setting's name). */
export class UnitError extends Error {
  override readonly name = 'UnitError'
}

const PREFIX: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }

/**
 * Bytes from "512K", "1MiB", "10G" or "1048576"; for a speed (bytes per second) also "2.5MB/s" and
 * "unlimited" (0). Throws a UnitError saying what to write instead.
 */
export function parseBytes(raw: string, { speed = false } = {}): number {
  const text = raw.trim()
  if (speed && /^unlimited$/i.test(text)) return 0
  const what = speed ? 'bytes per second' : 'bytes'
  const example = speed
    ? 'write bytes per second such as 512K, 1MiB or 2.5MB/s (1K = 1024), or 0 / unlimited'
    : 'write bytes such as 512K, 100MiB or 10G (1K = 1024), or a plain number of bytes'
  const match = (
    speed
      ? /^(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(i?)(b?)(?:\/s)?$/i
      : /^(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(i?)(b?)$/i
  ).exec(text)
  if (!match) throw new UnitError(example)
  const [, number = '', prefix = '', binary = '', byte = ''] = match
  if (prefix === '' && !/^\d+$/.test(number))
    throw new UnitError(`a fraction of a byte: write a whole number, or a unit such as ${number}K`)
  if (binary !== '' && prefix === '')
    throw new UnitError(
      speed ? 'write bytes per second such as 512K or 512KiB' : 'write bytes such as 512K or 512KiB',
    )
  if (byte === 'b')
    throw new UnitError(
      `a lower-case b means bits; ${speed ? 'speeds' : 'sizes'} are in bytes: write ${number}${prefix.toUpperCase()}B`,
    )
  const value = Number(number) * (PREFIX[prefix.toLowerCase()] ?? Number.NaN)
  if (!Number.isFinite(value) || Math.round(value) > Number.MAX_SAFE_INTEGER)
    throw new UnitError(`too large: at most ${Number.MAX_SAFE_INTEGER} ${what}`)
  const bytes = Math.round(value)
  if (bytes === 0 && value > 0)
    throw new UnitError(
      speed ? 'less than 1 byte per second (0 or unlimited means no limit)' : 'less than 1 byte',
    )
  return bytes
}
