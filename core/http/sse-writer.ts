/**
 * One SSE connection: headers, the opening comment, `retry:` (with the first event: a block holding only
 * `retry:` dispatches nothing in browsers, but clients such as httpx-sse yield it as an empty `message`),
 * keep-alive comment lines (no blank line after them, for the same reason), and event writes with
 * backpressure. It is a StreamSubscriber: while the socket accepts data, live events are written as they
 * are published; once `write()` returns false it stops and waits for `drain`, then catches up from the
 * stream's ring. Memory per client is therefore the socket's own buffer, never a private queue. A client
 * whose unsent backlog passes `maxPendingBytes`, or whose next event has left the ring, is cut off; it can
 * reconnect with Last-Event-ID and will get a stream_reset if the history it needs is gone.
 * The bytes go out through SseOutput: live events are shared Buffers, written together every few ms.
 */
import type { ServerResponse } from 'node:http';
import type { ConsoleStream, StoredEvent, StreamSubscriber } from '../console/console-stream.js';
import type { ChunkSelector } from '../console/console-selection.js';
import type { ResumeRequest } from '../console/resume.js';
import { SseOutput } from './sse-output.js';

export interface SseOptions {
  keepAliveMs: number;
  /** Reconnect delay suggested to EventSource clients. */
  retryMs: number;
  /** Unsent bytes (socket buffer + events not yet written) before the client is cut off. */
  maxPendingBytes: number;
  /** Called once when the connection ends, with why. */
  onClose?: (reason: SseCloseReason) => void;
  /**
   * A stream whose client must first learn the current state (the bridge's fleet stream): called when a
   * client starts without a clean resume (no Last-Event-ID, or a stream_reset), at the very moment its
   * cursor is fixed, so nothing slips between the two. Returns SSE blocks without ids (EventSource keeps
   * its last id), written before any live event and with the same backpressure.
   */
  snapshot?: () => readonly string[];
}

export type SseCloseReason = 'client_closed' | 'slow_client' | 'stream_closed' | 'server_closing' | 'server_error';

const COLON = 58; // ':' — a comment (keep-alive), not an event

/** Replayed events are coalesced into writes of about this size. */
const BATCH_BYTES = 64 * 1024;
/**
 * Events of the ring one pump looks at before it lets the event loop turn: a selection that matches none
 * of a long history (`?backlog=` with an `?ids=` of nothing there) wrote nothing, so nothing pushed back,
 * and one request walked the whole ring in one turn while the relay waited (10 such requests on 10,000
 * events: ~0.6 s).
 */
const SCAN_PER_TURN = 1000;

export const SSE_HEADERS: Readonly<Record<string, string>> = {
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-cache, no-store, no-transform',
  'X-Accel-Buffering': 'no',
  Connection: 'keep-alive',
};

export class SseWriter implements StreamSubscriber {
  cursor: number;
  private blocked = false;
  private ended = false;
  private keepAlive: NodeJS.Timeout | undefined;
  /** Snapshot blocks still to write (held by reference: its size is the fleet's, not the client's backlog). */
  private snapshot: readonly string[] = [];
  private snapshotAt = 0;
  private retryPending = true;
  /** A pump is due on the next turn (SCAN_PER_TURN reached). */
  private pumpDue = false;
  private readonly out: SseOutput;

  constructor(
    private readonly res: ServerResponse,
    private readonly stream: ConsoleStream,
    private readonly opts: SseOptions,
    /** The client's selection (?ids=, ?buses=): events it leaves out are passed over, their ids too. */
    private readonly select?: ChunkSelector,
  ) {
    this.cursor = stream.latest;
    this.out = new SseOutput(res);
  }

