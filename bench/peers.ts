/**
 * The peers a user would pick instead of us, each run as its own process (as ours runs in its own), started
 * by the figures beside our server and loaded by the same client:
 *
 *   node --import tsx bench/peers.ts tus <dir>   @tus/server + @tus/file-store, bare: what the tus peer does
 *                                                with every default (creation-with-upload included)
 *   node --import tsx bench/peers.ts yoga [unlimited]
 *                                                a plain graphql-yoga server with our SDL, whose resolvers
 *                                                answer the same object from memory: the framework's own cost.
 *                                                With `unlimited`, yoga's body limit is off as it is in ours
 *                                                (maxRequestBodySize: false: its counting stream cost a plain
 *                                                yoga 2.5-4x the CPU per request in a first measurement)
 *
 * Each prints `<name> on http://127.0.0.1:<port>` once it listens.
 */
import { readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { FileStore } from '@tus/file-store'
import { Server as TusServer } from '@tus/server'
import { makeExecutableSchema } from '@graphql-tools/schema'
import { createYoga } from 'graphql-yoga'
import { ROOT } from './lib.js'

const [mode = '', arg = ''] = process.argv.slice(2)

/** The object every upload(id) answers: the fields our status figures ask for, and the rest of the type. */
const UPLOAD = {
  id: 'peer',
  filename: 'data.bin',
  storedName: 'peer_data.bin',
  status: 'IN_PROGRESS',
  receivedSize: 1073741824,
  source: 'MULTIPART',
  expiresAt: null,
  receivedAt: '2026-12-01T00:00:00.000Z',
  uploadedSize: 1234567,
  totalSize: 1073741824,
  currentSpeed: 262145,
  targetSpeed: 262144,
  sha256: '',
  error: null,
  downloadUrl: null,
  createdAt: '2026-12-01T00:00:00.000Z',
  updatedAt: '2026-12-01T00:00:00.000Z',
  completedAt: null,
  cursor: 'peer',
}

function tus(): Server {
  const server = new TusServer({ path: '/files', datastore: new FileStore({ directory: arg || '/tmp' }) })
  const http = createServer((req, res) => void server.handle(req, res))
  http.requestTimeout = 0
  return http
}

function yoga(): Server {
  const typeDefs = readFileSync(join(ROOT, 'schema', 'schema.graphql'), 'utf8')
  const schema = makeExecutableSchema({
    typeDefs,
    resolvers: { Query: { upload: () => UPLOAD } },
  })
  const unlimited = arg === 'unlimited'
  return createServer(
    createYoga({ schema, logging: false, ...(unlimited ? { maxRequestBodySize: false } : {}) }),
  )
}

const servers: Record<string, () => Server> = { tus, yoga }
const make = servers[mode]
if (!make) {
  console.error(`unknown peer ${mode}: one of ${Object.keys(servers).join(', ')}`)
  process.exit(1)
}
const server = make()
server.listen(0, '127.0.0.1', () =>
  console.log(`${mode} on http://127.0.0.1:${(server.address() as AddressInfo).port}`),
)
// A clean exit on SIGTERM/SIGINT, so that `node --cpu-prof bench/peers.ts …` writes its profile.
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => process.exit(0))
