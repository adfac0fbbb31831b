/**
 * The daemons' logger: pino JSON lines on stdout through a destination that can never hang the process.
 *
 * pino's default destination (sonic-boom) flushes synchronously at exit and retries a failed write every
 * 100 ms with Atomics.wait for as long as it fails; with stdout's reader gone (EPIPE) that is for ever,
 * and the daemon hangs in its exit handler instead of exiting. Here stdout is written asynchronously (the
 * event loop never waits for journald), the queue is bounded (a stuck reader cannot grow memory; lines
 * past the bound are counted), a write error other than EAGAIN ends logging for good, and the exit flush
 * makes one attempt without sleeping and skips everything while a write is still outstanding.
 */
import { write as fsWrite, writeSync } from 'node:fs';
import { pino, type Logger } from 'pino';

/** Log bytes held for a slow stdout reader; beyond it lines are dropped (and counted). */
const MAX_QUEUED_BYTES = 4 * 1024 * 1024;
/** One write is at most this large (a pipe's default capacity). */
const MAX_WRITE_BYTES = 64 * 1024;
/** Retry delay when the descriptor is non-blocking and full. */
const EAGAIN_RETRY_MS = 50;

export class StdoutDestination {
  private queue: Buffer[] = [];
  private queuedBytes = 0;
  private inFlight = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private drainWaiters: Array<() => void> = [];
  /** Why logging stopped (e.g. "EPIPE"), once a write has failed for good. */
  broken: string | undefined;
  /** Lines not written: queue full, or logging stopped after a write error. */
  dropped = 0;

  constructor(private readonly fd = 1) {
    process.on('exit', () => this.flushAtExit());
  }

  /** pino's destination interface. */
  write(line: string): void {
    if (this.broken !== undefined) {
      this.dropped++;
      return;
    }
    const buf = Buffer.from(line, 'utf8');
    if (this.queuedBytes + buf.length > MAX_QUEUED_BYTES) {
      this.dropped++;
      return;
    }
    this.queue.push(buf);
    this.queuedBytes += buf.length;
    if (!this.inFlight && this.retryTimer === undefined) this.writeNext();
  }

  /** Resolves once everything queued is written (or logging broke), or after `maxMs`. */
  drain(maxMs: number): Promise<void> {
    if (this.idle()) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(resolve, maxMs);
      t.unref();
      this.drainWaiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  private idle(): boolean {
    return this.broken !== undefined || (!this.inFlight && this.queue.length === 0);
  }

  private take(): Buffer {
    const all = this.queue.length === 1 ? this.queue[0]! : Buffer.concat(this.queue);
    const chunk = all.length > MAX_WRITE_BYTES ? all.subarray(0, MAX_WRITE_BYTES) : all;
    const rest = all.subarray(chunk.length);
    this.queue = rest.length > 0 ? [rest] : [];
    this.queuedBytes = rest.length;
    return chunk;
  }

  private writeNext(): void {
    if (this.queue.length === 0 || this.broken !== undefined) return this.notifyIdle();
    const chunk = this.take();
    this.inFlight = true;
    fsWrite(this.fd, chunk, 0, chunk.length, null, (err, n) => {
      this.inFlight = false;
      if (err) {
        if (err.code === 'EAGAIN') {
          this.unshift(chunk);
          this.retryTimer = setTimeout(() => {
            this.retryTimer = undefined;
            this.writeNext();
          }, EAGAIN_RETRY_MS);
          return;
        }
        // EPIPE (reader gone), EBADF, EIO…: nobody can read the log any more; stop trying.
        this.broken = err.code ?? err.message;
        this.dropped += 1 + this.queue.length;
        this.queue = [];
        this.queuedBytes = 0;
        return this.notifyIdle();
      }
      if (n < chunk.length) this.unshift(chunk.subarray(n));
      this.writeNext();
    });
  }

  private unshift(b: Buffer): void {
    this.queue.unshift(b);
    this.queuedBytes += b.length;
  }

  private notifyIdle(): void {
    if (!this.idle()) return;
    const w = this.drainWaiters;
    this.drainWaiters = [];
    for (const f of w) f();
  }

  /**
   * Last chance for queued lines when the process exits: no event loop any more, so one synchronous
   * attempt. Nothing while a write is outstanding (the reader is slow or stuck: waiting could block the
   * exit), nothing after an error, no retry, no sleep.
   */
  flushAtExit(): void {
    if (this.broken !== undefined || this.inFlight || this.queue.length === 0) return;
    const chunk = this.take();
    try {
      writeSync(this.fd, chunk);
    } catch {
      this.dropped++;
    }
  }
}

let stdout: StdoutDestination | undefined;

/** The process's one stdout destination (created on first use). */
export function stdoutDestination(): StdoutDestination {
  return (stdout ??= new StdoutDestination(1));
}

export function createLogger(level: string, base: Record<string, unknown>): Logger {
  return pino({ level, base }, stdoutDestination());
}

/** Waits (bounded) for queued log lines to reach stdout; a no-op when nothing was logged through it. */
export function drainLogs(maxMs: number): Promise<void> {
  return stdout ? stdout.drain(maxMs) : Promise.resolve();
}
