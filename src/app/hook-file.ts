import type { IncomingMessage, ServerResponse } from 'node:http'
import type { UploadService } from '../core/service.js'
import { isGone, isReceiving, isStored } from '../core/machine.js'
import { hookFileSignatureValid, HOOK_FILE_PATH } from '../hooks/file-link.js'
import { sendFile } from '../rest/download.js'
import { StoredFileMissing, type Storage, type StoredReader } from '../seams/storage/index.js'
import { notFound, sendDetail } from './answers.js'

/** The upload id in /hooks/files/{id}, or undefined when the path is not one. */
export function hookFileId(pathname: string): string | undefined {
  const id = new RegExp(`^${HOOK_FILE_PATH}/([^/]+)$`).exec(pathname)?.[1]
  try {
    return id === undefined ? undefined : decodeURIComponent(id)
  } catch {
    return undefined
  }
}

/**
 * The upload's staged bytes as a StoredReader, so sendFile serves them as it serves a stored file (Range,
 * HEAD, ETag). They are the bytes the transfer copies, with the same sha256 (checked again as it completes):
 * the file the hook is asked about. Missing, or not yet whole: StoredFileMissing.
 */
async function openStaged(storage: Storage, id: string, size: number): Promise<StoredReader> {
  const staged = await storage.stagedSize(id)
  if (staged !== size)
    throw new StoredFileMissing(`Upload ${id} has ${staged ?? 'no'} staged bytes of ${size}`)
  return {
    size,
    // Inclusive, as HTTP ranges are; readStaged's end is exclusive.
    read: (start, end) => storage.readStaged(id, start, end + 1),
    close: async () => undefined,
  }
}

/**
 * The file a pre-finish hook is asked about, read through the link it was sent (signed with HOOKS_SECRET;
 * no API token needed, none accepted instead): its staged bytes while it is not yet COMPLETED (the hook
 * decides before it is), the stored file once it is. Ranges and HEAD work as on every download.
 */
export function createHookFileHandler(service: UploadService, storage: Storage, secret: string) {
  const gone = (req: IncomingMessage, res: ServerResponse, id: string) =>
    sendDetail(req, res, 410, `Upload ${id} has no file to read now`)
  return async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
    const id = hookFileId(url.pathname)
    if (id === undefined || (req.method !== 'GET' && req.method !== 'HEAD')) return notFound(req, res)
    if (!hookFileSignatureValid(secret, id, url.searchParams))
      return sendDetail(req, res, 403, 'This hook file link is not signed, or has expired')
    // Twice at most: an upload that completes between its record's read and its staged bytes' read has
    // let its staged bytes go, and is read again as the stored file it now is.
    for (let tries = 0; tries < 2; tries++) {
      const record = await service.get(id).catch(() => undefined)
      if (!record) return notFound(req, res)
      // Still arriving: no whole bytes, no sha256 to name them by yet.
      if (isGone(record.status) || isReceiving(record.status)) return gone(req, res, id)
      const file = { id, size: record.totalSize, sha256: record.sha256, filename: record.filename }
      try {
        return await sendFile(req, res, {
          ...file,
          open: isStored(record.status)
            ? () => service.openStored(id)
            : () => openStaged(storage, id, record.totalSize),
        })
      } catch (error) {
        if (!(error instanceof StoredFileMissing)) throw error
        if (isStored(record.status)) break
      }
    }
    gone(req, res, id)
  }
}
