import type { BigIntStats } from 'node:fs'

/**
 * What a transfer's file looked like when its run stopped: which file (device and inode), how long, and
 * when it last changed (mtime, and ctime, which nobody can set back). A file that still matches all of it
 * holds the bytes the run left there; any other (truncated, written to, replaced) is verified again.
 */
export interface FileStamp {
  dev: bigint
  ino: bigint
  size: bigint
  mtimeNs: bigint
  ctimeNs: bigint
}

export const stampOf = ({ dev, ino, size, mtimeNs, ctimeNs }: BigIntStats): FileStamp => ({
  dev,
  ino,
  size,
  mtimeNs,
  ctimeNs,
})

export const sameStamp = (a: FileStamp, b: FileStamp): boolean =>
  a.dev === b.dev &&
  a.ino === b.ino &&
  a.size === b.size &&
  a.mtimeNs === b.mtimeNs &&
  a.ctimeNs === b.ctimeNs
