/**
 * make bench-fanout: console fan-out side by side with the peers (issue #15). For every shape
 * N clients × R can_frame events/s × S s, the servers run one after another in the same run — nchan
 * (nginx, 1 worker), a minimal better-sse server, the canrelay agent console (--sim) and the canrelay
 * bridge's dongle console (an agent on --sim behind it) — and the same load client (load-client.ts, in
 * one or two processes) measures them. Per server: delivered %, server CPU per delivered event
 * (utime+stime from /proc over the window, divided by the events that arrived at the clients in it), idle and peak RSS, p50/p99 delay from the event's own
 * timestamp to arrival, and ratios to nchan. Results: bench/results/fanout.{md,json}.
 *
 * Env: BENCH_FANOUT_SHAPES="500x200x20,2000x50x20", BENCH_FANOUT_SERVERS="nchan,better-sse,agent,bridge",
 * BENCH_FANOUT_RUNS=1, BENCH_FANOUT_NODE_ARGS (extra node flags for the canrelay processes, e.g. --cpu-prof).
 */
import { fork } from 'node:child_process';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sampleProc, writeResults, runBench } from '../lib.js';
import { DELAY_BUCKET_MS, type ClientJob, type ClientReport } from './load-client.js';
import { Publisher, startAgentConsole, startBetterSse, startBridgeConsole, startNchan, type RunningServer, type ServerName } from './servers.js';

interface Shape {
  clients: number;
  rate: number;
  seconds: number;
}

interface ServerResult {
  server: ServerName;
  shape: Shape;
  run: number;
  expected_per_client: number;
  delivered_pct: number;
  min_client_pct: number;
  clients_closed: number;
  cpu_s: number;
  us_per_event: number;
  events_in_cpu_window: number;
  rss_idle_mb: number;
  rss_peak_mb: number;
  p50_ms: number;
  p99_ms: number;
  load_avg: number;
  extra: Record<string, number>;
}

const REPO = process.cwd();
const SHAPES: Shape[] = (process.env.BENCH_FANOUT_SHAPES ?? '500x200x20,2000x50x20').split(',').map((s) => {
  const [clients, rate, seconds] = s.split('x').map(Number);
  if (!(clients! > 0 && rate! > 0 && seconds! > 0)) throw new Error(`BENCH_FANOUT_SHAPES: "${s}" is not clients x rate x seconds`);
  return { clients: clients!, rate: rate!, seconds: seconds! };
});
const SERVERS = (process.env.BENCH_FANOUT_SERVERS ?? 'nchan,better-sse,agent,bridge').split(',') as ServerName[];
const RUNS = Number(process.env.BENCH_FANOUT_RUNS ?? 1);
const NODE_ARGS = (process.env.BENCH_FANOUT_NODE_ARGS ?? '').split(' ').filter(Boolean);
const WARMUP_MS = 3000;
/** Events of the window that arrive later than this after it are counted as not delivered (the clients report
 * as soon as every connection got past the window; this bounds a starved client's wait). */
const GRACE_MS = Number(process.env.BENCH_FANOUT_GRACE_S ?? 20) * 1000;
const CLIENT_SCRIPT = fileURLToPath(new URL('./load-client.js', import.meta.url));

async function start(name: ServerName, rate: number): Promise<RunningServer> {
  switch (name) {
    case 'nchan':
      return startNchan(rate);
    case 'better-sse':
      return startBetterSse(join(REPO, 'build/bench-deps'), join(REPO, 'bench/fanout/better-sse-server.mjs'));
    case 'agent':
      return startAgentConsole(rate, NODE_ARGS);
    case 'bridge':
      return startBridgeConsole(rate, NODE_ARGS);
    default:
      throw new Error(`unknown server ${String(name)} in BENCH_FANOUT_SERVERS (nchan, better-sse, agent, bridge)`);
  }
}

function percentile(hist: Map<number, number>, total: number, p: number): number {
  const keys = [...hist.keys()].sort((a, b) => a - b);
  let acc = 0;
  for (const k of keys) {
    acc += hist.get(k)!;
    if (acc >= total * p) return Math.round(k * DELAY_BUCKET_MS * 10) / 10;
  }
  return NaN;
}

