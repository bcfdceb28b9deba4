import { spawn, type ChildProcess } from 'node:child_process'
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3'
import { afterAll, beforeAll } from 'vitest'
import type { S3Settings } from '../../src/config.js'
import { S3Storage, type S3Options } from '../../src/seams/storage/s3.js'
import { freePort } from './redis.js'

/** Any value does: moto accepts every credential (so bad credentials cannot be tested against it). */
export const MOTO_CREDENTIALS = { accessKeyId: 'test', secretAccessKey: 'test' } as const
export const MOTO_REGION = 'us-east-1'

export interface TestMoto {
  /** `http://127.0.0.1:{port}`, for S3_ENDPOINT. */
  endpoint: string
  port: number
  pid: number
  /** The environment a server needs to use this moto (bucket and path style included). */
  env(bucket: string, prefix?: string): Record<string, string>
  /** A client of the tests' own, for looking inside the bucket. */
  client(): S3Client
  /** The settings a storage over `bucket` in this moto is opened with (S3_TIMEOUT 10 s unless `over` says). */
  settings(bucket: string, prefix: string, over?: Partial<S3Settings>): S3Settings
  /** A storage of the tests' own over `bucket` (to look inside it as the server does, or to act as an instance); closed by `stop()`. */
  storage(bucket: string, prefix: string, over?: Partial<S3Settings>, options?: S3Options): S3Storage
  createBucket(name?: string): Promise<string>
  /** SIGSTOP: moto holds every connection and answers nothing until `thaw()`; its data stays. */
  freeze(): void
  thaw(): void
  /** Ends it for good (SIGTERM, then SIGKILL if it lingers), and its clients. A stopped moto forgets all. */
  stop(): Promise<void>
}

let buckets = 0

/**
 * A real S3-compatible server (moto's server mode, `python3 -m moto.server`; .ci/run checks it is installed)
 * on a free loopback port. It keeps everything in memory: a restart loses every bucket, so the tests that
 * want S3 away for a while freeze it instead.
 */
export async function startMoto(): Promise<TestMoto> {
  // freePort lets go of the port before moto binds it; another process may take it in between, so a failed
  // bind is tried again on a new port.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOn(await freePort())
    } catch (error) {
      if (attempt >= 3) throw error
    }
  }
}

async function startOn(port: number): Promise<TestMoto> {
  const child: ChildProcess = spawn('python3', ['-m', 'moto.server', '-H', '127.0.0.1', '-p', String(port)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout?.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4000)))
  child.stderr?.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4000)))
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const endpoint = `http://127.0.0.1:${port}`
  const clients: S3Client[] = []
  const storages: S3Storage[] = []

  const stop = async () => {
    for (const client of clients.splice(0)) client.destroy()
    for (const storage of storages.splice(0)) storage.close()
    if (child.exitCode !== null || child.signalCode !== null) return
    // A frozen moto would never see SIGTERM.
    child.kill('SIGCONT')
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
    await exited
    clearTimeout(timer)
  }

  try {
    await answering(child, exited, () => output)
  } catch (error) {
    await stop()
    throw error
  }
  const client = () => {
    const made = new S3Client({
      endpoint,
      region: MOTO_REGION,
      credentials: MOTO_CREDENTIALS,
      forcePathStyle: true,
    })
    clients.push(made)
    return made
  }
  const own = client()
  const settings = (bucket: string, prefix: string, over: Partial<S3Settings> = {}): S3Settings => ({
    bucket,
    endpoint,
    region: MOTO_REGION,
    prefix,
    forcePathStyle: true,
    timeoutMs: 10_000,
    presignMs: undefined,
    ...over,
  })
  return {
    endpoint,
    port,
    pid: child.pid!,
    env: (bucket, prefix) => ({
      S3_BUCKET: bucket,
      S3_ENDPOINT: endpoint,
      S3_REGION: MOTO_REGION,
      S3_FORCE_PATH_STYLE: 'true',
      AWS_ACCESS_KEY_ID: MOTO_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: MOTO_CREDENTIALS.secretAccessKey,
      ...(prefix === undefined ? {} : { S3_PREFIX: prefix }),
    }),
    client,
    settings,
    storage(bucket, prefix, over, options) {
      const storage = new S3Storage(settings(bucket, prefix, over), options)
      storages.push(storage)
      return storage
    },
    async createBucket(name = `test-${process.pid}-${++buckets}`) {
      await own.send(new CreateBucketCommand({ Bucket: name }))
      return name
    },
    freeze: () => void child.kill('SIGSTOP'),
    thaw: () => void child.kill('SIGCONT'),
    stop,
  }
}

/**
 * One moto for a test file, started before its tests (with the AWS SDK's default chain given moto's
 * credentials through the environment, as production gives it real ones) and stopped after them. The
 * returned function is the running moto, for use inside tests.
 */
export function motoForTests(): () => TestMoto {
  let moto: TestMoto | undefined
  beforeAll(async () => {
    process.env.AWS_ACCESS_KEY_ID = MOTO_CREDENTIALS.accessKeyId
    process.env.AWS_SECRET_ACCESS_KEY = MOTO_CREDENTIALS.secretAccessKey
    moto = await startMoto()
  }, 120_000) // 2 to 5 s on an idle machine, much longer with both cores busy
  afterAll(async () => {
    await moto?.stop()
  })
  return () => {
    if (!moto) throw new Error('moto has not started')
    return moto
  }
}

/** Resolves once moto says it listens (2 to 5 s on an idle machine); rejects if it exits first. */
function answering(child: ChildProcess, exited: Promise<void>, output: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`moto did not start within 40 s:\n${output()}`)), 40_000)
    const look = () => {
      if (!/Running on http:/.test(output())) return
      clearTimeout(timer)
      resolve()
    }
    child.stdout?.on('data', look)
    child.stderr?.on('data', look)
    void exited.then(() => {
      clearTimeout(timer)
      reject(new Error(`moto exited during start-up:\n${output()}`))
    })
  })
}
