/**
 * A small, strict SSE client for tests: real HTTP over loopback, parses the wire format exactly as
 * EventSource does (id/event/data fields, comments), and records everything for assertions.
 */
import { request, type IncomingMessage } from 'node:http';

export interface SseEvent {
  id?: string;
  event: string;
  data: string;
  json: Record<string, unknown>;
}

export class SseClient {
  readonly events: SseEvent[] = [];
  readonly comments: string[] = [];
  retry?: number;
  status = 0;
  headers: IncomingMessage['headers'] = {};
  raw = '';
  closed = false;
  private buf = '';
  private waiters: (() => void)[] = [];
  private res: IncomingMessage | undefined;
  private req: ReturnType<typeof request> | undefined;
  /** Set to false to stop reading from the socket (simulates a client that stops reading). */

  static async connect(url: string, headers: Record<string, string> = {}, opts: { paused?: boolean } = {}): Promise<SseClient> {
    const c = new SseClient();
    await new Promise<void>((resolve, reject) => {
      c.req = request(url, { headers: { Accept: 'text/event-stream', ...headers } }, (res) => {
        c.res = res;
        c.status = res.statusCode ?? 0;
        c.headers = res.headers;
        res.setEncoding('utf8');
        if (opts.paused) res.pause();
        res.on('data', (chunk: string) => c.feed(chunk));
        res.on('close', () => {
          c.closed = true;
          c.wake();
        });
        res.on('error', () => {});
        resolve();
      });
      c.req.on('error', (err) => {
        c.closed = true;
        c.wake();
        reject(err);
      });
      c.req.end();
    });
    return c;
  }

  private feed(chunk: string): void {
    this.raw += chunk.length < 100_000 && this.raw.length < 1_000_000 ? chunk : '';
    this.buf += chunk;
    let i: number;
    for (;;) {
      // A comment line between blocks (the opening comment, keep-alives) counts as soon as it is whole.
      while (this.buf.startsWith(':') && (i = this.buf.indexOf('\n')) >= 0) {
        this.comments.push(this.buf.slice(1, i).trim());
        this.buf = this.buf.slice(i + 1);
      }
      if ((i = this.buf.indexOf('\n\n')) < 0) break;
      const block = this.buf.slice(0, i);
      this.buf = this.buf.slice(i + 2);
      let id: string | undefined;
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) {
          this.comments.push(line.slice(1).trim());
          continue;
        }
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'id') id = value;
        else if (field === 'event') event = value;
        else if (field === 'data') data.push(value);
        else if (field === 'retry') this.retry = Number(value);
      }
      if (data.length > 0) {
        const text = data.join('\n');
        this.events.push({ id, event, data: text, json: JSON.parse(text) as Record<string, unknown> });
      }
    }
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Waits until `pred` holds over the events received so far, or fails after `ms`. */
  async waitFor(pred: (events: SseEvent[]) => boolean, ms = 5000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + ms;
    while (!pred(this.events)) {
      if (this.closed) throw new Error(`stream closed before ${what} (got ${this.events.length} events)`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what} (got ${this.events.length} events)`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async waitClosed(ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('stream did not close');
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  ofType(type: string): SseEvent[] {
    return this.events.filter((e) => e.event === type);
  }

  resume(): void {
    this.res?.resume();
  }

  close(): void {
    this.req?.destroy();
    this.res?.destroy();
  }
}

export async function getJson(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: Record<string, unknown>; text: string }> {
  const r = await fetch(url, { headers });
  const text = await r.text();
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    /* not JSON (e.g. /metrics) */
  }
  return { status: r.status, body, text };
}

/** Reads one sample from Prometheus text, e.g. metric('canrelay_can_frames_total', {bus:'can0',direction:'rx'}). */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have: Record<string, string> = {};
    for (const kv of (m[3] ?? '').split(',').filter(Boolean)) {
      const [k, v] = kv.split('=');
      have[k!] = JSON.parse(v!) as string;
    }
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[4]);
  }
  return undefined;
}
