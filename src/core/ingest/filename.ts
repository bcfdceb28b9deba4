import { extname } from 'node:path'

// A stored name is `{uuid}_{safe}`; 255 bytes is the name limit of every common Linux file system. It is the
// longest name the layout makes from a client's (a transfer's file is `.transfers/{uuid}`, see seams/storage/local.ts).
const MAX_NAME_BYTES = 255
const ID_PREFIX_BYTES = 36 + 1
const MAX_SAFE_BYTES = MAX_NAME_BYTES - ID_PREFIX_BYTES

// C0 and C1 controls, DEL, and the bidi overrides that make a name read differently from what it is.
// eslint-disable-next-line no-control-regex
const UNSAFE_CHARS = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g

function truncateUtf8(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text) <= maxBytes) return text
  let out = ''
  let bytes = 0
  for (const char of text) {
    const size = Buffer.byteLength(char)
    if (bytes + size > maxBytes) break
    out += char
    bytes += size
  }
  return out
}

/**
 * The part of a client's filename that is safe to put on disk: the last path segment (either separator),
 * NFC-normalised, without control characters, never `.`/`..`, never empty, short enough to fit a file
 * system's name limit with its `{id}_` prefix (the extension is kept when it can be).
 */
export function safeFilename(original: string): string {
  const base = original.normalize('NFC').replace(UNSAFE_CHARS, '').split(/[/\\]/).pop() ?? ''
  const trimmed = base.trim().replace(/^\.+/, '')
  const name = trimmed === '' ? 'file' : trimmed
  if (Buffer.byteLength(name) <= MAX_SAFE_BYTES) return name
  const ext = extname(name)
  const keepExt = ext.length > 1 && Buffer.byteLength(ext) <= 32 ? ext : ''
  return (
    truncateUtf8(name.slice(0, name.length - keepExt.length), MAX_SAFE_BYTES - Buffer.byteLength(keepExt)) +
    keepExt
  )
}

export const storedNameFor = (id: string, filename: string) => `${id}_${safeFilename(filename)}`