async function measure(name: ServerName, shape: Shape, run: number): Promise<ServerResult> {
  const srv = await start(name, shape.rate);
  const load0 = loadavg()[0]!;
  let publisher: Publisher | undefined;
  const kids: ReturnType<typeof fork>[] = [];
  try {
    // Idle: the server up, nothing published, no client (the agent's sim already runs).
    await new Promise((r) => setTimeout(r, 2000));
    const idle = sampleProc(srv.pid).rssBytes;
    const procs = shape.clients >= 1000 ? 2 : 1;
    const per = Math.ceil(shape.clients / procs);
    const connected = await Promise.all(
      Array.from({ length: procs }, (_, i) => {
        const job: ClientJob = { url: srv.sseUrl, connections: Math.min(per, shape.clients - i * per), headers: srv.headers };
        const k = fork(CLIENT_SCRIPT, [JSON.stringify(job)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
        kids.push(k);
        return new Promise<{ connected: number; failed: number }>((resolve, reject) => {
          k.once('message', (m) => resolve(m as { connected: number; failed: number }));
          k.once('exit', (code) => reject(new Error(`load client exited (${code}) before connecting`)));
        });
      }),
    );
    const failed = connected.reduce((s, c) => s + c.failed, 0);
    if (failed > 0) throw new Error(`${failed} of ${shape.clients} clients could not connect to ${name}`);
    // Published only once every client is connected: nginx accepts one connection per pass of its event loop,
    // and a pass that also writes every published event to every connected client made 2,000 clients take
    // minutes to connect on a loaded machine (the 2,000-client shape never got past its connections).
    if (srv.publishUrl) {
      publisher = new Publisher(srv.publishUrl, shape.rate);
      publisher.start();
    }
    const t0 = Date.now() + WARMUP_MS;
    const t1 = t0 + shape.seconds * 1000;
    const reports = kids.map(
      (k) =>
        new Promise<ClientReport>((resolve, reject) => {
          k.once('message', (m) => resolve(m as ClientReport));
          k.once('exit', (code) => reject(new Error(`load client exited (${code}) without a report`)));
        }),
    );
    for (const k of kids) k.send({ t0, t1, endAt: t1 + GRACE_MS });
    await new Promise((r) => setTimeout(r, t0 - Date.now()));
    const cpu0 = sampleProc(srv.pid).cpuSeconds;
    let peak = 0;
    while (Date.now() < t1) {
      await new Promise((r) => setTimeout(r, Math.min(500, Math.max(1, t1 - Date.now()))));
      peak = Math.max(peak, sampleProc(srv.pid).rssBytes);
    }
    const end = sampleProc(srv.pid);
    const got = await Promise.all(reports);
    const extra = srv.after ? await srv.after() : {};
    const counts = got.flatMap((r) => r.counts);
    const hist = new Map<number, number>();
    for (const r of got) for (const [k, v] of r.delays) hist.set(k, (hist.get(k) ?? 0) + v);
    const delivered = counts.reduce((s, c) => s + c, 0);
    // Published in the window: the publisher knows; for canrelay (its own sim) the client that got most.
    const expected = Math.max(publisher?.publishedIn(t0, t1) ?? 0, ...counts);
    const cpu = end.cpuSeconds - cpu0;
    // CPU per event: over the events the server delivered while its CPU was measured (by arrival), so a
    // server that falls behind on a loaded machine is still charged for the work it did, no more.
    const arrived = got.reduce((s, r) => s + r.arrived, 0);
    const result: ServerResult = {
      server: name,
      shape,
      run,
      expected_per_client: expected,
      delivered_pct: Math.round((delivered / (expected * shape.clients)) * 10000) / 100,
      min_client_pct: Math.round((Math.min(...counts) / expected) * 10000) / 100,
      clients_closed: got.reduce((s, r) => s + r.closed, 0),
      cpu_s: Math.round(cpu * 100) / 100,
      us_per_event: Math.round(((cpu * 1e6) / arrived) * 100) / 100,
      events_in_cpu_window: arrived,
      rss_idle_mb: Math.round((idle / 1048576) * 10) / 10,
      rss_peak_mb: Math.round((Math.max(peak, end.peakRssBytes) / 1048576) * 10) / 10,
      p50_ms: percentile(hist, delivered, 0.5),
      p99_ms: percentile(hist, delivered, 0.99),
      load_avg: Math.round(((load0 + loadavg()[0]!) / 2) * 10) / 10,
      extra: {
        ...extra,
        publish_failures: publisher?.failures ?? 0,
        frames_received_all: got.reduce((s, r) => s + r.frames, 0),
        load_client_cpu_s: Math.round(got.reduce((s, r) => s + r.cpuS, 0) * 100) / 100,
      },
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
    if (delivered === 0) process.stdout.write(`no event counted; first can_frame block received: ${JSON.stringify(got[0]?.sample)}\n`);
    return result;
  } finally {
    publisher?.stop();
    for (const k of kids) if (k.exitCode === null) k.kill('SIGKILL');
    await srv.stop();
  }
}

function table(results: ServerResult[], shape: Shape): string {
  const rows = results.filter((r) => r.shape === shape);
  const nchan = rows.filter((r) => r.server === 'nchan');
  const ref = (k: 'us_per_event' | 'rss_peak_mb', run: number): number | undefined => (nchan.find((r) => r.run === run) ?? nchan[0])?.[k];
  const ratio = (v: number, r: number | undefined): string => (r === undefined ? '—' : (v / r).toFixed(2));
  const lines = [
    `### ${shape.clients.toLocaleString('en')} clients × ${shape.rate} events/s × ${shape.seconds} s`,
    '',
    '| server | run | delivered % (worst client) | CPU s | µs CPU per delivered event | × nchan | idle RSS MB | peak RSS MB | × nchan | p50 ms | p99 ms | load avg |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows)
    lines.push(
      `| ${r.server} | ${r.run} | ${r.delivered_pct} (${r.min_client_pct}) | ${r.cpu_s} | ${r.us_per_event} | ${ratio(r.us_per_event, ref('us_per_event', r.run))} | ${r.rss_idle_mb} | ${r.rss_peak_mb} | ${ratio(r.rss_peak_mb, ref('rss_peak_mb', r.run))} | ${r.p50_ms} | ${r.p99_ms} | ${r.load_avg} |`,
    );
  return lines.join('\n') + '\n';
}

async function main(): Promise<void> {
  const results: ServerResult[] = [];
  const startedLoad = loadavg()[0]!;
  for (let run = 1; run <= RUNS; run++)
    for (const shape of SHAPES)
      for (const name of SERVERS) {
        process.stdout.write(`run ${run}: ${name} at ${shape.clients} × ${shape.rate}/s × ${shape.seconds} s …\n`);
        results.push(await measure(name, shape, run));
      }
  const md = `# Console fan-out side by side (make bench-fanout)

Servers one after another in one run, the same load client (node http, ${SHAPES.some((s) => s.clients >= 1000) ? 'two processes from 1,000 clients' : 'one process'}) on the
same machine. CPU is the server process's utime+stime over the ${WARMUP_MS / 1000} s-warmed window (nginx: its one worker; the
bridge: the bridge alone, its agent feeding it is not counted) divided by the can_frame events that arrived at the
clients during that window; a delivered event is a can_frame whose timestamp
is in the window and that arrived before the client gave up (at most ${GRACE_MS / 1000} s after it; delays include the load client's own lag). Delay: arrival minus the event's own timestamp (the
simulator's and the publisher's scheduled time, 5 ms ticks on both). canrelay runs with a --console-max-rate
far above the rate, so nothing is sampled (\`sampled_out\` in the JSON). Load average at the start: ${startedLoad.toFixed(1)}
(2 cores, shared with other work: read ratios, not absolutes).

${SHAPES.map((s) => table(results, s)).join('\n')}`;
  process.stdout.write(`\nwritten ${writeResults('fanout', { shapes: SHAPES, servers: SERVERS, results }, md)}\n\n${md}`);
}

runBench(main);
