/**
 * Sending one file's bytes to the server, until it becomes an upload record. Today a multipart
 * POST /api/upload (XMLHttpRequest, for its upload progress and abort); the rest of the page only sees
 * `sendFile`, so another way of sending (tus) can take its place.
 */
import { AuthError, authHeaders, getToken } from './api.js'

export interface Sending {
  /** The new upload's id, once the server has the whole file. */
  done: Promise<string>
  /** Stops sending; `done` rejects with a SendCanceled and the server records nothing. */
  cancel(): void
}

export class SendCanceled extends Error {
  constructor() {
    super('canceled')
  }
}

export interface SendEvents {
  /** Bytes sent so far, of `total` (the request's, a little more than the file). */
  progress(sent: number, total: number): void
  /** The first bytes are on their way (the first progress event, not loadstart: that fires within send()). */
  started(): void
}

export function sendFile(file: File, speed: number, events: SendEvents): Sending {
  const xhr = new XMLHttpRequest()
  const done = new Promise<string>((resolve, reject) => {
    xhr.open('POST', `/api/upload?speed=${speed}`)
    xhr.responseType = 'json'
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value)
    let started = false
    xhr.upload.addEventListener('progress', (event) => {
      if (!started && event.loaded > 0) {
        started = true
        events.started()
      }
      events.progress(event.loaded, event.total)
    })
    xhr.addEventListener('load', () => {
      const body = (xhr.response ?? {}) as { upload_id?: string; detail?: string }
      if (xhr.status === 401) reject(new AuthError(getToken() !== ''))
      else if (xhr.status >= 200 && xhr.status < 300 && body.upload_id) resolve(body.upload_id)
      else reject(new Error(body.detail ?? `the server answered ${xhr.status} ${xhr.statusText}`))
    })
    xhr.addEventListener('abort', () => reject(new SendCanceled()))
    xhr.addEventListener('error', () => reject(new Error('the connection to the server was lost')))
    const form = new FormData()
    form.append('file', file, file.name)
    xhr.send(form)
  })
  return { done, cancel: () => xhr.abort() }
}
