/**
 * The shape of a recording's `<id>.json` (recording-meta.ts), checked when the agent reads it back. In its
 * own file so zod loads only when there is a recording to read (a gateway that never records does not pay
 * for it: docs/benchmarks.md, fan-out).
 */
import { z } from 'zod';
import { RecordingInfo, recordingError } from '../../core/recording/recording-info.js';

const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

export const RecordingPart = z.strictObject({ name: z.string().regex(/^\d{8}T\d{6}Z-[0-9a-f]{6}\.\d{4,}\.log(\.gz)?$/), offset: count, bytes: count });
export type RecordingPart = z.infer<typeof RecordingPart>;

export const RecordingMeta = RecordingInfo.omit({ duration_s: true, bytes: true, files: true, complete: true }).extend({
  v: z.literal(1),
  parts: z.array(RecordingPart),
  /** Number of the next file (files are numbered from 1 and never reuse a number). */
  next_part: z.number().int().min(1),
});
export type RecordingMeta = z.infer<typeof RecordingMeta>;

/** Checks one metadata file's parsed JSON: the metadata, or why it is refused. */
export function checkMeta(value: unknown): { meta: RecordingMeta } | { error: string } {
  // An error text past its bound (written by an agent before the bound was kept, with a long --record-dir)
  // is cut, not a reason to leave the whole recording out of the listing and the disk bound.
  const v = value as { error?: unknown } | null;
  if (v !== null && typeof v === 'object' && typeof v.error === 'string') v.error = recordingError(v.error);
  const r = RecordingMeta.safeParse(value);
  return r.success ? { meta: r.data } : { error: z.prettifyError(r.error).slice(0, 200) };
}
