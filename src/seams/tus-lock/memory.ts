import type { Locker } from '@tus/utils'

/**
 * @tus/server's MemoryLocker, as its Server would make by default. Loaded with @tus/server itself, on the
 * first tus request: most servers never see one, and it is most of what tus loads.
 */
export async function memoryLocker(): Promise<Locker> {
  const { MemoryLocker } = await import('@tus/server')
  return new MemoryLocker()
}
