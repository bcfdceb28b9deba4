import { Upload, type UploadOptions } from 'tus-js-client'

/** tus requests made by hand, for what a test must see exactly: statuses, headers, offsets. */
export interface TusAnswer {
  status: number
  headers: Headers
  body: string
}

const TUS = { 'tus-resumable': '1.0.0' }

export const tusMetadata = (fields: Record<string, string>) =>
  Object.entries(fields)
    .map(([key, value]) => `${key} ${Buffer.from(value).toString('base64')}`)
    .join(',')

async function answer(response: Response): Promise<TusAnswer> {
  return { status: response.status, headers: response.headers, body: await response.text() }
}

/** POST /files/: creates an upload of `size` bytes; Location names it. */
export async function tusCreate(
  url: string,
  size: number,
  metadata: Record<string, string> = { filename: 'data.bin' },
  headers: Record<string, string> = {},
): Promise<TusAnswer & { location: string; id: string }> {
  const response = await answer(
    await fetch(`${url}/files/`, {
      method: 'POST',
      headers: {
        ...TUS,
        'upload-length': String(size),
        'upload-metadata': tusMetadata(metadata),
        ...headers,
      },
    }),
  )
  const location = response.headers.get('location') ?? ''
  return { ...response, location, id: location.split('/').pop() ?? '' }
}

export async function tusPatch(
  location: string,
  offset: number,
  body: Uint8Array<ArrayBuffer>,
  headers: Record<string, string> = {},
): Promise<TusAnswer> {
  return answer(
    await fetch(location, {
      method: 'PATCH',
      headers: {
        ...TUS,
        'upload-offset': String(offset),
        'content-type': 'application/offset+octet-stream',
        ...headers,
      },
      body,
    }),
  )
}

export async function tusHead(location: string, headers: Record<string, string> = {}): Promise<TusAnswer> {
  return answer(await fetch(location, { method: 'HEAD', headers: { ...TUS, ...headers } }))
}

export async function tusDelete(location: string, headers: Record<string, string> = {}): Promise<TusAnswer> {
  return answer(await fetch(location, { method: 'DELETE', headers: { ...TUS, ...headers } }))
}

/** What tus-js-client sent: each request's method and, for a PATCH, the offset it started at. */
export interface Sent {
  method: string
  offset: number | undefined
}

/**
 * tus-js-client uploading `file` (a Buffer) to `url`/files/, resolving with its upload URL once it succeeds.
 * `stopWhen` aborts it (as a dropped connection would) once it returns true; the promise then resolves too.
 */
export function tusClientUpload(
  url: string,
  file: Buffer,
  options: Partial<UploadOptions> & { stopWhen?: (accepted: number) => boolean; sent?: Sent[] } = {},
): Promise<{ url: string; aborted: boolean }> {
  const { stopWhen, sent, ...rest } = options
  return new Promise((resolve, reject) => {
    const upload: Upload = new Upload(file, {
      endpoint: `${url}/files/`,
      metadata: { filename: 'data.bin' },
      retryDelays: null,
      storeFingerprintForResuming: false,
      onBeforeRequest: (req) => {
        const offset = req.getHeader('Upload-Offset')
        sent?.push({ method: req.getMethod(), offset: offset === undefined ? undefined : Number(offset) })
      },
      onChunkComplete: (_chunk, accepted) => {
        if (stopWhen?.(accepted)) {
          void upload.abort().then(() => resolve({ url: upload.url ?? '', aborted: true }))
        }
      },
      onSuccess: () => resolve({ url: upload.url ?? '', aborted: false }),
      onError: reject,
      ...rest,
    })
    upload.start()
  })
}
