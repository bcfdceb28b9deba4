import { mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { SignJWT } from 'jose'
import { median, startServer, waitReady, withCpu, perOp, ms, now, type Row } from './lib.js'
import { records, writeState } from './state.js'

const FIGURE = '18 usage'
const OTHERS = 10_000
const MINE = 10
const ASKS = 200
const SECRET = 'bench-usage-secret-of-at-least-32-bytes'
const ISSUER = 'https://issuer.bench'
const AUDIENCE = 'uploads-bench'

/**
 * What `me { usage }` costs a user with 10 uploads on a server that holds 10,000 of other users (issue 24):
 * the usage every quota admission counts. Answered from the records of the caller alone it does not grow with
 * everyone else's. Median answer time of ASKS asked one after another, and the server's CPU per answer.
 * With BENCH_PARENT, the same run measures the parent tree's server beside this one's.
 */
export async function usage(scratch: string): Promise<Row[]> {
  const dir = await mkdtemp(join(scratch, 'usage-'))
  try {
    const all = records(OTHERS + MINE).map((record, i) => ({
      ...record,
      // Spread over 100 other users; the last MINE are the caller's, the newest ones.
      owner: i < OTHERS ? `user-${i % 100}` : 'me',
    }))
    await writeState(dir, all, false)
    const server = await startServer({
      UPLOAD_DIR: dir,
      AUTH_JWT_SECRET: SECRET,
      AUTH_ISSUER: ISSUER,
      AUTH_AUDIENCE: AUDIENCE,
      // Every user limited, so usage is the figure quota admission counts.
      AUTH_QUOTA_BYTES: String(1024 ** 4),
    })
    try {
      await waitReady(server.url, 120_000, 5)
      const token = await new SignJWT({ scope: 'uploads:read uploads:write' })
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject('me')
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setIssuedAt()
        .setExpirationTime('1h')
        .sign(new TextEncoder().encode(SECRET))
      const ask = async () => {
        const response = await fetch(`${server.url}/graphql`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            accept: 'application/json',
            authorization: `Bearer ${token}`,
          },
          body: JSON.stringify({ query: '{ me { usage { bytesStored running } } }' }),
        })
        const body = (await response.json()) as {
          data?: { me: { usage: { bytesStored: number } } }
          errors?: unknown
        }
        if (body.data?.me.usage.bytesStored !== MINE * 1024)
          throw new Error(`unexpected answer: ${JSON.stringify(body)}`)
      }
      for (let i = 0; i < 10; i++) await ask() // warm
      const times: number[] = []
      const { cpu } = await withCpu(server.pid, async () => {
        for (let i = 0; i < ASKS; i++) {
          const began = now()
          await ask()
          times.push(now() - began)
        }
      })
      const value = median(times)
      return [
        {
          figure: FIGURE,
          measure: `me { usage }: ${MINE} uploads of the caller among ${OTHERS} of others (embedded), median of ${ASKS}`,
          value,
          unit: 'ms',
          target: '< 10 ms',
          pass: value < 10,
          cpu: `${perOp(cpu, ASKS, 'ask')} (p50 ${ms(value)} ms)`,
        },
      ]
    } finally {
      await server.stop()
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}
