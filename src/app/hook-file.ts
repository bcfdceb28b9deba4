import type { IncomingMessage, ServerResponse } from 'node:http'
import type { UploadService } from '../core/service.js'
import { isStored } from '../core/machine.js'
import { hookFileSignatureValid, HOOK_FILE_PATH } from '../hooks/file-link.js'
import { sendFile, StoredFileMissing } from '../rest/download.js'
import type { Storage } from '../uploads/storage.js'
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
 * The file a pre-finish hook is asked about, read through the link it was sent (signed with HOOKS_SECRET;
 * no API token needed, none accepted instead): its verified bytes in the transfer file while the hook
 * decides, the stored file once it is COMPLETED. Ranges and HEAD work as on every download.
 */
export function createHookFileHandler(service: UploadService, storage: Storage, secret: string) {
  return async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
    const id = hookFileId(url.pathname)
    if (id === undefined || (req.method !== 'GET' && req.method !== 'HEAD')) return notFound(req, res)
    if (!hookFileSignatureValid(secret, id, url.searchParams))
      return sendDetail(req, res, 403, 'This hook file link is not signed, or has expired')
    const record = await service.get(id).catch(() => undefined)
    if (!record) return notFound(req, res)
    const inTransfer = storage.transferPath(record)
    const path =
      (await storage.sizeOf(inTransfer)) === record.totalSize
        ? inTransfer
        : isStored(record.status)
          ? storage.storedPath(record)
          : undefined
    if (path === undefined) return sendDetail(req, res, 410, `Upload ${id} has no file to read now`)
    try {
      await sendFile(req, res, {
        path,
        size: record.totalSize,
        sha256: record.sha256,
        filename: record.filename,
      })
    } catch (error) {
      if (!(error instanceof StoredFileMissing)) throw error
      sendDetail(req, res, 410, `Upload ${id} has no file to read now`)
    }
  }
}
