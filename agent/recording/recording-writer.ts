/**
 * One running recording: takes every frame the router offers (rx and tx), keeps those its filter wants
 * (its buses; its ids, which pick data and remote frames and never leave out error frames) as `candump -L`
 * lines with direction marks (core/can/candump.ts), and writes them to its files in the background. The
 * intake never waits for the disk: lines wait in a bounded buffer; a frame that does not fit is counted in
 * frames_dropped and the recording marked incomplete. A write error (a full disk) stops this recording
 * with a clear error; the agent goes on.
 */
import { open, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzip as gzipCb } from 'node:zlib';
import { formatCandumpLine } from '../../core/can/candump.js';
import type { CanFrame } from '../../core/can/frame.js';
import type { IdFilter } from '../../core/can/id-filter.js';
import { addProblem, partName, PROBLEM, type RecordingMeta, type RecordingPart } from './recording-meta.js';
import { recordingError } from '../../core/recording/recording-files.js';

const gzip = promisify(gzipCb);

export interface WriterSettings {
  dir: string;
  /** A file is closed and the next one started past this many bytes. */
  rotateBytes: number;
  /** Lines waiting for the disk, at most (the chunk being written comes on top). */
  bufferBytes: number;
  /** Lines are written at least this often (and as soon as 256 KiB wait). */
  flushMs: number;
}

export interface WriterHooks {
  /** Room for n more bytes under --record-max-bytes (deleting the oldest files); false when there is none. */
  reserve(n: number, w: RecordingWriter): Promise<boolean>;
  /** n reserved bytes were not written after all. */
  release(n: number): void;
  save(w: RecordingWriter): Promise<void>;
  ended(w: RecordingWriter): void;
}

const WRITE_NOW_BYTES = 256 * 1024;
const MAX_WRITE_BYTES = 1024 * 1024;
const SAVE_EVERY_MS = 5000;

export class RecordingWriter {
  private pending: string[] = [];
  private pendingBytes = 0;
  private fh: FileHandle | undefined;
  private timer: NodeJS.Timeout | undefined;
  private pumping: Promise<void> | undefined;
  private stopTimer: NodeJS.Timeout | undefined;
  private lastSave = Date.now();
  private accepting = true;
  private stopping: Promise<void> | undefined;

  constructor(
    readonly meta: RecordingMeta,
    private readonly filter: { buses: ReadonlySet<string> | null; ids: IdFilter | null },
    private readonly s: WriterSettings,
    private readonly hooks: WriterHooks,
  ) {}

  get running(): boolean {
    return this.meta.state === 'recording';
  }

  /** The file being written (the disk bound never deletes it). */
  get currentPart(): RecordingPart | undefined {
    return this.fh ? this.meta.parts.at(-1) : undefined;
  }

  /**
   * Opens the first file, so that an unwritable folder is an error of the start request. A start that
   * fails leaves nothing behind: the file it opened is closed and removed (a full disk takes the open but
   * not the metadata save: each retried start leaked a file handle and two files).
   */
  async begin(stopAfterMs: number | undefined, onMaxDuration: () => void): Promise<void> {
    try {
      await this.nextFile();
    } catch (err) {
      await this.closeFile();
      for (const p of this.meta.parts) await rm(join(this.s.dir, p.name), { force: true }).catch(() => undefined);
      throw err;
    }
    if (stopAfterMs !== undefined) {
      this.stopTimer = setTimeout(onMaxDuration, stopAfterMs);
      this.stopTimer.unref();
    }
  }

  /** The intake: synchronous and bounded. */
  offer(f: CanFrame): void {
    if (!this.accepting) return;
    if (this.filter.buses && !this.filter.buses.has(f.bus)) return;
    // matchesFrame, not matches: error frames (whose id is an error class) stay in every recording of
    // their bus, where they explain what happened during it (the rule is in core/can/id-filter.ts).
    if (this.filter.ids && !this.filter.ids.matchesFrame(f.id, f.ext, f.err)) return;
    const line = formatCandumpLine(f, { direction: true }) + '\n';
    if (this.pendingBytes + line.length > this.s.bufferBytes) {
      this.meta.frames_dropped++;
      addProblem(this.meta, PROBLEM.dropped);
      return;
    }
    this.pending.push(line);
    this.pendingBytes += line.length;
    if (this.pendingBytes >= WRITE_NOW_BYTES) this.kick(0);
    else this.timer ??= setTimeout(() => this.kick(0), this.s.flushMs);
  }

  /** Stops taking frames, writes what waits, closes the file. */
  stop(reason: string): Promise<void> {
    return (this.stopping ??= (async () => {
      this.accepting = false;
      clearTimeout(this.stopTimer);
      clearTimeout(this.timer);
      this.timer = undefined;
      await this.drain();
      await this.closeFile();
      if (this.meta.state === 'recording') {
        this.meta.state = 'stopped';
        this.meta.stop_reason = reason;
        this.meta.stopped_at = new Date().toISOString();
      }
      await this.hooks.save(this).catch(() => undefined);
      this.hooks.ended(this);
    })());
  }

