import autocannon from 'autocannon'
import { join } from 'node:path'
import {
  KiB,
  makeFile,
  median,
  perOp,
  postMultipart,
  startBare,
  startServer,
  startYogaPeer,
  withCpu,
  type Row,
} from './lib.js'

/** Connections autocannon holds open (BENCH_CONNECTIONS; 32 as issue 22 asks). */
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32)
/** Seconds of load per server and round (BENCH_STATUS_SECONDS). */
const SECONDS = Number(process.env.BENCH_STATUS_SECONDS ?? 3)
/** Rounds in which the servers take turns (BENCH_STATUS_ROUNDS). */
const ROUNDS = Number(process.env.BENCH_STATUS_ROUNDS ?? 3)

interface Load {
  rps: number
  cpuPerRequest: number
}

const FIELDS = 'status filename uploadedSize totalSize currentSpeed targetSpeed'

/** Requests a second, and server CPU seconds per request (every thread of `pid`), from one autocannon run. */
async function load(
  pid: number,
  url: string,
  opts: { method?: 'GET' | 'POST'; body?: string; headers?: Record<string, string> } = {},
  seconds = SECONDS,
): Promise<Load> {
  const { result, cpu } = await withCpu(
    pid,
    () =>
      new Promise<autocannon.Result>((resolve, reject) =>
        autocannon({ url, connections: CONNECTIONS, duration: seconds, ...opts }, (error, r) =>
          error ? reject(error) : resolve(r),
        ),
      ),
  )
  if (result.non2xx > 0 || result.errors > 0)
    throw new Error(`${url}: ${result.non2xx} answers not 2xx, ${result.errors} errors`)
  return { rps: result.requests.average, cpuPerRequest: cpu / result.requests.total }
}

const graphqlBody = (id: string) => ({
  method: 'POST' as const,
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ query: `{ upload(id: "${id}") { ${FIELDS} } }` }),
})

const cpuText = (ours: number, peer: number, peerName: string) =>
  `${perOp(ours, 1, 'req')} (${peerName} ${perOp(peer, 1, 'req')}, ${(ours / peer).toFixed(1)}x)`

/**
 * 8: requests a second and server CPU per request on the status endpoints, `CONNECTIONS` connections from
 * the same client (autocannon, in this process), against a bare Node handler answering the same JSON and a
 * plain graphql-yoga with our SDL whose resolver answers the same object from memory (with its body limit
 * off, as ours has it, and as it comes), each in its own process, taking turns in the same run.
 */
export async function status(scratch: string): Promise<Row[]> {
  const bare = await startBare(scratch)
  const yogaDefaultPeer = await startYogaPeer(false)
  const yogaPeer = await startYogaPeer(true)
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
    // Every server is up and idle while another is loaded; they take turns for ROUNDS rounds, so that a
    // spell of the machine's noise falls on all of them alike, and each figure is the median of its rounds.
    const targets = {
      bare: (seconds?: number) => load(bare.pid, `${bare.url}/status`, {}, seconds),
      yogaDefault: (seconds?: number) =>
        load(yogaDefaultPeer.pid, `${yogaDefaultPeer.url}/graphql`, graphqlBody('peer'), seconds),
      yoga: (seconds?: number) => load(yogaPeer.pid, `${yogaPeer.url}/graphql`, graphqlBody('peer'), seconds),
      rest: (seconds?: number) => load(server.pid, `${server.url}/api/upload/${id}/status`, {}, seconds),
      graphql: (seconds?: number) => load(server.pid, `${server.url}/graphql`, graphqlBody(id), seconds),
    }
    const rounds: Record<keyof typeof targets, Load[]> = {
      bare: [],
      yogaDefault: [],
      yoga: [],
      rest: [],
      graphql: [],
    }
    // A first turn each, not counted: the JIT warms up on it.
    for (const run of Object.values(targets)) await run(1)
    for (let round = 0; round < ROUNDS; round++)
      for (const [name, run] of Object.entries(targets))
        rounds[name as keyof typeof targets].push(await run())
    const pick = (loads: Load[]): Load => ({
      rps: median(loads.map((l) => l.rps)),
      cpuPerRequest: median(loads.map((l) => l.cpuPerRequest)),
    })
    const bareLoad = pick(rounds.bare)
    const yogaDefault = pick(rounds.yogaDefault)
    const yogaLoad = pick(rounds.yoga)
    const rest = pick(rounds.rest)
    const graphql = pick(rounds.graphql)
    const conns = `${CONNECTIONS} connections`
    return [
      {
        figure: '8 status',
        measure: `GET /api/upload/{id}/status, ${conns}`,
        value: rest.rps,
        unit: 'req/s',
        baseline: { name: 'bare Node handler, same JSON', value: bareLoad.rps },
        ratio: rest.rps / bareLoad.rps,
        target: '≥ 0.6x',
        pass: rest.rps / bareLoad.rps >= 0.6,
        cpu: cpuText(rest.cpuPerRequest, bareLoad.cpuPerRequest, 'bare'),
      },
      {
        figure: '8 status',
        measure: `GraphQL upload(id) query, ${conns}`,
        value: graphql.rps,
        unit: 'req/s',
        baseline: {
          name: 'plain graphql-yoga, same SDL, from memory, body limit off as ours',
          value: yogaLoad.rps,
        },
        ratio: graphql.rps / yogaLoad.rps,
        target: '≥ 1.5x',
        pass: graphql.rps / yogaLoad.rps >= 1.5,
        cpu: cpuText(graphql.cpuPerRequest, yogaLoad.cpuPerRequest, 'yoga'),
      },
      {
        figure: '8 status',
        measure: `GraphQL upload(id) query, ${conns}`,
        value: graphql.rps,
        unit: 'req/s',
        baseline: { name: 'plain graphql-yoga, same SDL, from memory, its defaults', value: yogaDefault.rps },
        ratio: graphql.rps / yogaDefault.rps,
        target: '(reference: yoga as it comes)',
        cpu: cpuText(graphql.cpuPerRequest, yogaDefault.cpuPerRequest, 'yoga'),
      },
      {
        figure: '8 status',
        measure: `GraphQL upload(id) query, ${conns}`,
        value: graphql.rps,
        unit: 'req/s',
        baseline: { name: 'bare Node handler, same JSON', value: bareLoad.rps },
        ratio: graphql.rps / bareLoad.rps,
        target: '≥ 0.3x',
        pass: graphql.rps / bareLoad.rps >= 0.3,
        cpu: cpuText(graphql.cpuPerRequest, bareLoad.cpuPerRequest, 'bare'),
      },
    ]
  } finally {
    await Promise.all([server.stop(), bare.stop(), yogaDefaultPeer.stop(), yogaPeer.stop()])
  }
}
