/**
 * A recording on disk: `<id>.json` (this metadata, written atomically) next to its files
 * `<id>.0001.log`, `<id>.0002.log`… (`.log.gz` with --record-gzip). Each file has an `offset`: where it
 * starts in the recording's byte stream, so byte ranges stay valid when the oldest files are deleted.
 * A download is the files concatenated (concatenated gzip members are one valid gzip file).
 */
import { randomBytes } from 'node:crypto';
import { open, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { RecordingInfo } from '../../core/recording/recording-info.js';
import type { RecordingMeta } from './recording-meta-schema.js';

export type { RecordingMeta, RecordingPart } from './recording-meta-schema.js';

/** Problems that make a recording incomplete, worded once. */
export const PROBLEM = {
  dropped: 'frames were dropped: the disk could not keep up (see frames_dropped)',
  filesDeleted: 'its oldest files were deleted to stay within --record-max-bytes',
  failed: 'a write failed (see error): frames after it are missing',
  interrupted: 'the agent stopped without closing it (crash or power loss): the end and the frame count may be short',
  /** Completed with "<n> of its <m> files" when listed. */
  deletedOutside: 'deleted outside the agent: the download holds only the files after the last missing one (DELETE the recording once it is of no use)',
} as const;

export function newRecordingId(now = new Date()): string {
  const t = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return `${t}-${randomBytes(3).toString('hex')}`;
}

/** A new recording's metadata, nothing recorded yet: the one place its fields start from. */
export function newRecordingMeta(m: Pick<RecordingMeta, 'id'> & Partial<RecordingMeta>): RecordingMeta {
  return {
    v: 1,
    state: 'recording',
    started_at: new Date().toISOString(),
    stopped_at: null,
    buses: null,
    ids: null,
    max_duration_s: null,
    frames: 0,
    frames_dropped: 0,
    files_deleted: 0,
    gzip: false,
    problems: [],
    stop_reason: null,
    error: null,
    parts: [],
    next_part: 1,
    ...m,
  };
}

export function partName(id: string, n: number, gzip: boolean): string {
  return `${id}.${String(n).padStart(4, '0')}.log${gzip ? '.gz' : ''}`;
}

export function toInfo(m: RecordingMeta, nowMs = Date.now()): RecordingInfo {
  const end = m.stopped_at ? Date.parse(m.stopped_at) : nowMs;
  const { v: _v, parts, next_part: _n, ...rest } = m;
  return {
    ...rest,
    duration_s: Math.max(0, Math.round((end - Date.parse(m.started_at)) / 100) / 10),
    bytes: parts.reduce((a, p) => a + p.bytes, 0),
    files: parts.length,
    complete: m.problems.length === 0,
  };
}

export function addProblem(m: RecordingMeta, problem: string): void {
  if (!m.problems.includes(problem) && m.problems.length < 4) m.problems.push(problem);
}

/** Saves in flight per recording: one at a time, so two never share the temporary file. */
const saving = new Map<string, Promise<void>>();

/** Writes the metadata atomically (a crash leaves the old or the new file, never half of one). */
export function saveMeta(dir: string, m: RecordingMeta): Promise<void> {
  const file = join(dir, `${m.id}.json`);
  const run = (saving.get(m.id) ?? Promise.resolve())
    .catch(() => undefined)
    .then(async () => {
      try {
        // Flushed before the rename and the folder after it: a gateway loses power as a matter of course,
        // and a metadata file that came back empty left the whole recording outside any listing.
        await writeFile(`${file}.tmp`, JSON.stringify(m) + '\n', { flush: true });
        await rename(`${file}.tmp`, file);
      } catch (err) {
        await rm(`${file}.tmp`, { force: true }).catch(() => undefined); // a full disk must not keep half a file
        throw err;
      }
      await syncDir(dir);
    });
  saving.set(m.id, run);
  const forget = (): void => {
    if (saving.get(m.id) === run) saving.delete(m.id);
  };
  run.then(forget, forget);
  return run;
}

/** Makes a rename in `dir` durable (best effort: some file systems refuse to sync a folder). */
async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r').catch(() => undefined);
  if (fh === undefined) return;
  await fh.sync().catch(() => undefined);
  await fh.close().catch(() => undefined);
}

/** Resolves once no save of this recording is in flight (before its files are removed). */
export async function metaSettled(id: string): Promise<void> {
  await saving.get(id)?.catch(() => undefined);
}

/** Every recording's metadata in the folder; unreadable ones are reported, not fatal. */
export async function loadMetas(dir: string): Promise<{ metas: RecordingMeta[]; bad: { file: string; error: string }[] }> {
  const metas: RecordingMeta[] = [];
  const bad: { file: string; error: string }[] = [];
  const files = (await readdir(dir)).filter((n) => /^\d{8}T\d{6}Z-[0-9a-f]{6}\.json$/.test(n)).sort();
  if (files.length === 0) return { metas, bad };
  const { checkMeta } = await import('./recording-meta-schema.js');
  for (const f of files) {
    try {
      const r = checkMeta(JSON.parse(await readFile(join(dir, f), 'utf8')));
      if ('meta' in r) metas.push(r.meta);
      else bad.push({ file: f, error: r.error });
    } catch (err) {
      bad.push({ file: f, error: (err as Error).message });
    }
  }
  return { metas, bad };
}
