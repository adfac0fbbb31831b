/**
 * How a --replay input is read. A regular file is read by position (a loop rewinds it), on the thread
 * pool as files are. A pipe (a FIFO, a shell's process substitution) is read as a stream on the event
 * loop: a read on the thread pool that waits for a writer holds a thread in read(2), and Node's exit
 * joins the thread pool — SIGTERM, and even the daemon's hard stop, then waited for the writer to write
 * or close (seconds to forever). Stopping a pipe reader ends its pending read at once.
 */
import { constants, openSync, readlinkSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { Socket } from 'node:net';

export interface ReplayReader {
  /** Regular files are read by position and can be rewound; pipes are read once, in order. */
  readonly seekable: boolean;
  /** The file handle of a regular file (for the start-up checks). */
  readonly file: FileHandle | undefined;
  /** Up to `buf.length` bytes: at `pos` (files) or the next ones (pipes). 0 at the end. */
  read(buf: Buffer, pos: number): Promise<number>;
  close(): Promise<void>;
}

/** Opens `path` for a replay; throws with the cause (the caller adds what to do). */
export async function openReplayReader(path: string): Promise<ReplayReader> {
  const st = await stat(path);
  if (st.isDirectory()) throw new Error('it is a directory');
  if (st.isFIFO() || st.isSocket()) return new PipeReader(path, isNamedFifo(path));
  const fh = await open(path, 'r');
  return {
    seekable: st.isFile(),
    file: fh,
    read: async (buf, pos) => (await fh.read(buf, 0, buf.length, st.isFile() ? pos : null)).bytesRead,
    close: () => fh.close().catch(() => undefined),
  };
}

/** Bytes held from the pipe before reading it pauses (the replay takes them a chunk at a time). */
const HELD_MAX = 1024 * 1024;
/** While no writer has opened the FIFO yet, the reader looks again this often. */
const NO_WRITER_RETRY_MS = 100;

class PipeReader implements ReplayReader {
  readonly seekable = false;
  readonly file = undefined;
  private sock: Socket | undefined;
  private readonly held: Buffer[] = [];
  private heldBytes = 0;
  private gotData = false;
  private ended = false;
  private closed = false;
  private error: Error | undefined;
  private wake: (() => void) | undefined;
  private retry: NodeJS.Timeout | undefined;

  /** `waitsForWriter`: a named FIFO, which a writer may open later; an anonymous pipe's writer is there or gone. */
  constructor(
    private readonly path: string,
    private readonly waitsForWriter: boolean,
  ) {
    this.connect();
  }

  /** Non-blocking open: a FIFO without a writer does not hold a thread; it reads as ended until one comes. */
  private connect(): void {
    if (this.closed) return;
    let fd: number;
    try {
      fd = openSync(this.path, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    const sock = new Socket({ fd, readable: true, writable: false });
    this.sock = sock;
    sock.on('data', (c: Buffer) => {
      this.gotData = true;
      this.held.push(c);
      this.heldBytes += c.length;
      if (this.heldBytes >= HELD_MAX) sock.pause();
      this.notify();
    });
    sock.on('end', () => {
      sock.destroy();
      if (this.gotData || this.closed || !this.waitsForWriter) {
        this.ended = true;
        this.notify();
        return;
      }
      // No writer had opened it yet (a non-blocking FIFO reads as ended then): wait for one.
      this.retry = setTimeout(() => this.connect(), NO_WRITER_RETRY_MS);
    });
    sock.on('error', (err) => this.fail(err));
  }

  private fail(err: Error): void {
    this.error = err;
    this.notify();
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  async read(buf: Buffer): Promise<number> {
    while (this.held.length === 0) {
      if (this.error !== undefined) throw this.error;
      if (this.ended || this.closed) return 0;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
    let n = 0;
    while (this.held.length > 0 && n < buf.length) {
      const c = this.held[0]!;
      const take = Math.min(c.length, buf.length - n);
      c.copy(buf, n, 0, take);
      n += take;
      if (take === c.length) this.held.shift();
      else this.held[0] = c.subarray(take);
    }
    this.heldBytes -= n;
    if (this.heldBytes < HELD_MAX / 2) this.sock?.resume();
    return n;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    this.sock?.destroy();
    this.notify();
  }
}

/**
 * A FIFO in the file system, as opposed to an anonymous pipe reached through /dev/fd or /proc/<pid>/fd
 * (a shell's `<(…)`), whose links read `pipe:[inode]`: its writer cannot come later, so an end read
 * before any data is the end, not "no writer yet".
 */
function isNamedFifo(path: string): boolean {
  let p = path;
  for (let hops = 0; hops < 8; hops++) {
    let target: string;
    try {
      target = readlinkSync(p);
    } catch {
      return true; // not a link: the FIFO itself
    }
    if (target.startsWith('pipe:') || target.startsWith('socket:')) return false;
    p = resolve(dirname(p), target);
  }
  return true;
}
