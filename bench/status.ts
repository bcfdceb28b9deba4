import autocannon from 'autocannon'
import { join } from 'node:path'
import { KiB, makeFile, postMultipart, startBare, startServer, type Row } from './lib.js'

function load(
  url: string,
  opts: { method?: 'GET' | 'POST'; body?: string; headers?: Record<string, string> } = {},
) {
  return new Promise<number>((resolve, reject) =>
    autocannon({ url, connections: 10, duration: 5, ...opts }, (error, result) =>
      error ? reject(error) : resolve(result.requests.average),
    ),
  )
}

/** 8: requests per second on the status endpoints, against a bare Node handler answering the same JSON. */
export async function status(scratch: string): Promise<Row[]> {
  const bare = await startBare(scratch)
  const bareRps = await load(`${bare.url}/status`)
  bare.stop()

  const server = await startServer()
  try {
    const file = join(scratch, 'status')
    await makeFile(file, 64 * KiB)
    const answer = await postMultipart(`${server.url}/api/upload?speed=1024`, [], {
      field: 'file',
      path: file,
      size: 64 * KiB,
      name: 'data.bin',
    })
    const { upload_id: id } = JSON.parse(answer.text) as { upload_id: string }
    const restRps = await load(`${server.url}/api/upload/${id}/status`)
    const graphqlRps = await load(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        query: `{ upload(id: "${id}") { status filename uploadedSize totalSize currentSpeed targetSpeed } }`,
      }),
    })
    return [
      {
        figure: '8 status',
        measure: 'GET /api/upload/{id}/status',
        value: restRps,
        unit: 'req/s',
        baseline: { name: 'bare Node handler, same JSON', value: bareRps },
        ratio: restRps / bareRps,
        target: '≥ 0.5x',
        pass: restRps / bareRps >= 0.5,
      },
      {
        figure: '8 status',
        measure: 'GraphQL upload(id) query',
        value: graphqlRps,
        unit: 'req/s',
        baseline: { name: 'bare Node handler, same JSON', value: bareRps },
        ratio: graphqlRps / bareRps,
        target: '≥ 0.3x',
        pass: graphqlRps / bareRps >= 0.3,
      },
    ]
  } finally {
    await server.stop()
  }
}
