/**
 * Creation order, as every record store lists: by `{createdAt}|{id}`, compared as text. A cursor is the sort
 * key of the last record seen, opaque to clients.
 */
export const sortKey = (record: { readonly createdAt: string; readonly id: string }) =>
  `${record.createdAt}|${record.id}`

/** The upload a sort key names (a createdAt has no `|`, an id may). */
export const idOf = (key: string) => key.slice(key.indexOf('|') + 1)

export const encodeCursor = (key: string) => Buffer.from(key).toString('base64url')

export function decodeCursor(cursor: string): string | undefined {
  const key = Buffer.from(cursor, 'base64url').toString()
  return /^\d{4}-\d\d-\d\dT[\d:.]+Z\|.+$/.test(key) ? key : undefined
}

/** The first place in sorted `keys` at or after `key`. */
export function lowerBound(keys: readonly string[], key: string): number {
  let lo = 0
  let hi = keys.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if ((keys[mid] ?? '') < key) lo = mid + 1
    else hi = mid
  }
  return lo
}

/** The first place in sorted `keys` after `key`: where a page that resumes after it starts. */
export function upperBound(keys: readonly string[], key: string): number {
  let lo = 0
  let hi = keys.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if ((keys[mid] ?? '') <= key) lo = mid + 1
    else hi = mid
  }
  return lo
}

/** New records almost always go last: that costs a push, not a search. */
export function insertSorted(keys: string[], key: string): void {
  const last = keys.at(-1)
  if (last === undefined || last <= key) keys.push(key)
  else keys.splice(lowerBound(keys, key), 0, key)
}
