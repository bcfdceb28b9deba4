import { describe, expect, it } from 'vitest'
import * as ws from 'ws'
import { frameOf } from '../src/graphql/fanout.js'

/** ws's own frame parser (exported, not typed): what our hand-built frames are held to. */
interface FrameReader {
  on(event: 'message', listener: (data: Buffer, isBinary: boolean) => void): void
  on(event: 'error', listener: (error: Error) => void): void
  write(chunk: Buffer, done: () => void): void
}
const { Receiver } = ws as unknown as { Receiver: new (options: { isServer: boolean }) => FrameReader }

/** What a WebSocket peer reads from `frame`: its text messages, parsed by ws's Receiver. */
function read(frame: Buffer): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const messages: string[] = []
    const receiver = new Receiver({ isServer: false })
    receiver.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) reject(new Error('a binary frame'))
      messages.push(data.toString('utf8'))
    })
    receiver.on('error', reject)
    receiver.write(frame, () => resolve(messages))
  })
}

describe('a fan-out frame written straight to the socket', () => {
  // Each length class of RFC 6455's header: 7-bit, 16-bit and 64-bit payload lengths, and non-ASCII ids.
  for (const [name, id, size] of [
    ['short', '1', 10],
    ['16-bit length', 'sub-ü', 2000],
    ['64-bit length', 'x'.repeat(40), 70_000],
  ] as const)
    it(`is one whole graphql-ws next message a client reads as sent (${name})`, async () => {
      const payload = { data: { uploadProgress: { id: 'u', filename: 'é'.repeat(size) } } }
      const tail = Buffer.from(`${JSON.stringify(payload)}}`)
      const messages = await read(frameOf(id, tail))
      expect(messages).toHaveLength(1)
      expect(JSON.parse(messages[0]!)).toEqual({ id, type: 'next', payload })
    })
})
