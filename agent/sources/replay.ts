/**
 * Replays a candump log (`candump -L` / `-l` format) as if it were a live bus.
 *
 * Timestamps: a console user watching a replay expects "now", and everything downstream (console
 * resume, relay ageing) assumes frames are recent, so frames carry the wall-clock time at which they are
 * emitted, not the recording time. At speed > 0 a frame's tsUs is its scheduled emission time, which keeps
 * the recorded spacing between frames exact (timer jitter would otherwise smear bursts); it is never more
 * than LATE_LIMIT_US behind the real clock. CanFrame has no field for the recording time; position()
 * reports the recorded time of the last emitted frame for status displays.
 *
 * The file is read in large chunks and parsed with CandumpReader, so a 1 GB log costs one chunk of memory.
 * A regular file is checked at start: a known foreign format (replay-input.ts) or a file without a single
 * valid frame is refused with a StartupError (exit 2) saying what it is; a pipe that ends without a valid
 * frame is reported as an error, never as delivered.
 */
import type { FileHandle } from 'node:fs/promises';
import { monotonicUsClock, sendProblem, type CanFrame } from '../../core/can/frame.js';
import { CandumpReader, type CandumpRecord } from '../../core/can/candump.js';
import { EXIT_USAGE, StartupError } from '../../core/cli/exit-codes.js';
import { firstLine, foreignFormat } from './replay-input.js';
import { openReplayReader, type ReplayReader } from './replay-reader.js';
import type { FrameSource, SendResult, SourceSink } from './source.js';

export interface ReplayOptions {
  /** Path of the candump log. */
  file: string;
  /** 1 = recorded timing, 2 = twice as fast, 0 = as fast as possible. */
  speed: number;
  /** Start over at the end of the file instead of ending. */
  loop: boolean;
  /** Wall clock in microseconds since the Unix epoch (tests inject one). Default: Date.now() anchored, advanced by performance.now(). */
  now?: () => number;
  /** Bytes per read; the default suits both speed-0 throughput and memory. */
  chunkSize?: number;
}

export interface ReplayPosition {
  /** 0 for the first pass through the file, then 1, 2, … when looping. */
  pass: number;
  /** Line number (1-based) of the last emitted frame, 0 before the first. */
  line: number;
  /** Recording timestamp (µs since the epoch, from the log) of the last emitted frame, null before the first. */
  recordedTsUs: number | null;
  framesEmitted: number;
}

/** Frames emitted in a row before yielding to the event loop, so HTTP clients keep being served. */
const YIELD_EVERY = 1000;
/** Individually logged malformed lines; after that, one summary per SUMMARY_INTERVAL_US. */
const LOGGED_REJECTS = 20;
const SUMMARY_INTERVAL_US = 1_000_000;
/** A frame emitted later than this after its scheduled time gets the real clock as tsUs. */
const LATE_LIMIT_US = 20_000;
/** Behind schedule by more than this (process stalled, laptop slept): shift the schedule instead of bursting. */
const REANCHOR_US = 1_000_000;
/** Frames due within this much of now are emitted at once rather than waiting for a timer. */
const EARLY_US = 500;

export class ReplaySource implements FrameSource {
  readonly kind = 'replay' as const;

  private readonly file: string;
  private readonly speed: number;
  private readonly loop: boolean;
  private readonly now: () => number;
  private readonly chunkSize: number;

  private sink: SourceSink | null = null;
  private input: ReplayReader | null = null;
  /** Regular files are read by position (so a loop can rewind); pipes sequentially. */
  private seekable = true;
  private running = false;
  private stopped = false;
  private pump: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private sleepTimer: NodeJS.Timeout | null = null;

  private readonly busList: string[] = [];
  private lastBus = '';

  // Timing (µs). A pass maps recorded time onto wall time: due = passWall + (recorded - passRec) / speed.
  private passRec = -1;
  private passWall = 0;
  private lastDue = 0;
  private lastTs = 0;
  private recStartOfPass = -1;
  private recEndOfPass = -1;

  private pass = 0;
  private lastLine = 0;
  private lastRecorded: number | null = null;
  private emitted = 0;
  private passFrames = 0;
  private emittedInFirstPass = 0;
  private sinceYield = 0;

