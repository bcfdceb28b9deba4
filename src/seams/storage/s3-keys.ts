const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/**
 * The bucket's layout, in one place, so that `aws s3 ls` finds an upload's bytes by its id:
 *
 *   {prefix}{id}/{safe name}     a complete, verified file (and, while it is written, its multipart upload)
 *   {prefix}.staging/{id}        the bytes as received, kept until the transfer completes (and, while they
 *                                arrive, its multipart upload)
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
      const id = rest.slice('.staging/'.length)
      return UUID.test(id) ? { id, kind: 'staging' } : undefined
    }
    const slash = rest.indexOf('/')
    const id = rest.slice(0, slash)
    return slash > 0 && UUID.test(id) && rest.length > slash + 1 ? { id, kind: 'stored' } : undefined
  }
}
