/**
 * make bench-fanout's load client (a child process, started with fork() by fanout.ts): opens many SSE
 * connections with node's own http (no dependency, the same client for every server), parses the
 * `can_frame` events, and measures each one's delay from its own timestamp (`"ts"`, ISO with µs) to its
 * arrival. Only events whose timestamp falls in the measurement window are counted.
 *
 * Protocol with the parent (IPC): argv[2] is a JSON ClientJob; the child sends {connected, failed} once
 * every connection got its response head, then waits for {t0, t1, endAt} and answers with a ClientReport at endAt.
 */
import { request, Agent } from 'node:http';
import { fileURLToPath } from 'node:url';

export interface ClientJob {
  url: string;
  connections: number;
  headers: Record<string, string>;
}

export interface ClientReport {
  /** can_frame events with ts in [t0, t1) received per connection. */
  counts: number[];
  /** Connections the server closed (a slow client cut, or a crash). */
  closed: number;
  /** Delay histogram: DELAY_BUCKET_MS-wide buckets, [bucket index, count] pairs. */
  delays: Array<[number, number]>;
  /** Events with ts in the window that arrived after endAt are not counted (they count as not delivered). */
  bytes: number;
}

export const DELAY_BUCKET_MS = 0.1;
const MAX_BUCKET = 600_000; // 60 s

function main(): void {
  const job = JSON.parse(process.argv[2]!) as ClientJob;
  const agent = new Agent({ keepAlive: false, maxSockets: Infinity });
  const counts = new Array<number>(job.connections).fill(0);
  const hist = new Uint32Array(MAX_BUCKET + 1);
  let closed = 0;
  let connected = 0;
  let failed = 0;
  let bytes = 0;
  let t0 = Infinity;
  let t1 = -Infinity;
  // Parsing the second of an ISO timestamp costs more than the rest: keep the last one.
  let secText = '';
  let secMs = 0;
  const reqs: ReturnType<typeof request>[] = [];

  const tsMs = (s: string, i: number): number => {
    const sec = s.slice(i, i + 19);
    if (sec !== secText) {
      secText = sec;
      secMs = Date.parse(sec + 'Z');
    }
    return secMs + Number(s.slice(i + 20, i + 26)) / 1000;
  };

  const open = (k: number): Promise<void> =>
    new Promise((resolve) => {
      let rest = '';
      const r = request(job.url, { agent, headers: { Accept: 'text/event-stream', ...job.headers } }, (res) => {
        if (res.statusCode !== 200) {
          failed++;
          res.resume();
          return resolve();
        }
        connected++;
        resolve();
        res.setEncoding('latin1');
        res.on('data', (chunk: string) => {
          const now = Date.now();
          bytes += chunk.length;
          const s = rest + chunk;
          let from = 0;
          for (;;) {
            const end = s.indexOf('\n\n', from);
            if (end < 0) break;
            // `event: can_frame` (nchan, canrelay) or `event:can_frame` (better-sse): both end the type with its line.
            const ev = s.indexOf('can_frame\n', from);
            if (ev >= 0 && ev < end) {
              const ts = s.indexOf('"ts":"', ev);
              if (ts >= 0 && ts < end) {
                const at = tsMs(s, ts + 6);
                if (at >= t0 && at < t1) {
                  counts[k]!++;
                  hist[Math.min(MAX_BUCKET, Math.max(0, Math.round((now - at) / DELAY_BUCKET_MS)))]!++;
                }
              }
            }
            from = end + 2;
          }
          rest = s.slice(from);
        });
        res.on('close', () => closed++);
      });
      r.on('error', () => {
        failed++;
        resolve();
      });
      r.end();
      reqs.push(r);
    });

  process.on('message', (m: { t0: number; t1: number; endAt: number }) => {
    t0 = m.t0;
    t1 = m.t1;
    setTimeout(() => {
      const delays: Array<[number, number]> = [];
      for (let i = 0; i < hist.length; i++) if (hist[i]! > 0) delays.push([i, hist[i]!]);
      const report: ClientReport = { counts, closed, delays, bytes };
      for (const r of reqs) r.destroy();
      process.send!(report, () => process.exit(0));
    }, Math.max(0, m.endAt - Date.now()));
  });

  // Connect in rounds of 100, so neither side's listen backlog overflows.
  void (async () => {
    for (let i = 0; i < job.connections; i += 100) {
      const round: Promise<void>[] = [];
      for (let k = i; k < Math.min(job.connections, i + 100); k++) round.push(open(k));
      await Promise.all(round);
    }
    process.send!({ connected, failed });
  })();
}

// Imported by fanout.ts for its types and constants; run only as the forked child.
if (process.argv[1] === fileURLToPath(import.meta.url)) main();
