/**
 * A recording's download: chunk size through the bridge and the file name it is saved under; the bound
 * of its error text. Without zod (recording-info.ts re-exports these), so the agent's recording and
 * download paths load no schema at start.
 */
import type { RecordingInfo } from './recording-info.js';

/** Bytes per chunk of a download through the bridge: base64 of it fits a 64 KiB uplink text message. */
export const RECORDING_CHUNK_BYTES = 32 * 1024;

/** The longest `error` a recording carries: longer texts (a long --record-dir in them) are cut to it. */
export const MAX_RECORDING_ERROR_CHARS = 300;

/** `text` cut to the `error` field's bound, marked with "…" when cut: every side's schema then takes it. */
export function recordingError(text: string): string {
  return text.length <= MAX_RECORDING_ERROR_CHARS ? text : text.slice(0, MAX_RECORDING_ERROR_CHARS - 1) + '…';
}

/** The file name a download is saved under. */
export function recordingFileName(dongle: string, info: Pick<RecordingInfo, 'id' | 'gzip'>): string {
  return `${dongle}-${info.id}.log${info.gzip ? '.gz' : ''}`;
}
