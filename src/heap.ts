import { setFlagsFromString } from 'node:v8'

/**
 * The young generation stays at its initial size (1 MiB semi-spaces) instead of growing to 16 MiB ones.
 * V8 grows it after busy scavenges, and a grown one is not given back: it was 16-32 MiB of an idle server's
 * resident memory, and the first upload's growth (issue 22). Set here, by the server itself, so it holds
 * however it is started (npm start, node dist/main.js, a test's child): `--max-semi-space-size` on the
 * command line would, but only where someone remembers to pass it. The growth factor is read at each
 * scavenge, which is why it still takes effect after start-up (the maximum is fixed when the heap is made).
 * Imported first by main.ts, before anything allocates much.
 */
setFlagsFromString('--semi-space-growth-factor=1')