  private kick(delayMs: number): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (delayMs > 0) this.timer = setTimeout(() => this.kick(0), delayMs);
    else this.pumping ??= this.pump().finally(() => (this.pumping = undefined));
  }

  private async drain(): Promise<void> {
    while (this.pumping) await this.pumping;
    if (this.pending.length > 0 && this.meta.state === 'recording') await (this.pumping ??= this.pump().finally(() => (this.pumping = undefined)));
  }

  private async pump(): Promise<void> {
    while (this.pending.length > 0 && this.meta.state === 'recording') {
      // At most one file's worth per write, so files stay near --record-rotate-bytes and the bound stays fine-grained.
      const limit = Math.min(MAX_WRITE_BYTES, this.s.rotateBytes);
      let frames = 0;
      let size = 0;
      while (frames < this.pending.length && (frames === 0 || size + this.pending[frames]!.length <= limit)) size += this.pending[frames++]!.length;
      const lines = this.pending.splice(0, frames);
      this.pendingBytes -= size;
      let reserved = 0;
      let file = '';
      try {
        const text = Buffer.from(lines.join(''), 'latin1');
        const bytes = this.meta.gzip ? await gzip(text) : text;
        let part = this.meta.parts.at(-1)!;
        if (part.bytes > 0 && part.bytes + bytes.length > this.s.rotateBytes) part = await this.nextFile();
        file = part.name;
        if (!(await this.hooks.reserve(bytes.length, this)))
          throw Object.assign(new Error('--record-max-bytes is reached and no older file is left to delete'), { code: 'EBOUND' });
        reserved = bytes.length;
        await writeAll(this.fh!, bytes, part.bytes);
        part.bytes += bytes.length;
        this.meta.frames += frames;
        reserved = 0;
      } catch (err) {
        if (reserved > 0) this.hooks.release(reserved);
        await this.fail(err as NodeJS.ErrnoException, file, frames);
        return;
      }
      if (Date.now() - this.lastSave >= SAVE_EVERY_MS) {
        this.lastSave = Date.now();
        // The file deleted under the recording (its folder removed, a clean-up script): writes land in the
        // unlinked file without an error, and the list said "complete" until the next rotation, hours later
        // on a quiet bus. Checked as often as the metadata is saved.
        const st = await this.fh?.stat().catch(() => undefined);
        if (st !== undefined && st.nlink === 0) {
          await this.fail(Object.assign(new Error('file deleted'), { code: 'EDELETED' }), this.meta.parts.at(-1)?.name ?? '', 0);
          return;
        }
        await this.hooks.save(this).catch(() => undefined);
      }
    }
  }

  private async nextFile(): Promise<RecordingPart> {
    await this.closeFile();
    const prev = this.meta.parts.at(-1);
    const part: RecordingPart = {
      name: partName(this.meta.id, this.meta.next_part, this.meta.gzip),
      offset: prev ? prev.offset + prev.bytes : 0,
      bytes: 0,
    };
    this.fh = await open(join(this.s.dir, part.name), 'wx');
    this.meta.next_part++;
    this.meta.parts.push(part);
    await this.hooks.save(this);
    return part;
  }

  private async closeFile(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close().catch(() => undefined);
  }

  /** A write failed: the recording ends here, everything written so far stays readable. */
  private async fail(err: NodeJS.ErrnoException, file: string, lostFrames: number): Promise<void> {
    this.accepting = false;
    clearTimeout(this.stopTimer);
    clearTimeout(this.timer);
    this.meta.frames_dropped += lostFrames + this.pending.length;
    this.pending = [];
    this.pendingBytes = 0;
    addProblem(this.meta, PROBLEM.failed);
    const where = file ? join(this.s.dir, file) : this.s.dir;
    // Cut to the schema's bound: a long --record-dir made it longer, and every listing carrying it was
    // refused (by the bridge, which closed the agent's link; by the agent's own loader after a restart).
    this.meta.error = recordingError(
      // What happened and what to do first, the path last: a cut keeps the advice.
      err.code === 'ENOSPC'
        ? `disk full: recording stopped (free space there, or lower --record-max-bytes); writing ${where}`
        : err.code === 'EBOUND'
          ? `${err.message}: recording stopped (raise --record-max-bytes, or stop other recordings)`
          : err.code === 'EDELETED'
            ? `its file was deleted while recording (the folder removed or cleaned by something else): recording stopped, what that file held is gone; ${where}`
            : `cannot write (${err.code ?? err.message}): recording stopped; writing ${where}`,
    );
    this.meta.state = 'failed';
    this.meta.stop_reason = 'write error';
    this.meta.stopped_at = new Date().toISOString();
    // A partial write must not leave half a line (or half a gzip member) behind what is counted.
    const part = this.meta.parts.at(-1);
    if (this.fh && part) await this.fh.truncate(part.bytes).catch(() => undefined);
    await this.closeFile();
    await this.hooks.save(this).catch(() => undefined);
    this.hooks.ended(this);
  }
}

/** A short write (a disk filling up) is not an error to the kernel: write the rest, and let that fail. */
async function writeAll(fh: FileHandle, bytes: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await fh.write(bytes, done, bytes.length - done, position + done);
    if (bytesWritten === 0) throw Object.assign(new Error('no byte written'), { code: 'ENOSPC' });
    done += bytesWritten;
  }
}
