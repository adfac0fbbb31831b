/**
 * The console connection: a fetch-based Server-Sent Events reader with automatic reconnect.
 *
 * Why not EventSource: it hides the HTTP status (a refused token must be shown as refused, not retried
 * forever), cannot send a header, and gives no way to tell a clean resume from a fresh start. This reader
 * parses the event-stream format exactly as the HTML standard describes (CR, LF or CRLF line ends, BOM,
 * comments, `id` without NUL, `retry`), keeps the last event id and sends it back as `Last-Event-ID` on
 * every reconnect, so the server resumes without gap or duplicate, or answers `stream_reset` first.
 */

export interface SseMessage {
  type: string;
  data: string;
  /** The last event id after this message (the stream's, as the standard defines it). */
  lastEventId: string;
  /** The message had an `id:` field of its own (the fleet stream's snapshot events have none). */
  hasId: boolean;
}

/** Incremental event-stream parser: feed() text chunks of any size, get complete messages back. */
export class SseParser {
  /** The stream's last event id: taken from an `id:` line only once its event is complete (the standard's dispatch). */
  lastEventId = '';
  /** The `id:` of the event being read (the standard's "last event ID buffer"), committed at its blank line. */
  private idBuffer: string | undefined;
  /** Reconnection time from a `retry:` field, when one was sent. */
  retryMs: number | undefined;
  private buf = '';
  private data: string[] = [];
  private type = '';
  private sawId = false;
  private first = true;
  /** The previous chunk ended with CR: a LF at the start of the next one belongs to it. */
  private pendingCr = false;

  feed(chunk: string, out: SseMessage[] = []): SseMessage[] {
    if (this.first && chunk.length > 0) {
      this.first = false;
      if (chunk.charCodeAt(0) === 0xfeff) chunk = chunk.slice(1);
    }
    if (this.pendingCr && chunk.startsWith('\n')) chunk = chunk.slice(1);
    this.pendingCr = false;
    this.buf += chunk;
    let start = 0;
    const s = this.buf;
    // The next CR is looked up again only once passed: with none in the text (the usual LF-only stream),
    // searching for it at every line scanned the rest of the chunk each time (quadratic on a large resume).
    let cr = s.indexOf('\r');
    for (;;) {
      const lf = s.indexOf('\n', start);
      if (cr >= 0 && cr < start) cr = s.indexOf('\r', start);
      let end: number;
      let next: number;
      if (cr >= 0 && (lf < 0 || cr < lf)) {
        end = cr;
        if (cr + 1 < s.length) next = s.charCodeAt(cr + 1) === 10 ? cr + 2 : cr + 1;
        else {
          next = cr + 1;
          this.pendingCr = true;
        }
      } else if (lf >= 0) {
        end = lf;
        next = lf + 1;
      } else break;
      this.line(s.slice(start, end), out);
      start = next;
    }
    this.buf = start === 0 ? s : s.slice(start);
    return out;
  }

  /**
   * Forgets a partial message (the connection ended mid-event); the last event id is that of the last
   * complete event. An `id:` of the cut one kept would resume after an event never received, and the
   * page would call the gap "nothing missed".
   */
  reset(): void {
    this.idBuffer = undefined;
    this.buf = '';
    this.data = [];
    this.type = '';
    this.sawId = false;
    this.first = true;
    this.pendingCr = false;
  }

  private line(line: string, out: SseMessage[]): void {
    if (line === '') {
      if (this.idBuffer !== undefined) this.lastEventId = this.idBuffer;
      this.idBuffer = undefined;
      if (this.data.length > 0) {
        out.push({ type: this.type || 'message', data: this.data.join('\n'), lastEventId: this.lastEventId, hasId: this.sawId });
      }
      this.data = [];
      this.type = '';
      this.sawId = false;
      return;
    }
    if (line.charCodeAt(0) === 58 /* : */) return; // comment (opening comment, keep-alives)
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    switch (field) {
      case 'event':
        this.type = value;
        break;
      case 'data':
        this.data.push(value);
        break;
      case 'id':
        if (!value.includes('\0')) this.idBuffer = value;
        this.sawId = true;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.retryMs = Number(value);
        break;
      default:
        break; // unknown fields are ignored
    }
  }
}

/**
 * live: connected and receiving. reconnecting: lost, waiting to retry. resumed: reconnected and the
 * server continued after our last event (no gap). reset: reconnected but the history was gone
 * (stream_reset), or there was no event id to resume after (a fresh start). refused: 401/403 — the
 * token is missing or wrong; no retry until a new one is given.
 */
export type StreamState = 'connecting' | 'live' | 'reconnecting' | 'resumed' | 'reset' | 'refused';