  private rejected = 0;
  /** The first bytes read (a pipe's, to say what it was if no frame came). */
  private head: Buffer | undefined;
  private rejectsLogged = 0;
  private rejectsSuppressed = 0;
  private lastSummaryUs = 0;

  constructor(options: ReplayOptions) {
    if (typeof options.file !== 'string' || options.file.length === 0) throw new Error('replay needs a file path');
    if (!Number.isFinite(options.speed) || options.speed < 0) {
      throw new Error(`replay speed must be a number >= 0 (1 = recorded timing, 0 = as fast as possible), got ${options.speed}`);
    }
    this.file = options.file;
    this.speed = options.speed;
    this.loop = options.loop;
    this.now = options.now ?? monotonicUsClock();
    this.chunkSize = Math.max(4096, options.chunkSize ?? 256 * 1024);
  }

  buses(): string[] {
    return [...this.busList];
  }

  /** Malformed lines skipped (counted on the first pass only: later passes see the same lines). */
  rejectedLines(): number {
    return this.rejected;
  }

  position(): ReplayPosition {
    return { pass: this.pass, line: this.lastLine, recordedTsUs: this.lastRecorded, framesEmitted: this.emitted };
  }

  async start(sink: SourceSink): Promise<void> {
    if (this.sink) throw new Error('replay already started; create a new ReplaySource to replay again');
    let input: ReplayReader;
    try {
      input = await openReplayReader(this.file);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'EACCES' || code === 'EPERM')
        throw new Error(`cannot open replay file ${JSON.stringify(this.file)}: ${reason(e)}; check the path given to --replay`);
      throw new Error(`cannot read replay file ${JSON.stringify(this.file)}: ${reason(e)}; give a candump -L log file`);
    }
    this.seekable = input.seekable;
    if (input.file !== undefined && this.seekable) {
      try {
        await this.checkFile(input.file);
      } catch (e) {
        await input.close();
        throw e;
      }
    }
    this.input = input;
    this.sink = sink;
    this.running = true;
    this.pump = this.run().catch((e: unknown) => {
      // run() handles its own errors; this is a last resort so a bug cannot become an unhandled rejection.
      sink.log('error', `replay of ${this.file} failed: ${reason(e)}`, 'replay_failed');
    });
  }

  send(frame: CanFrame): SendResult {
    // A replay that reached its end still stands for its buses: transmits go on until the agent stops.
    if (this.stopped || (this.busList.length === 0 && !this.running)) return { ok: false, busy: false, error: 'the replay is not running' };
    if (!this.busList.includes(frame.bus)) {
      const known = this.busList.length > 0 ? this.busList.join(', ') : 'none yet';
      return {
        ok: false,
        busy: false,
        error: `the replay has no bus ${JSON.stringify(frame.bus)} (buses in ${this.file}: ${known})`,
      };
    }
    const problem = sendProblem(frame);
    if (problem) return { ok: false, busy: false, error: `cannot send this frame: ${problem}` };
    // The replayed bus is virtual: a transmit "succeeds" and is shown as tx; nothing is written anywhere.
    return { ok: true, tsUs: this.monotonicNow() };
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const wasRunning = this.running;
    this.running = false;
    this.interruptSleep();
    // A pipe's pending read ends with its close; a file's read ends by itself.
    if (!this.seekable) await this.input?.close();
    await this.pump;
    await this.input?.close();
    this.input = null;
    if (wasRunning && this.sink) {
      this.flushRejectSummary();
      for (const bus of this.busList) this.sink.busState(bus, 'down', 'replay stopped');
    }
  }

  // ---------------------------------------------------------------------------------------------------

  /** Refuses a regular file that is a foreign format or holds no valid frame; reads until the first valid frame. */
  private async checkFile(fh: FileHandle): Promise<void> {
    const buf = Buffer.allocUnsafe(this.chunkSize);
    const reader = new CandumpReader();
    let pos = 0;
    let head: Buffer | undefined;
    let lines = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      const records = bytesRead === 0 ? reader.end() : reader.push(buf.subarray(0, bytesRead));
      if (head === undefined) {
        head = Buffer.from(buf.subarray(0, bytesRead));
        const foreign = foreignFormat(head);
        if (foreign) throw new StartupError(`replay file ${JSON.stringify(this.file)} is not a candump -L log: it is ${foreign}`, EXIT_USAGE);
      }
      if (records.some((r) => r.ok)) return;
      lines += records.length;
      if (bytesRead === 0) break;
      pos += bytesRead;
    }
    const what =
      lines === 0
        ? 'it is empty (or only blank lines and comments)'
        : `none of its ${lines} line${lines === 1 ? '' : 's'} is a candump -L frame (the first: ${JSON.stringify(firstLine(head))})`;
    throw new StartupError(`replay file ${JSON.stringify(this.file)} holds no frame to replay: ${what}; give a log recorded with candump -L`, EXIT_USAGE);
  }

  private async run(): Promise<void> {
    const sink = this.sink!;
    const reader = new CandumpReader();
    const buf = Buffer.allocUnsafe(this.chunkSize);
    try {
      for (;;) {
        reader.reset();
        this.startPass();
        let pos = 0;
        for (;;) {
          if (this.stopped) return;
          const bytesRead = await this.input!.read(buf, pos);
          if (this.stopped) return;
          if (bytesRead === 0) break;
          if (this.head === undefined) this.head = Buffer.from(buf.subarray(0, Math.min(bytesRead, 4096)));
          pos += bytesRead;
          // push() decodes the bytes into a string, so `buf` can be reused for the next read.
          await this.deliver(reader.push(buf.subarray(0, bytesRead)));
        }
        await this.deliver(reader.end());
        if (this.stopped) return;
        this.flushRejectSummary();
        if (this.passFrames === 0 && !this.loop) {
          // A pipe (a regular file is checked at start): never claim that nothing was everything.
          const head = this.head ?? Buffer.alloc(0);
          const what =
            foreignFormat(head) ??
            (this.rejected > 0 ? `none of its ${this.rejected} lines is a candump -L frame (the first: ${JSON.stringify(firstLine(head))})` : 'it was empty');
          sink.log('error', `replay input ${this.file} ended without a single frame to replay: ${what}`, 'replay_no_frames');
          this.running = false;
          return;
        }
        if (!this.loop) break;
        if (this.passFrames === 0) {
          sink.log('error', `replay file ${this.file} contains no valid frames; not looping over it`, 'replay_no_frames');
          break;
        }
        if (!this.seekable) {
          sink.log('warn', `replay input ${this.file} is not a regular file and cannot be rewound; stopping at its end`, 'replay_no_loop');
          break;
        }
        this.pass++;
      }
    } catch (e) {
      if (this.stopped) return;
      // Not "finished": what follows the failed read was never delivered. The buses go down, as at a stop.
      sink.log('error', `reading replay file ${this.file} failed after ${this.emitted} frames: ${reason(e)}; the rest of the file is not replayed`, 'replay_read_failed');
      this.running = false;
      for (const bus of this.busList) sink.busState(bus, 'down', 'replay file unreadable');
      await this.input?.close();
      this.input = null;
      return;
    }
    if (this.stopped) return;
    this.running = false;
    await this.input?.close();
    this.input = null;
    sink.log('info', `replay finished: all ${this.emitted} frames of the file were delivered`, 'replay_ended', { frames: this.emitted });
  }

  private startPass(): void {
    this.passFrames = 0;
    this.passRec = -1;
    if (this.pass > 0 && this.speed > 0) {
      // Continue right after the previous pass, one average frame spacing later, so time keeps going forward.
      const n = Math.max(1, this.emittedInFirstPass - 1);
      const gap = this.recEndOfPass > this.recStartOfPass ? (this.recEndOfPass - this.recStartOfPass) / n / this.speed : 0;
      this.passWall = this.lastDue + gap;
    }
  }

  /** Emits the records of one chunk, pacing them at speed > 0. */
  private async deliver(records: CandumpRecord[]): Promise<void> {
    const sink = this.sink!;
    for (let k = 0; k < records.length; k++) {
      if (this.stopped) return;
      const rec = records[k]!;
      if (!rec.ok) {
        if (this.pass === 0) this.noteRejected(rec.line, rec.error, rec.text);
        continue;
      }
      const frame = rec.frame;
      const recorded = frame.tsUs;

      if (this.speed === 0) {
        const now = this.now();
        frame.tsUs = Math.max(now, this.lastTs);
      } else {
        let due: number;
        if (this.passRec < 0) {
          this.passRec = recorded;
          if (this.pass === 0) this.passWall = this.now();
          due = this.passWall;
        } else {
          due = this.passWall + (recorded - this.passRec) / this.speed;
        }
        // Logs merged from several interfaces can step back in time: never schedule before the previous frame.
        if (due < this.lastDue) due = this.lastDue;
        let now = this.now();
        while (due - now > EARLY_US) {
          await this.sleep(due - now);
          if (this.stopped) return;
          now = this.now();
          this.sinceYield = 0;
        }
        if (now - due > REANCHOR_US) {
          this.passWall += now - due;
          due = now;
        }
        this.lastDue = due;
        // Scheduled time, unless that is in the future (emitted a little early) or too far in the past.
        const ts = due > now || now - due > LATE_LIMIT_US ? now : Math.floor(due);
        frame.tsUs = Math.max(ts, this.lastTs);
      }
      this.lastTs = frame.tsUs;

      if (frame.bus !== this.lastBus) this.noteBus(frame.bus);
      if (this.pass === 0) {
        if (this.recStartOfPass < 0) this.recStartOfPass = recorded;
        this.recEndOfPass = recorded;
        this.emittedInFirstPass++;
      }
      this.lastLine = rec.line;
      this.lastRecorded = recorded;
      this.emitted++;
      this.passFrames++;
      sink.frame(frame);

      if (this.rejectsSuppressed > 0 && this.now() - this.lastSummaryUs >= SUMMARY_INTERVAL_US) this.flushRejectSummary();
      if (++this.sinceYield >= YIELD_EVERY) {
        this.sinceYield = 0;
        await new Promise<void>((resolve) => setImmediate(resolve));
        // Flat out means as fast as the agent can take them: wait while the uplink is backed up.
        while (this.speed === 0 && !this.stopped && sink.backlogged?.()) await new Promise<void>((resolve) => setTimeout(resolve, 2));
      }
    }
  }

  private noteBus(bus: string): void {
    this.lastBus = bus;
    if (this.busList.includes(bus)) return;
    this.busList.push(bus);
    this.sink!.busState(bus, 'up');
  }

  private noteRejected(line: number, error: string, text: string): void {
    this.rejected++;
    if (this.rejectsLogged < LOGGED_REJECTS) {
      this.rejectsLogged++;
      const last = this.rejectsLogged === LOGGED_REJECTS ? ' (further malformed lines are summarised once per second)' : '';
      this.sink!.log('warn', `replay skipped line ${line} of ${this.file}: ${error}${last}`, 'replay_rejected_line', {
        file: this.file,
        line,
        error,
        text,
      });
      this.lastSummaryUs = this.now();
      return;
    }
    this.rejectsSuppressed++;
    if (this.now() - this.lastSummaryUs >= SUMMARY_INTERVAL_US) this.flushRejectSummary();
  }

  private flushRejectSummary(): void {
    if (this.rejectsSuppressed === 0) return;
    const n = this.rejectsSuppressed;
    this.rejectsSuppressed = 0;
    this.lastSummaryUs = this.now();
    this.sink!.log('warn', `replay skipped ${n} more malformed line${n === 1 ? '' : 's'} of ${this.file} (${this.rejected} in total so far)`, 'replay_rejected_lines', {
      file: this.file,
      skipped: n,
      total: this.rejected,
    });
  }

  private sleep(us: number): Promise<void> {
    return new Promise<void>((resolve) => {
      this.wake = resolve;
      this.sleepTimer = setTimeout(
        () => {
          this.sleepTimer = null;
          this.wake = null;
          resolve();
        },
        // Node takes a delay past 2^31 - 1 ms (24.8 days: a corrupt timestamp) as 1 ms, with a warning
        // each time; the caller sleeps again until the frame is due.
        Math.min(2 ** 31 - 1, Math.max(1, Math.ceil(us / 1000))),
      );
    });
  }

  private interruptSleep(): void {
    if (this.sleepTimer) clearTimeout(this.sleepTimer);
    this.sleepTimer = null;
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  private monotonicNow(): number {
    const now = this.now();
    return Math.max(now, this.lastTs);
  }
}

function reason(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as NodeJS.ErrnoException).code;
    return code && !e.message.startsWith(code) ? `${code}: ${e.message}` : e.message;
  }
  return String(e);
}
