import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import type { Config } from '../config.js'
import { setLogFields } from '../log.js'
import type { Bus } from './bus/index.js'
import { openEmbedded } from './embedded.js'
import { FolderLock } from './leases/folder-lock.js'
import type { Leases } from './leases/index.js'
import type { RecordStore } from './records/index.js'
import type { Storage } from './storage/index.js'
import { LocalStorage } from './storage/local.js'
import type { Locker } from './tus-lock/index.js'

/**
 * Everything the service stands on that differs between a server alone on its folder (`embedded`) and one
 * of several instances sharing it over Redis (`shared`). The mode is decided once, by openSeams from
 * `config.mode`; everything else asks these seams, never the mode again.
 */
export interface Seams {
  readonly mode: 'embedded' | 'shared'
  /** This process's name: in leases' holders, logs and metrics, and in the names of bodies still arriving. */
  readonly instance: string
  /** Where upload records live (records/). */
  readonly records: RecordStore
  /** Who may act on which upload (leases/). */
  readonly leases: Leases
  /** How states and commands travel between processes (bus/). */
  readonly bus: Bus
  /** tus's lock, one request at a time per upload (tus-lock/): loaded with tus, on its first request. */
  tusLocker(): Promise<Locker>
  /** An upload's bytes: staged, transfer and stored, and the room for them (storage/). */
  readonly storage: Storage
  /** Why this instance cannot serve now (its shared state unreachable), or undefined. */
  unhealthy(): Promise<string | undefined>
  /** Closes the records and any connection, then lets go of the folder. */
  close(): Promise<void>
}

/** What a mode opens on a folder that is already held: everything but the folder's storage. */
type Opened = Omit<Seams, 'instance' | 'storage'>

/**
 * Opens the seams for `config.mode`. Nothing in the folder is touched before it is held (a second server on
 * it stops here), and the state is only read: sweeping and recovery come later, once the port is ours.
 */
export function openSeams(config: Config): Promise<Seams> {
  const { mode } = config
  if (mode.kind === 'embedded') {
    const instance = config.instanceId ?? 'local'
    return onFolder(config, instance, 'exclusive', (storage) =>
      openEmbedded(config.stateFile, storage, config.uploadDir),
    )
  }
  const instance = config.instanceId ?? instanceName()
  // Among several, every log line says which instance wrote it.
  setLogFields({ instance })
  // Redis and its client are loaded only by instances that share state over it.
  return onFolder(config, instance, 'shared', async () =>
    (await import('./shared.js')).joinShared(mode.redisUrl, instance),
  )
}

/** Holds the folder (alone, or with the instances that share it), then opens the mode's seams on it. */
async function onFolder(
  config: Config,
  instance: string,
  holding: 'exclusive' | 'shared',
  open: (storage: Storage) => Promise<Opened>,
): Promise<Seams> {
  const lock = await FolderLock.acquire(config.uploadDir, holding)
  try {
    const storage = await openStorage(config, instance)
    const opened = await open(storage)
    return {
      ...opened,
      instance,
      storage,
      close: async () => {
        await opened.close()
        ;(storage as { close?: () => void }).close?.()
        await lock.release()
      },
    }
  } catch (error) {
    await lock.release()
    throw error
  }
}

/**
 * The folder, or the bucket when S3_BUCKET is set (issue 21). S3's SDK loads only then; its settings are
 * checked by `prepare()` at start-up, refused in one line as a bad UPLOAD_DIR is.
 */
async function openStorage(config: Config, instance: string): Promise<Storage> {
  if (config.storage.kind !== 's3') return new LocalStorage(config.uploadDir, instance)
  const { S3Storage } = await import('./storage/s3.js')
  const storage = new S3Storage(config.storage, { instance, maxUploadSize: config.maxUploadSize })
  // Checked before the state is opened on it (which asks it what it holds): a wrong setting is one line.
  try {
    await storage.prepare()
  } catch (error) {
    storage.close()
    throw error
  }
  return storage
}

/** A name for an instance that was given none: the host's, and a few random characters, unique per start. */
function instanceName(): string {
  return `${hostname()
    .replace(/[^\w.-]/g, '-')
    .slice(0, 40)}-${randomBytes(3).toString('hex')}`
}
