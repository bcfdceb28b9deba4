/**
 * Sends this browser began and did not finish (a reload, a closed tab) whose uploads the server still
 * receives: the page names their files, to be chosen again, and then goes on where the server has them.
 * Stored sends whose uploads have ended or are gone are forgotten here.
 */
import { AuthError, gql } from './api.js'
import { bytes } from './format.js'
import { forgetSend, storedSends, uploadIdOf } from './send.js'

interface Unfinished {
  id: string
  filename: string
  totalSize: number
}

/** The unfinished sends, but for the uploads in `sending` (being sent now). */
async function unfinishedSends(sending: readonly string[]): Promise<Unfinished[]> {
  const found = new Map<string, Unfinished>()
  for (const entry of await storedSends()) {
    const url = entry.uploadUrl ?? ''
    const id = uploadIdOf(url)
    if (sending.includes(id) || found.has(id)) continue
    try {
      const { upload } = await gql<{ upload: Unfinished & { status: string } }>(
        `query ($id: ID!) { upload(id: $id) { id filename status totalSize } }`,
        { id },
      )
      if (upload.status === 'RECEIVING') found.set(id, upload)
      else await forgetSend(url)
    } catch (error) {
      // Gone from the record; a server out of reach (or a token refused) says nothing about it.
      if (!(error instanceof TypeError) && !(error instanceof AuthError)) await forgetSend(url)
    }
  }
  return [...found.values()]
}

export class UnfinishedNote {
  private generation = 0

  constructor(
    private readonly element: HTMLElement,
    private readonly sending: () => string[],
  ) {}

  /** Looks again (at start, and whenever a send finds its upload or ends). */
  refresh(): void {
    const generation = ++this.generation
    unfinishedSends(this.sending()).then(
      (left) => {
        if (generation === this.generation) this.show(left)
      },
      () => undefined,
    )
  }

  private show(left: Unfinished[]): void {
    this.element.hidden = left.length === 0
    if (left.length === 0) return void this.element.replaceChildren()
    // How much of each has arrived is in its row, live.
    const files = left.map((u) => `${u.filename} (${bytes(u.totalSize)})`)
    this.element.textContent =
      `Not sent in full from this browser: ${files.join(', ')}. ` +
      `Choose ${left.length === 1 ? 'it' : 'them'} again to send the rest; the server keeps what arrived.`
  }
}
