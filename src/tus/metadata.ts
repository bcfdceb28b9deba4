import { quote } from '../errors.js'
import type { ResumableMetadata } from './store.js'

/** A refusal in @tus/server's own shape: it answers with this status and body. */
export interface TusRefusal {
  status_code: number
  body: string
}

const refuse = (body: string): TusRefusal => ({ status_code: 400, body: `${body}\n` })

/**
 * What a tus sender's Upload-Metadata says of its upload, checked at creation, before any byte is stored:
 * - `filename` (or `name`, which Uppy sends): the name to keep; `unnamed` when neither is given;
 * - `filetype` (or `type`): kept only to be echoed back on HEAD;
 * - `speed`: bytes per second for its transfer, 0 = unlimited; the server's default when absent.
 * Anything else is dropped.
 */
export function resumableMetadata(given: Record<string, string | null> | undefined): ResumableMetadata {
  const value = (...keys: string[]) =>
    keys.map((key) => given?.[key]).find((v) => v != null && v !== '') ?? undefined
  const metadata: ResumableMetadata = { filename: value('filename', 'name') ?? 'unnamed' }
  const filetype = value('filetype', 'type')
  if (filetype !== undefined) metadata.filetype = filetype
  const speed = given?.speed
  if (speed != null) {
    if (!/^\d+$/.test(speed) || !Number.isSafeInteger(Number(speed)))
      throw refuse(
        `speed in Upload-Metadata must be a whole number of bytes per second, 0 or more (0 = unlimited); got ${quote(speed)}`,
      )
    metadata.speed = speed
  }
  return metadata
}
