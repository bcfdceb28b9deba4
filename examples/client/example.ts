/**
 * Uploads a file at a speed, follows its progress live, pauses it half-way and resumes it at full speed:
 *
 *   npx tsx examples/client/example.ts ./some-file.bin [http://127.0.0.1:8000]
 */
import { openAsBlob } from 'node:fs'
import { basename } from 'node:path'
import { connect } from './client.js'
import { PauseUpload, ResumeUpload, UploadFile, UploadProgress } from './operations.js'

export async function run(path: string, url: string, log: (line: string) => void = console.log) {
  const client = connect(url, process.env.API_TOKEN)
  try {
    const { uploadFile } = await client.upload(
      UploadFile,
      { file: null, speed: 64 * 1024 },
      await openAsBlob(path),
      basename(path),
    )
    log(
      `uploaded ${uploadFile.filename} (${uploadFile.totalSize} bytes) as ${uploadFile.id}, storing at ${uploadFile.targetSpeed} B/s`,
    )
    let paused = false
    const seen: string[] = []
    for await (const { uploadProgress: p } of client.subscribe(UploadProgress, { id: uploadFile.id })) {
      seen.push(p.status)
      log(`${p.status} ${p.uploadedSize}/${p.totalSize} at ${p.currentSpeed} B/s`)
      if (!paused && p.status === 'IN_PROGRESS' && p.uploadedSize * 2 >= p.totalSize) {
        paused = true
        const { pauseUpload } = await client.request(PauseUpload, { id: uploadFile.id })
        log(`paused at ${pauseUpload.uploadedSize}`)
        await client.request(ResumeUpload, { id: uploadFile.id, speed: 0 })
      }
    }
    return { id: uploadFile.id, sha256: uploadFile.sha256, statuses: seen }
  } finally {
    await client.close()
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [path, url = 'http://127.0.0.1:8000'] = process.argv.slice(2)
  if (!path) {
    console.error('usage: example.ts FILE [SERVER_URL]')
    process.exit(2)
  }
  const { statuses } = await run(path, url)
  process.exit(statuses.at(-1) === 'COMPLETED' ? 0 : 1)
}
