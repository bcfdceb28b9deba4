const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/**
 * The bucket's layout, in one place, so that `aws s3 ls` finds an upload's bytes by its id:
 *
 *   {prefix}{id}/{safe name}     a complete, verified file (and, while it is written, its multipart upload)
 *   {prefix}.staging/{id}        the bytes as received in one body, kept until the transfer completes (and,
 *                                while they arrive, its multipart upload)
 *   {prefix}.staging/{id}/{offset}  a resumable (tus) upload's bytes, one object per piece as they came,
 *                                named by the offset it starts at (16 digits, so key order is byte order):
 *                                every instance reads any prefix of it, even while the rest still arrives
 *   {prefix}.arriving/{instance}/{id}  an empty marker while a body arrives at that instance (start-up
 *                                leaves a living instance's arrivals alone)
 *
 * The id is a folder of its own rather than a `{id}_` stem as on disk: a key has no name limit to fit, and
 * `aws s3 ls {prefix}{id}/` then lists exactly one upload's file. Staging sits under one dot-folder that no
 * id can be (ids are UUIDs), so nothing a client names can make a stored key look like a working one.
 */
export class S3Keys {
  constructor(readonly prefix: string) {}

  /** From the record's stored name, `{id}_{safe name}` (safe: made so at arrival, see filename.ts). */
  stored(upload: { id: string; storedName: string }): string {
    return `${this.prefix}${upload.id}/${upload.storedName.slice(upload.id.length + 1)}`
  }

  staging(upload: { id: string }): string {
    return `${this.prefix}.staging/${upload.id}`
  }

  /** A piece of a resumable upload's staged bytes, starting at `offset`. */
  piece(upload: { id: string }, offset: number): string {
    return `${this.staging(upload)}/${String(offset).padStart(16, '0')}`
  }

  /** Where a piece's key says it starts; undefined for any other key. */
  pieceStart(key: string): number | undefined {
    const match = /\/(\d{16})$/.exec(key)
    return match ? Number(match[1]) : undefined
  }

  arriving(upload: { id: string }, instance: string): string {
    return `${this.arrivingPrefix}${encodeURIComponent(instance)}/${upload.id}`
  }

  get arrivingPrefix(): string {
    return `${this.prefix}.arriving/`
  }

  /** The instance and upload of an arriving marker's key. */
  parseArriving(key: string): { instance: string; id: string } | undefined {
    if (!key.startsWith(this.arrivingPrefix)) return undefined
    const [instance, id, ...rest] = key.slice(this.arrivingPrefix.length).split('/')
    if (instance === undefined || id === undefined || rest.length > 0 || !UUID.test(id)) return undefined
    try {
      return { instance: decodeURIComponent(instance), id }
    } catch {
      return undefined
    }
  }

  /** Every key of staging, for a sweep. */
  get stagingPrefix(): string {
    return `${this.prefix}.staging/`
  }

  /**
   * The upload a key belongs to, and which of its keys it is; undefined for any key this layout does not
   * make (an operator's own objects under the prefix are never taken for ours).
   */
  parse(key: string): { id: string; kind: 'stored' | 'staging' } | undefined {
    if (!key.startsWith(this.prefix)) return undefined
    const rest = key.slice(this.prefix.length)
    if (rest.startsWith('.staging/')) {
      const [id = '', piece, ...more] = rest.slice('.staging/'.length).split('/')
      if (more.length > 0 || (piece !== undefined && !/^\d{16}$/.test(piece))) return undefined
      return UUID.test(id) ? { id, kind: 'staging' } : undefined
    }
    const slash = rest.indexOf('/')
    const id = rest.slice(0, slash)
    return slash > 0 && UUID.test(id) && rest.length > slash + 1 ? { id, kind: 'stored' } : undefined
  }
}
