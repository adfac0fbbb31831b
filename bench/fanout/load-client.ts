/**
 * make bench-fanout's load client (a child process, started with fork() by fanout.ts): opens many SSE
 * connections with node's own http (no dependency, the same client for every server), parses the
 * `can_frame` events, and measures each one's delay from its own timestamp (`"ts"`, ISO with µs) to its
 * arrival. Only events whose timestamp falls in the measurement window are counted.
 *
 * Protocol with the parent (IPC): argv[2] is a JSON ClientJob; the child sends {connected, failed} once
 * every connection got its response head, then waits for {t0, t1, endAt} and answers with a ClientReport
 * once every open connection has received an event stamped at or after t1 (events arrive in order, so
 * the window's are all in), or at endAt at the latest: a client process starved of CPU on a loaded machine
 * lags, and its lag must not count as events the server failed to deliver (it shows in the delays).
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
  /** can_frame events received in all (in the window or not), and the first one's text (to see why none counted). */
  frames: number;
  /** can_frame events that arrived while the server's CPU was measured ([t0, t1) by arrival, whatever their stamp). */
  arrived: number;
  sample: string;
  /** This load-client process's own CPU seconds (user+system) from connecting to the report: is the client the bottleneck? */
  cpuS: number;
}

export const DELAY_BUCKET_MS = 0.1;
const MAX_BUCKET = 600_000; // 60 s

function main(): void {
  const job = JSON.parse(process.argv[2]!) as ClientJob;
  const agent = new Agent({ keepAlive: false, maxSockets: Infinity });
  const counts = new Array<number>(job.connections).fill(0);
  /** Per connection: has it received an event stamped at or after t1 (or closed)? */
  const done = new Uint8Array(job.connections);
  const hist = new Uint32Array(MAX_BUCKET + 1);
  let closed = 0;
  let connected = 0;
  let failed = 0;
  let bytes = 0;
  let frames = 0;
  let arrived = 0;
  let sample = '';
  let minAt = Infinity;
  let maxAt = -Infinity;
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
          done[k] = 1;
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
              frames++;
              if (now >= t0 && now < t1) arrived++;
              if (sample === '') sample = s.slice(from, end);
              if (ts >= 0 && ts < end) {
                const at = tsMs(s, ts + 6);
                if (at < minAt) minAt = at;
                if (at > maxAt) maxAt = at;
                if (at >= t1) done[k] = 1;
                else if (at >= t0) {
                  counts[k]!++;
                  hist[Math.min(MAX_BUCKET, Math.max(0, Math.round((now - at) / DELAY_BUCKET_MS)))]!++;
                }
              }
            }
            from = end + 2;
          }
          rest = s.slice(from);
        });
        res.on('close', () => {
          closed++;
          done[k] = 1;
        });
      });
      r.on('error', () => {
        failed++;
        done[k] = 1;
        resolve();
      });
      r.end();
      reqs.push(r);
    });

  process.on('message', (m: { t0: number; t1: number; endAt: number }) => {
    t0 = m.t0;
    t1 = m.t1;
    const finish = (): void => {
      clearInterval(poll);
      clearTimeout(last);
      const delays: Array<[number, number]> = [];
      for (let i = 0; i < hist.length; i++) if (hist[i]! > 0) delays.push([i, hist[i]!]);
      const cpu = process.cpuUsage();
      const report: ClientReport = {
        counts,
        closed,
        delays,
        bytes,
        frames,
        arrived,
        sample: sample + ` (stamps seen ${minAt}…${maxAt}, window ${t0}…${t1})`,
        cpuS: (cpu.user + cpu.system) / 1e6,
      };
      for (const r of reqs) r.destroy();
      process.send!(report, () => process.exit(0));
    };
    const poll = setInterval(() => {
      if (Date.now() > t1 && done.every((d) => d === 1)) finish();
    }, 200);
    const last = setTimeout(finish, Math.max(0, m.endAt - Date.now()));
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
