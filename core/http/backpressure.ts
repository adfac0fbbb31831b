/**
 * Writing a large HTTP body with backpressure: wait for 'drain' (or the client leaving) when the socket
 * is full. A client that takes nothing for `stallMs` is disconnected: a stalled download would otherwise
 * hold what it reads from (open recording files, whose disk space the recordings' bound cannot free while
 * they are open; a pending request slot) for as long as it likes.
 */
import type { ServerResponse } from 'node:http';

/** How long a download may take no data before it is cut (a slow link still drains 64 KiB well within it). */
export const DOWNLOAD_STALL_MS = 60_000;

export async function writeWithBackpressure(res: ServerResponse, data: Buffer, stallMs = DOWNLOAD_STALL_MS): Promise<void> {
  // A client already gone: its 'close' has fired, and waiting for it would hold the files for the stall time.
  if (res.destroyed) return;
  if (res.write(data) || res.destroyed) return;
  await new Promise<void>((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    const timer = setTimeout(() => {
      res.destroy(new Error(`the client took no data for ${stallMs / 1000} s`));
      done();
    }, stallMs);
    res.on('drain', done);
    res.on('close', done);
  });
}
