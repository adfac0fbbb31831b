/**
 * A recording's download: chunk size through the bridge and the file name it is saved under. Without
 * zod (recording-info.ts re-exports these), so the agent's download path loads no schema at start.
 */
import type { RecordingInfo } from './recording-info.js';

/** Bytes per chunk of a download through the bridge: base64 of it fits a 64 KiB uplink text message. */
export const RECORDING_CHUNK_BYTES = 32 * 1024;

/** The file name a download is saved under. */
export function recordingFileName(dongle: string, info: Pick<RecordingInfo, 'id' | 'gzip'>): string {
  return `${dongle}-${info.id}.log${info.gzip ? '.gz' : ''}`;
}
