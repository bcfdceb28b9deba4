// Sends `count` 16-byte uploads (REST multipart, or tus creation-with-upload; both at speed 0, as in figure 13), `concurrency` at a
// time, and prints the answers' statuses. Used by bench/syscalls.sh. SYSCALLS_SIZE and SYSCALLS_SPEED (bytes, bytes a
// second) send other uploads: 65536 and 32768 are figure 10's.
//   node --import tsx bench/syscalls-client.ts <url> <rest|tus> <count> [concurrency=16]
import { Agent, request } from 'node:http'

const [url, protocol, countArg, concurrencyArg = '16'] = process.argv.slice(2)
const count = Number(countArg)
const concurrency = Number(concurrencyArg)
const agent = new Agent({ keepAlive: true, maxSockets: concurrency })
const boundary = 'syscallsb0undary'
const bytes = Buffer.alloc(Number(process.env.SYSCALLS_SIZE ?? 16), 0x61)
const speed = process.env.SYSCALLS_SPEED ?? '0'
const tus = protocol === 'tus'
const body = tus
  ? bytes
  : Buffer.concat([
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="t.bin"\r\n` +
          'Content-Type: application/octet-stream\r\n\r\n',
      ),
      bytes,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ])
const headers = tus
  ? {
      'tus-resumable': '1.0.0',
      'upload-length': String(bytes.length),
      'upload-metadata': `filename ${Buffer.from('t.bin').toString('base64')},speed ${Buffer.from(speed).toString('base64')}`,
      'content-type': 'application/offset+octet-stream',
      'content-length': body.length,
    }
  : { 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': body.length }
const target = new URL(tus ? `${url}/files/` : `${url}/api/upload?speed=${speed}`)
const statuses: Record<string, number> = {}
const one = () =>
  new Promise<number>((resolve) => {
    const req = request(target, { method: 'POST', agent, headers }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', () => resolve(-1))
    req.end(body)
  })
let next = 0
await Promise.all(
  Array.from({ length: concurrency }, async () => {
    while (next++ < count) {
      const status = await one()
      statuses[status] = (statuses[status] ?? 0) + 1
    }
  }),
)
agent.destroy()
console.log(JSON.stringify(statuses))
