/**
 * The hooks line: how many notifications to the user's backend (HOOKS_URL) wait for delivery, and how many
 * were given up on (dead letters, retried with the retryHookDelivery mutation). Hidden while both are 0,
 * which is always without hooks. Asked every few seconds: deliveries are not on the live feed.
 */
import { gql } from './api.js'

const EVERY_MS = 5000
const QUERY = '{ hookDeliveries(first: 1) { pendingCount deadLetterCount } }'

interface Counts {
  pendingCount: number
  deadLetterCount: number
}

export function followHookDeliveries(element: HTMLElement): () => void {
  let timer: ReturnType<typeof setTimeout> | undefined
  let stopped = false
  const look = async () => {
    try {
      const { hookDeliveries } = await gql<{ hookDeliveries: Counts }>(QUERY)
      const { pendingCount, deadLetterCount } = hookDeliveries
      element.hidden = pendingCount === 0 && deadLetterCount === 0
      element.textContent = `Hook notifications: ${pendingCount} pending, ${deadLetterCount} dead-lettered`
      element.classList.toggle('warning', deadLetterCount > 0)
    } catch {
      // Not worth a message of its own: the list says when the server cannot be reached.
    }
    if (!stopped) timer = setTimeout(() => void look(), EVERY_MS)
  }
  void look()
  return () => {
    stopped = true
    clearTimeout(timer)
  }
}