  /** Writes the head, subscribes at the resume position and starts delivering. */
  start(req: ResumeRequest): void {
    const res = this.res;
    res.socket?.setNoDelay(true);
    res.writeHead(200, SSE_HEADERS);
    // The opening comment makes proxies pass the headers at once; `retry:` goes with the first event (write()).
    // Comments end with their line, not with a blank line: httpx-sse yields an empty `message` for every
    // blank line once an id was seen, which a comment block would be.
    res.write(`: canrelay console ${this.stream.name}\n`);
    res.on('close', () => this.end('client_closed'));
    this.out.start(() => {
      this.blocked = false;
      this.pump();
    });
    // With a snapshot, ?backlog is meaningless: older events replayed after the current state would undo it.
    const plan = this.stream.subscribe(this, this.opts.snapshot && req.lastEventId === undefined ? {} : req);
    this.cursor = plan.cursor;
    // Followed by a snapshot (id-less, maybe megabytes): the reset names no position either (resetEvent).
    if (plan.reset) this.write(this.stream.resetEvent(plan.reset, this.opts.snapshot === undefined));
    const fresh = req.lastEventId === undefined || plan.reset !== undefined;
    if (this.opts.snapshot && fresh) this.snapshot = this.opts.snapshot();
    // A reset skips the events that told the current presence (a restart's `online`): tell it again.
    else if (plan.reset) this.snapshot = this.stream.presenceNotices();
    // Sampling began before this client came: tell it now, in the announcement's own shape (no id).
    const notice = fresh ? this.stream.samplingNotice() : undefined;
    if (notice !== undefined) this.snapshot = [...this.snapshot, notice];
    this.keepAlive = setInterval(() => {
      if (!this.blocked) this.write(': keep-alive\n');
    }, this.opts.keepAliveMs);
    this.keepAlive.unref();
    this.pump();
  }

  onEvent(e: StoredEvent): void {
    if (this.ended) return;
    if (!this.blocked && this.snapshotAt === this.snapshot.length && e.id === this.cursor + 1) {
      this.cursor = e.id;
      if (this.select !== undefined && !this.select(e.chunk)) return;
      if (this.retryPending) this.write(e.chunk);
      else if (!this.out.writeShared(e)) this.blocked = true;
      return;
    }
    // A replay this writer paused itself (pumpNextTurn) is not a client falling behind: it goes on next turn.
    if (this.pumpDue && !this.blocked) return;
    if (this.out.pending + this.stream.backlogBytes(this.cursor) > this.opts.maxPendingBytes) this.end('slow_client');
  }

  onStreamClosed(): void {
    this.end('stream_closed');
  }

  /** Ends the connection (server shutdown). */
  close(): void {
    this.end('server_closing');
  }

  /** Ends the connection after its start failed (a snapshot that could not be built): what it took is given back. */
  abort(): void {
    this.end('server_error');
  }

  /** Writes buffered events after the cursor until caught up or the socket pushes back. */
  private pump(): void {
    while (!this.blocked && !this.ended && this.snapshotAt < this.snapshot.length) {
      let batch = '';
      while (batch.length < BATCH_BYTES && this.snapshotAt < this.snapshot.length) batch += this.snapshot[this.snapshotAt++];
      this.write(batch);
    }
    if (this.snapshotAt < this.snapshot.length) return; // blocked: 'drain' pumps again
    // Written: released (a fleet snapshot is ~1 MiB at 2,000 dongles; held, every open page kept one).
    if (this.snapshot.length > 0) {
      this.snapshot = [];
      this.snapshotAt = 0;
    }
    let scanned = 0;
    while (!this.blocked && !this.ended) {
      let batch = '';
      while (batch.length < BATCH_BYTES && scanned < SCAN_PER_TURN) {
        const { event, gone } = this.stream.after(this.cursor);
        if (gone) return this.end('slow_client');
        if (!event) break;
        scanned++;
        if (this.select === undefined || this.select(event.chunk)) batch += event.chunk;
        this.cursor = event.id;
      }
      if (batch !== '') this.write(batch);
      if (scanned >= SCAN_PER_TURN) return this.pumpNextTurn();
      if (batch === '') return;
    }
  }

  /** The rest of the replay on a later turn (live events meanwhile wait in the ring: the cursor is behind them). */
  private pumpNextTurn(): void {
    if (this.pumpDue) return;
    this.pumpDue = true;
    setImmediate(() => {
      this.pumpDue = false;
      if (!this.blocked && !this.ended) this.pump();
    });
  }

  private write(chunk: string): void {
    if (this.ended) return;
    if (this.retryPending && chunk.charCodeAt(0) !== COLON) {
      // The first event block carries the reconnect delay, so no block is ever just `retry:`.
      this.retryPending = false;
      chunk = `retry: ${this.opts.retryMs}\n${chunk}`;
    }
    if (!this.out.write(chunk)) this.blocked = true;
  }

  private end(reason: SseCloseReason): void {
    if (this.ended) return;
    this.ended = true;
    clearInterval(this.keepAlive);
    // A cut-off slow client is destroyed, not ended: ending would wait for it to read what is queued.
    const destroy = reason === 'slow_client' || reason === 'client_closed' || reason === 'server_error';
    this.out.detach(!destroy);
    this.stream.unsubscribe(this);
    if (destroy) this.res.destroy();
    else this.res.end();
    this.opts.onClose?.(reason);
  }
}
