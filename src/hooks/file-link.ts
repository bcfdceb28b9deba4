import { createHmac, timingSafeEqual } from 'node:crypto'

/** Where a pre-finish hook reads the file it is asked about (served by app/router.ts). */
export const HOOK_FILE_PATH = '/hooks/files'

/** Long enough for a scan of a large file; the link names one upload and nothing else. */
const LINK_SECONDS = 3600

// Its own message prefix: a link signed for a hook is never a valid webhook signature, nor the reverse.
const mac = (secret: string, id: string, expires: number) =>
  createHmac('sha256', secret).update(`hook-file:${id}:${expires}`).digest('hex')

/**
 * The pre-finish hook's link to the file it decides on, signed with HOOKS_SECRET (the receiver has it;
 * API_TOKEN may not even be set): it works before the upload is COMPLETED, which no download link does.
 */
export function hookFilePath(secret: string, id: string, now = Date.now()): string {
  const expires = Math.floor(now / 1000) + LINK_SECONDS
  return `${HOOK_FILE_PATH}/${encodeURIComponent(id)}?expires=${expires}&signature=${mac(secret, id, expires)}`
}

export function hookFileSignatureValid(
  secret: string,
  id: string,
  query: URLSearchParams,
  now = Date.now(),
): boolean {
  const expires = Number(query.get('expires'))
  const signature = query.get('signature') ?? ''
  if (!Number.isSafeInteger(expires) || expires * 1000 < now || !/^[0-9a-f]{64}$/.test(signature))
    return false
  return timingSafeEqual(Buffer.from(signature, 'hex'), Buffer.from(mac(secret, id, expires), 'hex'))
}
