/**
 * Reading a recording back: the whole of it as one HTTP download (the files concatenated, streamed with
 * backpressure), or one byte range for the bridge (rec_read). Both read what is on disk when asked: a
 * running recording gives what has been written so far.
 */
import { open, type FileHandle } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { writeWithBackpressure } from '../../core/http/backpressure.js';
import { HttpError } from '../../core/http/http-error.js';
import { RECORDING_CHUNK_BYTES, recordingFileName } from '../../core/recording/recording-files.js';
import type { Recorder } from './recorder.js';

const READ_BYTES = 64 * 1024;

/** One chunk at a byte offset of the recording (offset absent: where what is left on disk starts). */
export async function readRecordingChunk(
  recorder: Recorder,
  id: string,
  offset: number | undefined,
  length: number,
): Promise<{ offset: number; start: number; end: number; data: Buffer }> {
  const { dir, meta } = recorder.parts(id);
  const parts = meta.parts.map((p) => ({ ...p }));
  const last = parts.at(-1);
  const end = last ? last.offset + last.bytes : 0;
  const start = parts[0]?.offset ?? end;
  const at = offset ?? start;
  if (at < start) throw new HttpError(410, `bytes before ${start} of recording ${id} were deleted to stay within --record-max-bytes`);
  if (at > end) throw new HttpError(416, `recording ${id} has ${end} bytes; offset ${at} is past its end`);
  const part = parts.find((p) => at >= p.offset && at < p.offset + p.bytes);
  if (!part) return { offset: at, start, end, data: Buffer.alloc(0) };
  const n = Math.min(length, RECORDING_CHUNK_BYTES, part.offset + part.bytes - at);
  let fh: FileHandle;
  try {
    fh = await open(join(dir, part.name), 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new HttpError(410, `file ${part.name} was deleted meanwhile (--record-max-bytes)`);
    throw err;
  }
  try {
    const data = Buffer.alloc(n);
    const { bytesRead } = await fh.read(data, 0, n, at - part.offset);
    return { offset: at, start, end, data: data.subarray(0, bytesRead) };
  } finally {
    await fh.close();
  }
}

/** `GET /api/v1/recordings/<id>`: the recording as one file. Opening every file first keeps them readable if the disk bound deletes one meanwhile. */
export async function streamRecording(recorder: Recorder, dongle: string, id: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { dir, meta } = recorder.parts(id);
  const parts = meta.parts.map((p) => ({ ...p }));
  const handles: { fh: FileHandle; bytes: number }[] = [];
  try {
    for (const p of parts) {
      const fh = await open(join(dir, p.name), 'r').catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return undefined; // deleted by the disk bound just now: the download starts later
        throw err;
      });
      if (fh) handles.push({ fh, bytes: p.bytes });
      else for (const h of handles.splice(0)) await h.fh.close().catch(() => undefined);
    }
    // Files listed but none there (deleted behind the agent's back): not an empty 200 that looks like a file.
    if (handles.length === 0 && parts.some((p) => p.bytes > 0))
      throw new HttpError(410, `the files of recording ${id} are no longer in ${dir} (deleted outside the agent); delete the recording (DELETE /api/v1/recordings/${id})`);
    const size = handles.reduce((a, h) => a + h.bytes, 0);
    res.writeHead(200, {
      'Content-Type': meta.gzip ? 'application/gzip' : 'text/plain; charset=us-ascii',
      'Content-Length': size,
      'Content-Disposition': `attachment; filename="${recordingFileName(dongle, meta)}"`,
      'Cache-Control': 'no-store',
    });
    if (req.method === 'HEAD') return void res.end();
    const buf = Buffer.alloc(READ_BYTES);
    for (const h of handles) {
      let pos = 0;
      while (pos < h.bytes) {
        if (res.destroyed) return;
        const { bytesRead } = await h.fh.read(buf, 0, Math.min(READ_BYTES, h.bytes - pos), pos);
        if (bytesRead === 0) throw new Error('a recording file is shorter than recorded');
        pos += bytesRead;
        // Copy: the buffer is reused for the next read while this one may still wait in the socket.
        await writeWithBackpressure(res, Buffer.from(buf.subarray(0, bytesRead)));
      }
    }
    res.end();
  } finally {
    for (const h of handles) await h.fh.close().catch(() => undefined);
  }
}