export interface StreamStatus {
  state: StreamState;
  /** Human-readable detail: the error, the HTTP status, when the next attempt is. */
  detail: string;
  /** Epoch ms of the next attempt while reconnecting. */
  retryAt?: number;
  reconnects: number;
  resets: number;
  lastEventId: string;
  /**
   * With `resumed`: the id the connection resumed after (its Last-Event-ID). Not lastEventId: by the time
   * a resume is decided the backlog since that id may have been read, and lastEventId moved on with it.
   */
  resumedAfter?: string;
}

export interface ConnectionOptions {
  url: string;
  /** Sent as `Authorization: Bearer` (the bridge also takes ?access_token=, but a header stays out of logs). */
  token?: string;
  /** ?backlog=n on the first connect only: fill the page with recent history. */
  backlog?: number;
  /** Resume after this id from the start (a new connection replacing an old one, e.g. a new token). */
  lastEventId?: string;
  onMessage: (m: SseMessage) => void;
  onStatus: (s: StreamStatus) => void;
  /** A connection is declared dead after this long without a byte (keep-alives come every 15 s). */
  idleTimeoutMs?: number;
  /** How long to wait for the response headers of an attempt. */
  connectTimeoutMs?: number;
  /** Upper bound of the reconnect backoff. */
  maxBackoffMs?: number;
  fetchImpl?: typeof fetch;
}

const RESUMED_SETTLE_MS = 8000;

export class ConsoleConnection {
  private readonly parser = new SseParser();
  private abort: AbortController | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private attempt = 0;
  private stopped = false;
  private status: StreamStatus = { state: 'connecting', detail: '', reconnects: 0, resets: 0, lastEventId: '' };
  /** Counts run() calls: only the newest reads and retries. */
  private generation = 0;
  private hadConnection = false;
  private settleTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(private readonly opts: ConnectionOptions) {
    if (opts.lastEventId) {
      this.parser.lastEventId = opts.lastEventId;
      this.hadConnection = true;
    }
  }

  get lastEventId(): string {
    return this.parser.lastEventId;
  }

  start(): void {
    this.stopped = false;
    void this.run();
  }

  stop(): void {
    this.stopped = true;
    this.abort?.abort();
    if (this.timer) clearTimeout(this.timer);
    if (this.settleTimer) clearTimeout(this.settleTimer);
    this.timer = null;
  }

  /** Skips the backoff wait (the "Reconnect now" button, the browser coming back online). */
  reconnectNow(): void {
    // Only while waiting out a backoff: during an attempt (its request pending, or settling after it
    // connected) a second one would open another stream, and every event would be shown twice.
    if (this.stopped || this.status.state !== 'reconnecting' || this.timer === null) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    void this.run();
  }

  private setStatus(s: Partial<StreamStatus>): void {
    // A stopped connection says nothing more: an answer still arriving for it (a 401 whose body was being
    // read when the page connected again with a new token) must not be taken for the new connection's.
    if (this.stopped) return;
    this.status = { ...this.status, ...s, lastEventId: this.parser.lastEventId };
    this.opts.onStatus(this.status);
  }

