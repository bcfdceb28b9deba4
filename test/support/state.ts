import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'

export interface SavedUpload {
  id: string
  status: string
  storedName: string
  sha256: string
  uploadedSize: number
  totalSize: number
  targetSpeed: number
  error: string | null
}

/**
 * What the state on disk says, read as a stranger would: the snapshot (`.uploads.json`), then every journal
 * line after its seq. Written apart from the server's own reader, so the two can disagree.
 */
export async function readState(
  dir: string,
  file = '.uploads.json',
): Promise<{ uploads: Record<string, SavedUpload> }> {
  const text = await readFile(join(dir, file), 'utf8').catch(() => undefined)
  const snapshot =
    text === undefined
      ? { seq: 0, uploads: {} }
      : (JSON.parse(text) as { seq?: number; uploads: Record<string, SavedUpload> })
  const uploads = { ...snapshot.uploads }
  const prefix = `${file.replace(/\.json$/, '')}.journal.`
  const journals = (await readdir(dir))
    .filter((name) => name.startsWith(prefix) && /^\d+$/.test(name.slice(prefix.length)))
    .sort((a, b) => Number(a.slice(prefix.length)) - Number(b.slice(prefix.length)))
  for (const name of journals) {
    const lines = (await readFile(join(dir, name), 'utf8')).split('\n')
    for (const line of lines) {
      if (line === '') continue
      let entry: { s: number; put?: SavedUpload; del?: string; p?: [string, number, string][] }
      try {
        entry = JSON.parse(line) as typeof entry
      } catch {
        continue // a torn last line, as a crash leaves it
      }
      if (entry.s <= (snapshot.seq ?? 0)) continue
      if (entry.put) uploads[entry.put.id] = entry.put
      if (entry.del) Reflect.deleteProperty(uploads, entry.del)
      for (const [id, uploadedSize] of entry.p ?? []) {
        const upload = uploads[id]
        if (upload && !['COMPLETED', 'CANCELED', 'FAILED'].includes(upload.status))
          uploads[id] = { ...upload, uploadedSize }
      }
    }
  }
  return { uploads }
}
