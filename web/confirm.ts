/**
 * Asking before an action that cannot be undone (canceling an upload, deleting a file): one <dialog>, the
 * question naming the file, the safe answer first and focused, so Enter or Escape changes nothing.
 */

export interface Question {
  title: string
  detail: string
  /** The button that does it, e.g. "Delete report.pdf". */
  confirm: string
  /** The button that changes nothing, e.g. "Keep it". */
  keep: string
}

export class Confirm {
  private answer: ((yes: boolean) => void) | undefined

  constructor(
    private readonly el: {
      dialog: HTMLDialogElement
      title: HTMLElement
      detail: HTMLElement
      confirm: HTMLButtonElement
      keep: HTMLButtonElement
    },
  ) {
    el.dialog.addEventListener('close', () => {
      const answer = this.answer
      this.answer = undefined
      answer?.(el.dialog.returnValue === 'yes')
    })
  }

  /** Resolves true when the user confirms; false for the other button, Escape, or another question. */
  ask(question: Question): Promise<boolean> {
    const { dialog, title, detail, confirm, keep } = this.el
    // Only one question at a time: a new one answers the old with no.
    if (dialog.open) dialog.close('')
    const returnTo = document.activeElement instanceof HTMLElement ? document.activeElement : null
    title.textContent = question.title
    detail.textContent = question.detail
    confirm.textContent = question.confirm
    keep.textContent = question.keep
    dialog.returnValue = ''
    dialog.showModal()
    keep.focus()
    return new Promise((resolve) => {
      this.answer = (yes) => {
        // The control that asked gets focus back, if it is still on the page.
        if (returnTo?.isConnected) returnTo.focus()
        resolve(yes)
      }
    })
  }
}
