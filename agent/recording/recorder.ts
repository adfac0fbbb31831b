/**
 * Full-rate recording on the gateway: the recordings in --record-dir, the running ones (each a
 * RecordingWriter fed by FrameRouter, unsampled), and the disk bound: all files together stay within
 * --record-max-bytes; past it the oldest files go first (counted, logged, the recording marked
 * incomplete). If the folder cannot be used the agent runs on and the API answers 503 with the reason.
 */
import { mkdir, open as openFile, readdir, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { CanFrame } from '../../core/can/frame.js';
import { parseIdFilter } from '../../core/can/id-filter.js';
import type { LogLevel } from '../../core/console/events.js';
import { HttpError } from '../../core/http/http-error.js';
import type { RecordingInfo, RecordingRequest } from '../../core/recording/recording-info.js';
import { busesInWords } from '../sources/source.js';
import { addProblem, loadMetas, metaSettled, newRecordingId, newRecordingMeta, PROBLEM, saveMeta, toInfo, type RecordingMeta } from './recording-meta.js';
import { RecordingWriter } from './recording-writer.js';

export interface RecorderSettings {
  dir: string;
  maxBytes: number;
  rotateBytes: number;
  gzip: boolean;
  /** Per running recording: bytes of lines waiting for the disk. */
  bufferBytes?: number;
  flushMs?: number;
}

/** Tells the operator (log and console): router.log() in the agent. */
export type RecorderNotice = (level: LogLevel, message: string, code: string, details?: Record<string, string | number | boolean | null>) => void;

/** Running recordings at once: each has its own buffer and file. */
export const MAX_RUNNING = 4;

export class Recorder {
  private readonly metas = new Map<string, RecordingMeta>();
  private readonly writers = new Map<string, RecordingWriter>();
  private totalBytes = 0;
  /** Writers whose first file is being opened: not fed yet, but their files are not the disk bound's to delete. */
  private readonly starting = new Set<RecordingWriter>();
  private unavailable: string | undefined = 'not opened yet';
  /** Starts in progress by recording id, settled when the start is decided (a stop or close waits for it). */
  private readonly startsById = new Map<string, Promise<void>>();
  /** Disk-bound work runs one at a time (two writers must not delete the same file). */
  private boundQueue: Promise<unknown> = Promise.resolve();
  readonly stats = { framesWritten: 0, framesDropped: 0, filesDeleted: 0, failed: 0 };

  constructor(
    private readonly s: RecorderSettings,
    private readonly notice: RecorderNotice,
    /** The buses this gateway has: its source's, as socketcand's `open` checks them (FrameSource.buses()). */
    private readonly knownBuses: () => string[],
  ) {}

  /** Reads the folder; a recording left running by a crash is closed as interrupted. Never throws. */
  async open(): Promise<void> {
    try {
      await mkdir(this.s.dir, { recursive: true });
      const { metas, bad } = await loadMetas(this.s.dir);
      for (const b of bad) {
        // Its files are in no recording: not listed, not downloadable, outside --record-max-bytes. Said, with their size.
        const id = b.file.replace(/\.json$/, '');
        const files = (await readdir(this.s.dir)).filter((n) => n.startsWith(`${id}.`) && n !== b.file);
        let bytes = 0;
        for (const f of files) bytes += (await stat(join(this.s.dir, f)).catch(() => undefined))?.size ?? 0;
        this.notice(
          'warn',
          `recording metadata ${b.file} in ${this.s.dir} is unreadable and ignored: ${b.error}; its ${files.length} files (${bytes} bytes) are outside --record-max-bytes until removed by hand`,
          'recording_bad_metadata',
        );
      }
      for (const m of metas) {
        const parts = [];
        for (const p of m.parts) {
          const st = await stat(join(this.s.dir, p.name)).catch(() => undefined);
          if (st) parts.push({ ...p, bytes: st.size });
          else {
            m.files_deleted++;
            addProblem(m, PROBLEM.filesDeleted);
          }
        }
        m.parts = parts;
        const last = parts.at(-1);
        // One recording that cannot be cut (its file read-only, the disk remounted read-only after the
        // crash) must not make every recording unavailable: it stays listed as it is, said once.
        if (m.state === 'recording' && last !== undefined && !last.name.endsWith('.gz'))
          last.bytes = await cutToLastLine(join(this.s.dir, last.name), last.bytes).catch((err: NodeJS.ErrnoException) => {
            this.notice(
              'warn',
              `recording ${m.id}: its last file ${last.name} could not be cut back to its last whole line (${err.code ?? err.message}); it is listed as it is and may end in part of a line`,
              'recording_meta_unsaved',
            );
            return last.bytes;
          });
        if (m.state === 'recording') {
          m.state = 'stopped';
          m.stop_reason = 'agent stopped while recording';
          m.stopped_at = new Date().toISOString();
          addProblem(m, PROBLEM.interrupted);
          // A full disk (the recording that filled it) must not hide every recording, nor the DELETE that frees space.
          await saveMeta(this.s.dir, m).catch((err: NodeJS.ErrnoException) =>
            this.notice(
              'warn',
              `recording ${m.id} is closed as interrupted, but its metadata could not be saved (${err.code ?? err.message}): it is closed again at the next start`,
              'recording_meta_unsaved',
            ),
          );
        }
        this.metas.set(m.id, m);
        this.totalBytes += parts.reduce((a, p) => a + p.bytes, 0);
      }
      this.unavailable = undefined;
    } catch (err) {
      this.unavailable = `recordings are unavailable: cannot use --record-dir ${this.s.dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
      this.notice('error', this.unavailable, 'recording_unavailable');
    }
  }

  /** The intake (FrameRouter): every frame, rx and tx, unsampled. */
  record(f: CanFrame): void {
    for (const w of this.writers.values()) w.offer(f);
  }

  get running(): number {
    return this.writers.size;
  }

  get bytesOnDisk(): number {
    return this.totalBytes;
  }

  /** Figures for /metrics, including the running recordings' counts. */
  figures(): { framesWritten: number; framesDropped: number; filesDeleted: number; failed: number } {
    let written = this.stats.framesWritten;
    let dropped = this.stats.framesDropped;
    for (const w of this.writers.values()) {
      written += w.meta.frames;
      dropped += w.meta.frames_dropped;
    }
    return { ...this.stats, framesWritten: written, framesDropped: dropped };
  }

  /**
   * Every recording, newest first. A finished recording's files are looked at on disk (a stat each): a
   * file deleted outside the agent (a clean-up script, a technician tidying the disk) makes the listing
   * say so, not "complete" until someone tries the download. A running one checks its own file as it writes.
   */
  async list(): Promise<RecordingInfo[]> {
    if (this.unavailable) throw new HttpError(503, this.unavailable);
    const metas = [...this.metas.values()].sort((a, b) => byStart(b, a));
    return Promise.all(
      metas.map(async (m) => {
        const info = toInfo(m);
        if (this.writers.has(m.id)) return info;
        const there = await Promise.all(
          m.parts.map((p) =>
            stat(join(this.s.dir, p.name)).then(
              () => true,
              (err: NodeJS.ErrnoException) => err.code !== 'ENOENT',
            ),
          ),
        );
        const missing = there.filter((t) => !t).length;
        if (missing === 0) return info;
        const problem = `${missing} of its ${m.parts.length} files ${PROBLEM.deletedOutside}`;
        return { ...info, complete: false, problems: [problem, ...info.problems].slice(0, 4) };
      }),
    );
  }

  info(id: string): RecordingInfo {
    return toInfo(this.must(id));
  }

  /** The files of a recording as they are now (a download reads these ranges). */
  parts(id: string): { dir: string; meta: RecordingMeta } {
    return { dir: this.s.dir, meta: this.must(id) };
  }

  async start(req: RecordingRequest, reason = 'requested'): Promise<RecordingInfo> {
    if (this.unavailable) throw new HttpError(503, this.unavailable);
    if (this.writers.size + this.starting.size >= MAX_RUNNING) throw new HttpError(409, `${MAX_RUNNING} recordings are running already; stop one first`);
    if (req.buses !== undefined) {
      // A bus the gateway does not have would give an empty recording that calls itself complete.
      const known = this.knownBuses();
      const unknown = req.buses.filter((b) => !known.includes(b));
      if (unknown.length > 0) throw new HttpError(400, `cannot record ${unknown.join(', ')}: this gateway has ${busesInWords(known)}`);
    }
    let ids = null;
    if (req.ids !== undefined && req.ids.trim() !== '') {
      const p = parseIdFilter(req.ids);
      if (!p.ok) throw new HttpError(400, `bad id filter: ${p.error}`);
      ids = p.filter;
    }
    const meta = newRecordingMeta({
      id: newRecordingId(),
      buses: req.buses ?? null,
      ids: ids ? ids.text : null,
      max_duration_s: req.max_duration_s ?? null,
      gzip: this.s.gzip,
    });
    const w = new RecordingWriter(
      meta,
      { buses: req.buses ? new Set(req.buses) : null, ids },
      { dir: this.s.dir, rotateBytes: this.s.rotateBytes, bufferBytes: this.s.bufferBytes ?? 4 * 1024 * 1024, flushMs: this.s.flushMs ?? 100 },
      {
        reserve: (n, self) => this.reserve(n, self),
        release: (n) => (this.totalBytes -= n),
        save: (self) => saveMeta(this.s.dir, self.meta),
        ended: (self) => this.ended(self),
      },
    );
    this.metas.set(meta.id, meta);
    this.starting.add(w);
    // Settled once the start is decided and the writer registered: a stop waiting on it then finds it.
    let decided!: () => void;
    this.startsById.set(meta.id, new Promise<void>((r) => (decided = r)));
    try {
      await w.begin(req.max_duration_s === undefined ? undefined : req.max_duration_s * 1000, () => void this.stop(meta.id, 'max duration reached'));
    } catch (err) {
      this.startsById.delete(meta.id);
      decided();
      this.starting.delete(w);
      this.metas.delete(meta.id);
      await rm(join(this.s.dir, `${meta.id}.json`), { force: true }).catch(() => undefined);
      const e = err as NodeJS.ErrnoException;
      throw new HttpError(e.code === 'ENOSPC' ? 507 : 500, `cannot start a recording in ${this.s.dir}: ${e.message}`);
    }
    // Frames only once its first file is open: a write must not race the start.
    this.starting.delete(w);
    this.writers.set(meta.id, w);
    this.startsById.delete(meta.id);
    decided();
    this.notice('info', `recording ${meta.id} started (${reason})`, 'recording_started', { recording: meta.id, buses: meta.buses?.join(',') ?? null, ids: meta.ids });
    return toInfo(meta);
  }

  async stop(id: string, reason = 'stopped by request'): Promise<RecordingInfo> {
    const m = this.must(id);
    // Still starting (its first file opening): stopped once started, not left running after a 200.
    await this.startsById.get(id);
    if (this.metas.get(id) !== m) throw new HttpError(404, `recording ${id} could not start (its start failed), so there is nothing to stop`);
    const w = this.writers.get(id);
    if (w) await w.stop(reason);
    return toInfo(m);
  }

  async delete(id: string): Promise<void> {
    const m = this.must(id);
    if (this.writers.has(id) || this.startsById.has(id)) throw new HttpError(409, `recording ${id} is running: stop it first (POST /api/v1/recordings/${id}/stop)`);
    // In the disk-bound queue: a second DELETE, or the bound deleting the same file, would count its bytes
    // off twice (the bound then let the folder grow past --record-max-bytes). Gone meanwhile: done.
    await this.serially(async () => {
      if (this.metas.get(id) === m) await this.removeFiles(m);
    });
  }

  /** Stops every running recording, those still starting included (the agent is stopping). */
  async close(reason = 'agent stopping'): Promise<void> {
    await Promise.all(this.startsById.values());
    await Promise.all([...this.writers.values()].map((w) => w.stop(reason)));
  }

  /** Throws the HttpError a request about recording `id` gets when there is none (404) or no recordings now (503). */
  mustExist(id: string): void {
    this.must(id);
  }

  private must(id: string): RecordingMeta {
    if (this.unavailable) throw new HttpError(503, this.unavailable);
    const m = this.metas.get(id);
    if (!m) throw new HttpError(404, `no recording ${id} on this gateway (GET /api/v1/recordings lists them)`);
    return m;
  }

  private ended(w: RecordingWriter): void {
    if (this.writers.get(w.meta.id) !== w) return;
    this.writers.delete(w.meta.id);
    this.stats.framesWritten += w.meta.frames;
    this.stats.framesDropped += w.meta.frames_dropped;
    const m = w.meta;
    if (m.state === 'failed') {
      this.stats.failed++;
      this.notice('error', `recording ${m.id} failed: ${m.error}`, 'recording_failed', { recording: m.id, frames: m.frames, frames_dropped: m.frames_dropped });
    } else {
      this.notice('info', `recording ${m.id} stopped (${m.stop_reason}): ${m.frames} frames`, 'recording_stopped', {
        recording: m.id,
        frames: m.frames,
        frames_dropped: m.frames_dropped,
        complete: m.problems.length === 0,
      });
    }
  }

  private reserve(n: number, w: RecordingWriter): Promise<boolean> {
    return this.serially(() => this.makeRoom(n, w));
  }

  /** Runs disk-bound work after the work queued before it (one at a time). */
  private serially<T>(work: () => Promise<T>): Promise<T> {
    const run = this.boundQueue.then(work);
    this.boundQueue = run.catch(() => undefined);
    return run;
  }

  /**
   * Deletes the oldest files (never a file being written) until n more bytes fit; then counts them. The
   * oldest by when it was last written, across recordings: a logger running for days loses its files
   * older than a short recording made since before that recording's, not all of them first.
   */
  private async makeRoom(n: number, w: RecordingWriter): Promise<boolean> {
    while (this.totalBytes + n > this.s.maxBytes) {
      const victim = await this.oldestFile();
      if (!victim) return false;
      const { m, p } = victim;
      // Deleted meanwhile (a DELETE of its recording while the times were read): its bytes are counted off there.
      if (!this.metas.has(m.id) || !m.parts.includes(p)) continue;
      await unlink(join(this.s.dir, p.name)).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
      m.parts = m.parts.filter((x) => x !== p);
      this.totalBytes -= p.bytes;
      m.files_deleted++;
      this.stats.filesDeleted++;
      addProblem(m, PROBLEM.filesDeleted);
      this.notice('warn', `deleted ${p.name} (${p.bytes} bytes) to stay within --record-max-bytes ${this.s.maxBytes}`, 'recording_file_deleted', {
        recording: m.id,
        file: p.name,
        bytes: p.bytes,
      });
      if (m.parts.length === 0 && !this.writers.has(m.id)) await this.removeFiles(m);
      else if (m !== w.meta) await saveMeta(this.s.dir, m);
    }
    this.totalBytes += n;
    return true;
  }

  /** The file last written longest ago that is not being written: each recording's first closed part, compared by mtime. */
  private async oldestFile(): Promise<{ m: RecordingMeta; p: RecordingMeta['parts'][number] } | undefined> {
    const writing = new Set([...this.writers.values(), ...this.starting].map((x) => x.currentPart?.name));
    let best: { m: RecordingMeta; p: RecordingMeta['parts'][number]; at: number } | undefined;
    for (const m of [...this.metas.values()].sort(byStart)) {
      const p = m.parts.find((x) => !writing.has(x.name)); // parts are in order: the first is its oldest
      if (p === undefined) continue;
      // A file already gone counts as the oldest: removing it from the list costs nothing.
      const at = (await stat(join(this.s.dir, p.name)).catch(() => undefined))?.mtimeMs ?? 0;
      if (best === undefined || at < best.at) best = { m, p, at };
    }
    return best;
  }

  /** Removes a recording's files and metadata. A file that cannot be removed stays listed and counted (a 503 says why). */
  private async removeFiles(m: RecordingMeta): Promise<void> {
    const kept: RecordingMeta['parts'] = [];
    let failure: NodeJS.ErrnoException | undefined;
    for (const p of m.parts) {
      const err = await unlink(join(this.s.dir, p.name)).then(
        () => undefined,
        (e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? undefined : e),
      );
      if (err === undefined) this.totalBytes -= p.bytes;
      else {
        kept.push(p);
        failure ??= err;
      }
    }
    m.parts = kept;
    if (failure !== undefined) {
      await saveMeta(this.s.dir, m).catch(() => undefined);
      throw new HttpError(
        503,
        `could not delete ${kept.map((p) => p.name).join(', ')} of recording ${m.id} in ${this.s.dir}: ${failure.code ?? failure.message}; they stay listed`,
      );
    }
    await metaSettled(m.id);
    await rm(join(this.s.dir, `${m.id}.json`), { force: true });
    this.metas.delete(m.id);
  }
}

/** Oldest first: by start time (ms), then id (ids alone sort by the second only). */
function byStart(a: RecordingMeta, b: RecordingMeta): number {
  return a.started_at < b.started_at ? -1 : a.started_at > b.started_at ? 1 : a.id < b.id ? -1 : 1;
}

/**
 * Cuts a candump -L file left by a crash back to its last whole line (a write cut short leaves half a
 * line, which log readers such as python-can fail on). Returns the new length. A gzip file is left as it
 * is: `gunzip` reports its cut end, and what comes before it decompresses.
 */
async function cutToLastLine(path: string, size: number): Promise<number> {
  const fh = await openFile(path, 'r+');
  try {
    const tail = Buffer.alloc(Math.min(size, 4096));
    const { bytesRead } = await fh.read(tail, 0, tail.length, size - tail.length);
    const nl = tail.subarray(0, bytesRead).lastIndexOf(0x0a);
    // No newline in the last 4 KiB: a line is never that long, so the file holds no whole line there; keep it.
    if (nl < 0 || nl === bytesRead - 1) return size;
    const keep = size - tail.length + nl + 1;
    await fh.truncate(keep);
    return keep;
  } finally {
    await fh.close();
  }
}
