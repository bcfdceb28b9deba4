import cliProgress from 'cli-progress'
import { formatBytes, formatDuration, formatRate, percent } from './units.js'

/** How a command shows itself: live bars on a terminal, plain lines otherwise, or NDJSON for programs. */
export type Mode = 'tty' | 'plain' | 'json'

export function modeFor(json: boolean, stdout: NodeJS.WriteStream = process.stdout): Mode {
  if (json) return 'json'
  return stdout.isTTY ? 'tty' : 'plain'
}

/**
 * A name from the server or the command line, made safe to print: control characters (which could move the
 * cursor or rewrite the screen), bidi overrides and line breaks become '?'.
 */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, '?')
}

/**
 * What a final line says of a completed file's sha256: all of it in plain lines (logs); nothing on a
 * terminal, whose rows are not wrapped while the bars run (`upctl status ID` shows it).
 */
export const hashNote = (sha256: string, mode: Mode): string => (mode === 'tty' ? '' : `, sha256 ${sha256}`)

/** One JSON object on a line of its own (NDJSON). */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`)
}

export function printLine(text = ''): void {
  process.stdout.write(`${text}\n`)
}

/** Where one file or upload stands, as a row of the display shows it. */
export interface Progress {
  /** What is happening: sending, storing, paused, receiving, queued. */
  stage: string
  done: number
  total: number
  /** Bytes per second now. */
  speed: number
  /** Bytes per second to reckon the time left with when `speed` is 0 (the target), or 0. */
  expected?: number
}

/** One file or upload on the display. */
export interface Row {
  update(progress: Progress): void
  /** Its final line: what happened. The row's last progress is shown first; then it stops changing. */
  finish(line: string): void
}

export interface Display {
  row(name: string, progress: Progress): Row
  /** A line of its own (above the bars on a terminal). */
  note(line: string): void
  /** Stops redrawing and leaves the screen as it is (the cursor shown again). */
  stop(): void
}

/** Seconds left at `speed` (or the expected speed when nothing moves now), if it can be told. */
function secondsLeft(progress: Progress): number | undefined {
  const rate = progress.speed > 0 ? progress.speed : (progress.expected ?? 0)
  if (rate <= 0) return undefined
  return Math.max(0, progress.total - progress.done) / rate
}

function fit(name: string, width: number): string {
  const chars = [...name]
  if (chars.length <= width) return chars.join('') + ' '.repeat(width - chars.length)
  return `${chars.slice(0, width - 1).join('')}…`
}

interface BarState {
  name: string
  progress: Progress
  final: string | undefined
}

/**
 * A row of the live display, its columns at fixed places so that nothing jumps as figures change, cut to the
 * terminal's width:
 * `name  stage  [████░░░░]  42%  1.2 MiB/3.0 MiB  256 KiB/s  7s left`.
 */
function renderBar(options: cliProgress.Options, width: number, state: BarState): string {
  if (state.final !== undefined) return state.final.slice(0, Math.max(0, width - 1))
  const { progress } = state
  const share = percent(progress.done, progress.total)
  const left = secondsLeft(progress)
  const eta =
    progress.stage === 'paused' ? 'paused' : left === undefined ? '--' : `${formatDuration(left)} left`
  const name = fit(state.name, width >= 110 ? 24 : 16)
  const head = `${name}  ${progress.stage.padEnd(9)} [`
  const tail = [
    `] ${String(share).padStart(3)}%`,
    `${formatBytes(progress.done)}/${formatBytes(progress.total)}`.padStart(19),
    formatRate(progress.speed).padStart(12),
    ` ${eta}`.padEnd(11),
  ].join(' ')
  const barsize = Math.max(10, Math.min(30, width - 1 - [...head].length - tail.length))
  const bar = cliProgress.Format.BarFormat(share / 100, { ...options, barsize })
  return `${head}${bar}${tail}`.trimEnd().slice(0, Math.max(0, width - 1))
}

/** Live bars with cli-progress, one a row, on stdout (a terminal). */
class BarDisplay implements Display {
  private readonly bars = new cliProgress.MultiBar({
    stream: process.stdout,
    format: (options, params, payload: BarState) => renderBar(options, params.maxWidth, payload),
    barCompleteChar: '█',
    barIncompleteChar: '░',
    hideCursor: true,
    // A final line written above the bars moves them down a row: each is drawn again, changed or not.
    forceRedraw: true,
    clearOnComplete: true,
    // upctl stops the bars itself on Ctrl-C, then says how to go on.
    gracefulExit: false,
    fps: 10,
  })

  row(name: string, progress: Progress): Row {
    const state: BarState = { name: printable(name), progress, final: undefined }
    const bar = this.bars.create(progress.total, progress.done, state)
    return {
      update: (next) => {
        if (state.final !== undefined) return
        // Frames are drawn 10 times a second: a stage's last one (all of it sent, say) is drawn before the next
        // stage replaces it, or it might never be seen.
        if (next.stage !== state.progress.stage) this.bars.update()
        state.progress = next
        bar.setTotal(next.total)
        bar.update(next.done)
      },
      finish: (line) => {
        if (state.final !== undefined) return
        // Where the row ended (100 % for a finished file) is drawn before its final line replaces it.
        this.bars.update()
        state.final = line
        // The final line goes above the rows still moving, and stays.
        this.bars.log(`${line}\n`)
        this.bars.remove(bar)
      },
    }
  }

  note(line: string): void {
    this.bars.log(`${line}\n`)
    this.bars.update()
  }

  stop(): void {
    this.bars.update()
    this.bars.stop()
  }
}

/** Plain lines for logs and pipes: a line when a row changes stage, passes a tenth, and ends. */
class LineDisplay implements Display {
  row(name: string): Row {
    const shown = printable(name)
    let stage = ''
    let tenth = -1
    let over = false
    const update = (next: Progress) => {
      if (over) return
      const share = percent(next.done, next.total)
      if (next.stage === stage && Math.floor(share / 10) === tenth) return
      stage = next.stage
      tenth = Math.floor(share / 10)
      const left = secondsLeft(next)
      const rate = next.stage === 'paused' || next.speed === 0 ? '' : `, ${formatRate(next.speed)}`
      const eta = left === undefined || next.stage === 'paused' ? '' : `, ${formatDuration(left)} left`
      printLine(
        `${shown}: ${next.stage} ${share}% (${formatBytes(next.done)} of ${formatBytes(next.total)}${rate}${eta})`,
      )
    }
    return {
      update,
      finish: (line) => {
        if (over) return
        over = true
        printLine(line)
      },
    }
  }

  note(line: string): void {
    printLine(line)
  }

  stop(): void {}
}

/** Nothing on the screen: with --json, commands write their events themselves. */
class SilentDisplay implements Display {
  row(): Row {
    return { update: () => undefined, finish: () => undefined }
  }
  note(): void {}
  stop(): void {}
}

/** The display for `mode`; `quiet` shows nothing (the command prints what it must itself). */
export function createDisplay(mode: Mode, quiet = false): Display {
  if (mode === 'tty') return new BarDisplay()
  if (mode === 'plain' && !quiet) return new LineDisplay()
  return new SilentDisplay()
}

/** The speed of bytes counted as they go, over about the last two seconds. */
export class RateMeter {
  private readonly samples: { at: number; bytes: number }[] = []

  /** Records that `bytes` have gone in all, and answers the speed now, in bytes per second. */
  add(bytes: number, at = performance.now()): number {
    this.samples.push({ at, bytes })
    while (this.samples.length > 2 && at - (this.samples[1]?.at ?? at) > 2000) this.samples.shift()
    const first = this.samples[0]
    if (!first || at - first.at < 200) return 0
    return Math.max(0, Math.round(((bytes - first.bytes) * 1000) / (at - first.at)))
  }
}
