/**
 * What a recording is, as every side shows it: the agent's `GET /api/v1/recordings`, the uplink's
 * `rec_listing` and the bridge's `GET /api/v1/dongles/<id>/recordings` carry this one shape (validated
 * where it arrives from the network).
 */
import { z } from 'zod';
import { BUS_RULE, RECORDING_ID_RULE } from '../names.js';
import { MAX_RECORDING_ERROR_CHARS } from './recording-files.js';

const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

export const RecordingInfo = z.strictObject({
  id: z.string().regex(RECORDING_ID_RULE),
  /** recording → stopped (by request, max duration, agent stop) | failed (disk full, write error). */
  state: z.enum(['recording', 'stopped', 'failed']),
  started_at: z.string().max(40),
  stopped_at: z.string().max(40).nullable(),
  duration_s: z.number().min(0),
  /** Only these buses (null: every bus). */
  buses: z.array(z.string().regex(BUS_RULE)).max(64).nullable(),
  /**
   * Only data and remote frames whose id matches this filter (the console's syntax: 7E8, 100,200, 7E0-7EF,
   * 700/7F0, !7DF; 123 standard, 00000123 extended: core/can/id-filter.ts); null: every id. Error frames of the
   * recorded buses are always kept: their id is an error class. Kept as it was asked, never parsed again: a
   * recording made before ids had a kind lists as it did.
   */
  ids: z.string().max(200).nullable(),
  max_duration_s: z.number().int().min(1).nullable(),
  /** Frames written to the files. */
  frames: count,
  /** Frames the recording should have had but could not write (buffer full, disk error): counted, never silent. */
  frames_dropped: count,
  /** Bytes of the files still on disk (compressed size when gzip). */
  bytes: count,
  files: count,
  /** Files removed to keep --record-max-bytes. */
  files_deleted: count,
  gzip: z.boolean(),
  /** False when frames were dropped, files deleted, or the agent stopped without closing it. */
  complete: z.boolean(),
  /** Why it is incomplete, in words. */
  problems: z.array(z.string().max(200)).max(4),
  stop_reason: z.string().max(200).nullable(),
  error: z.string().max(MAX_RECORDING_ERROR_CHARS).nullable(),
});
export type RecordingInfo = z.infer<typeof RecordingInfo>;

/** What `POST /api/v1/recordings` takes (every field optional). */
export const RecordingRequest = z.strictObject({
  buses: z.array(z.string().regex(BUS_RULE)).min(1).max(64).optional(),
  ids: z.string().max(200).optional(),
  max_duration_s: z
    .number()
    .int()
    .min(1)
    .max(7 * 86_400)
    .optional(),
});
export type RecordingRequest = z.infer<typeof RecordingRequest>;

export { MAX_RECORDING_ERROR_CHARS, RECORDING_CHUNK_BYTES, recordingError, recordingFileName } from './recording-files.js';