  private async run(): Promise<void> {
    if (this.stopped) return;
    // Never two streams at once into one parser: a run that is not the newest stops, and retries nothing.
    this.abort?.abort();
    const gen = ++this.generation;
    const ctrl = new AbortController();
    this.abort = ctrl;
    const headers: Record<string, string> = { Accept: 'text/event-stream' };
    const resumeFrom = this.parser.lastEventId;
    if (resumeFrom !== '') headers['Last-Event-ID'] = resumeFrom;
    if (this.opts.token) headers.Authorization = `Bearer ${this.opts.token}`;
    let url = this.opts.url;
    // No event id yet (the first connect, or a reconnect before any event with one): there is no position
    // to resume from, so this is a fresh start, which asks for the recent history as the first connect does.
    if (resumeFrom === '' && this.opts.backlog) {
      url += (url.includes('?') ? '&' : '?') + `backlog=${this.opts.backlog}`;
    }
    if (!this.hadConnection && this.attempt === 0) this.setStatus({ state: 'connecting', detail: '' });

    let idle: ReturnType<typeof setTimeout> | null = null;
    const idleMs = this.opts.idleTimeoutMs ?? 45_000;
    const armIdle = (ms = idleMs, what = `no data for ${Math.round(idleMs / 1000)} s`): void => {
      if (idle) clearTimeout(idle);
      idle = setTimeout(() => ctrl.abort(new Error(what)), ms);
    };
    let why = 'connection closed';
    try {
      // A server (or proxy) that accepts the connection but never answers must not hold us for long.
      armIdle(this.opts.connectTimeoutMs ?? 10_000, 'no answer from the server');
      const res = await (this.opts.fetchImpl ?? fetch)(url, { headers, signal: ctrl.signal, cache: 'no-store' });
      armIdle();
      if (res.status === 401 || res.status === 403) {
        const msg = await errorText(res);
        if (idle) clearTimeout(idle);
        this.setStatus({ state: 'refused', detail: `HTTP ${res.status}${msg ? ': ' + msg : ''}` });
        this.stopped = true;
        return;
      }
      if (!res.ok || !res.body) {
        const msg = await errorText(res);
        throw new Error(`HTTP ${res.status}${msg ? ': ' + msg : ''}`);
      }
      const wasConnected = this.hadConnection;
      const resuming = wasConnected && resumeFrom !== '';
      this.hadConnection = true;
      this.attempt = 0;
      this.parser.reset();
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let decided = false;
      // On a reconnect with a position the server answers stream_reset first when our history is gone;
      // otherwise the stream simply continues. Wait for the first event (or a moment) before calling it resumed.
      const decideTimer = resuming
        ? setTimeout(() => {
            if (!decided) {
              decided = true;
              this.resumed(resumeFrom);
            }
          }, 400)
        : null;
      if (!wasConnected) this.setStatus({ state: 'live', detail: '' });
      else if (!resuming) this.startedAfresh();
      const batch: SseMessage[] = [];
      for (;;) {
        const { value, done } = await reader.read();
        if (done || gen !== this.generation) break;
        armIdle();
        batch.length = 0;
        this.parser.feed(value, batch);
        for (const m of batch) {
          if (!decided && resuming) {
            decided = true;
            if (decideTimer) clearTimeout(decideTimer);
            if (m.type === 'stream_reset') this.wasReset(true);
            else this.resumed(resumeFrom);
          } else if (m.type === 'stream_reset') this.wasReset(false);
          this.opts.onMessage(m);
        }
      }
      if (decideTimer) clearTimeout(decideTimer);
    } catch (err) {
      if (this.stopped || gen !== this.generation) return;
      const reason = ctrl.signal.reason instanceof Error ? ctrl.signal.reason.message : (err as Error).message;
      why = reason || why;
    } finally {
      if (idle) clearTimeout(idle);
    }
    if (this.stopped || gen !== this.generation) return;
    this.scheduleRetry(why);
  }

  private resumed(after: string): void {
    this.setStatus({ state: 'resumed', reconnects: this.status.reconnects + 1, resumedAfter: after, detail: `resumed after event ${after}` });
    this.settle();
  }

  /**
   * Reconnected with no event id (none had come): nothing told the server where to continue, so events
   * of the lost connection's last moments may be missing (beyond the history asked for). Not a resume.
   */
  private startedAfresh(): void {
    this.setStatus({
      state: 'reset',
      resets: this.status.resets + 1,
      reconnects: this.status.reconnects + 1,
      detail: `reconnected with no event id to resume after: started afresh${this.opts.backlog ? ' with the recent history' : ''}; events may have been missed`,
    });
    this.settle();
  }

  private wasReset(reconnected: boolean): void {
    this.setStatus({
      state: 'reset',
      resets: this.status.resets + 1,
      reconnects: this.status.reconnects + (reconnected ? 1 : 0),
      detail: 'the history was gone: events were missed',
    });
    this.settle();
  }

  /** "resumed" and "reset" are shown for a while, then the state is plain "live" again. */
  private settle(): void {
    if (this.settleTimer) clearTimeout(this.settleTimer);
    this.settleTimer = setTimeout(() => {
      if (this.status.state === 'resumed' || this.status.state === 'reset') this.setStatus({ state: 'live' });
    }, RESUMED_SETTLE_MS);
  }

  private scheduleRetry(why: string): void {
    this.attempt++;
    const base = this.parser.retryMs ?? 2000;
    const max = this.opts.maxBackoffMs ?? 15_000;
    // First retry after the server's hint, then doubling, with ±20 % jitter so a fleet does not reconnect in step.
    const delay = Math.min(max, Math.max(250, base * 2 ** (this.attempt - 1) * 0.5)) * (0.8 + Math.random() * 0.4);
    const retryAt = Date.now() + delay;
    this.setStatus({ state: 'reconnecting', detail: why, retryAt });
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.run();
    }, delay);
  }
}

async function errorText(res: Response): Promise<string> {
  let text = '';
  try {
    text = (await res.text()).slice(0, 300);
    const j = JSON.parse(text) as { error?: unknown };
    if (typeof j.error === 'string') text = j.error;
  } catch {
    /* not JSON: keep the text */
  }
  return text;
}
