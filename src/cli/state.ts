import { mkdir } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { FileUrlStorage, type UrlStorage } from 'tus-js-client'
import { CliError, oneLine } from './errors.js'

declare module 'tus-js-client' {
  /**
   * tus-js-client's Node build exports FileUrlStorage (lib/node/index.js: the upload URLs of unfinished
   * uploads in a JSON file, under a lock file), but its type declarations leave it out.
   */
  export const FileUrlStorage: new (path: string) => UrlStorage
}

/**
 * Where upctl keeps what it must remember between runs: the tus upload URL of each file whose put has not
 * finished, keyed by the file's fingerprint (path, size, mtime, server). $UPCTL_STATE, else
 * $XDG_STATE_HOME/upctl, else ~/.local/state/upctl.
 */
export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.UPCTL_STATE) return env.UPCTL_STATE
  const base = env.XDG_STATE_HOME || join(homedir(), '.local', 'state')
  return join(base, 'upctl')
}

/** The store of unfinished puts, in `stateDir()/uploads.json` (made when missing). */
export async function uploadStorage(): Promise<UrlStorage> {
  const dir = stateDir()
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 })
  } catch (error) {
    throw new CliError(
      `cannot make ${dir} to remember unfinished uploads in (${oneLine(error)}); set UPCTL_STATE`,
    )
  }
  return new FileUrlStorage(join(dir, 'uploads.json'))
}

/** Forgets every stored put whose upload URL is `url` (the upload has ended, or was handed over). */
export async function forget(storage: UrlStorage, url: string): Promise<void> {
  try {
    const stored = await storage.findAllUploads()
    for (const entry of stored) if (entry.uploadUrl === url) await storage.removeUpload(entry.urlStorageKey)
  } catch {
    // The entry stays: a later put of the same unchanged file then finds this upload again and shows how it
    // ended instead of sending the file anew; a changed file has another fingerprint.
  }
}
