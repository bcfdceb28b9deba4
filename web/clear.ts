/**
 * "Clear finished": removes every ended upload (completed, canceled, failed) from the record, after a
 * confirmation in a <dialog> where the user chooses whether completed uploads' files stay in the storage
 * folder or go too. Running and paused uploads are never touched (clearUploads refuses them).
 */
import type { Counts } from './api.js'

export interface ClearElements {
  button: HTMLButtonElement
  dialog: HTMLDialogElement
  summary: HTMLElement
  confirm: HTMLButtonElement
  /** Where focus goes when the button is gone (nothing left to clear). */
  fallbackFocus: () => HTMLElement | null
}

export class ClearFinished {
  private finished = 0

  constructor(
    private readonly el: ClearElements,
    private readonly clear: (keepFiles: boolean) => Promise<void>,
  ) {
    el.button.addEventListener('click', () => this.open())
    el.dialog.addEventListener('close', () => {
      if (el.dialog.returnValue !== 'clear') return
      const keepFiles =
        el.dialog.querySelector<HTMLInputElement>('input[name=files]:checked')?.value !== 'remove'
      void this.clear(keepFiles).finally(() => {
        if (el.button.hidden) el.fallbackFocus()?.focus()
      })
    })
  }

  setCounts(counts: Counts): void {
    this.finished = counts.completed + counts.canceled + counts.failed
    const { button, summary, confirm } = this.el
    button.hidden = this.finished === 0
    const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`
    summary.textContent =
      `${plural(this.finished, 'finished upload')} will leave the list: ${counts.completed} completed, ` +
      `${counts.canceled} canceled, ${counts.failed} failed. Running and paused uploads stay.`
    confirm.textContent = `Clear ${plural(this.finished, 'upload')}`
  }

  private open(): void {
    const { dialog } = this.el
    dialog.returnValue = ''
    const keep = dialog.querySelector<HTMLInputElement>('input[value=keep]')
    if (keep) keep.checked = true
    dialog.showModal()
  }
}
