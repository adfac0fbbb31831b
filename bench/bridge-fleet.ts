/**
 * make bench-fleet: the bridge's cost per dongle at fleet shape. N protocol-level fake agents
 * (test/helpers/fake-agent.ts, one process) in N/2 groups send numbered frames every 10 ms to one real
 * bridge process; every frame must arrive at the other side of its group, in order. Per shape: bridge CPU
 * per relayed frame, RSS before and once connected (per dongle) and peak, relay p99 (the fake agent's send
 * time to the peer's receive time, one clock), with and without console viewers.
 *
 * The load generator shares the machine's cores with the bridge: CPU figures are the bridge's own
 * (/proc), but a loaded machine inflates them. BENCH_COMPARE=<other dist/cli.js> runs every shape on that
 * build too, interleaved, so before/after are measured side by side under the same load.
 * BENCH_FLOOR=ws,raw runs bench/relay-floor.ts the same way: the least a relay of this wire format costs in
 * Node (transport and codec only), with `ws` or with framing over plain sockets. BENCH_FLOOR=c runs
 * bench/relay-floor.c (built with the system's cc and libcrypto): the same relay with no runtime at all,
 * the floor of the kernel's sockets and the framing.
 */
import { execFileSync, spawn } from 'node:child_process';
import { request } from 'node:http';
import { join } from 'node:path';
import { ADMIN_TOKEN, AdminClient } from '../test/helpers/bridge-process.js';
import { readUnit, REPO } from '../test/helpers/deploy.js';
import { FakeAgent } from '../test/helpers/fake-agent.js';
import { CLI, CliProcess, tempDir } from '../test/helpers/processes.js';
import { median, sampleProc, writeResults, runBench } from './lib.js';
import { RelayTally, sendPaced } from './relay-tally.js';
import { rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';

interface Shape {
  dongles: number;
  /** Frames per second each dongle sends. */
  rate: number;
  seconds: number;
  /** SSE console viewers (on the first dongles' and groups' consoles). */
  viewers: number;
}

interface Result extends Shape {
  build: string;
  /** Which repetition (BENCH_RUNS) the row belongs to: rows of one run and shape ran side by side. */
  run: number;
  /**
   * CPU per relayed frame over the `ws` floor's in the same run and shape (BENCH_FLOOR=ws): what canrelay
   * costs above a bare relay of its wire format, a ratio the machine's noise moves less than the µs.
   */
  over_floor?: number;
  sent: number;
  relayed: number;
  out_of_order: number;
  cpu_us_per_frame: number;
  bridge_cpu_percent: number;
  rss_start_mb: number;
  rss_connected_mb: number;
  /** Seconds from the first connect to the last welcome, 32 at a time: what a fleet reconnecting costs. */
  connect_s: number;
  kb_per_idle_dongle: number;
  peak_rss_mb: number;
  p50_ms: number;
  p99_ms: number;
  viewer_events: number;
  /** Frames the bridge dropped (backlog full or too old: it fell behind), from its /metrics. */
  bridge_dropped: number;
  /** The same, by the counter's `reason` (too_old, …): where a drop came from. */
  bridge_dropped_by_reason: Record<string, number>;
  history_mb: number;
  /** V8 heap and memory outside it (Buffers) at the end, from the bridge's /metrics: where the RSS is. */
  heap_mb: number;
  external_mb: number;
  /** At the highest RSS seen by a 1 s /metrics poll during the run: V8 heap (total, used, new space) and external. */
  at_peak: { rss_mb: number; heap_total_mb: number; heap_used_mb: number; new_space_mb: number; external_mb: number };
  generator_cpu_percent: number;
  /** The machine's 1/5/15-minute load average when the shape ended (the machine is shared). */
  load_average: string;
}

// The default run (about 10 minutes): the issue's table, the goal shapes, and the ends of the range.
const DEFAULT_SHAPES = '10x500x10x0,20x100x5x0,100x200x15x0,200x200x60x0,200x200x15x20,1000x20x15x0,1000x20x15x20,2000x1x15x0';
const SHAPES: Shape[] = (process.env.BENCH_SHAPES ?? DEFAULT_SHAPES).split(',').map((s) => {
  const [dongles, rate, seconds, viewers] = s.split('x').map(Number);
  return { dongles: dongles!, rate: rate!, seconds: seconds!, viewers: viewers ?? 0 };
});
const COMPARE = process.env.BENCH_COMPARE;
/** How often the bench scrapes the bridge's /metrics for the memory at peak (BENCH_SCRAPE_MS). */
const SCRAPE_MS = Math.max(100, Number(process.env.BENCH_SCRAPE_MS ?? 1000));
/** Frames still missing this long after the last one arrived are reported lost. */
const SETTLE_MS = 10_000;

async function pool<T>(items: T[], width: number, f: (t: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (i < items.length) await f(items[i++]!);
    }),
  );
}

const words = (v: string | undefined): string[] => (v ?? '').split(' ').filter((a) => a !== '');
/** NODE_OPTIONS of the bridge's systemd unit (Environment=NODE_OPTIONS=…): the bench measures the bridge as deployed. */
const UNIT_NODE_ARGS = words(
  (readUnit(join(REPO, 'systemd/canrelay-bridge.service')).Service?.Environment ?? [])
    .map((e) => /^NODE_OPTIONS=(.*)$/.exec(e)?.[1])
    .filter((v): v is string => v !== undefined)
    .pop(),
);

/** What runs in the bridge's place for one row: a canrelay build, or a floor (bench/relay-floor.ts). */
interface Build {
  name: string;
  start(dir: string): CliProcess;
  /** A floor has no admin API: agents connect without registering or grouping (it pairs them by name). */
  floor: boolean;
}

function bridgeBuild(name: string, cli: string, nodeArgs: string[]): Build {
  return {
    name,
    floor: false,
    start: (dir) =>
      new CliProcess(
        spawn(process.execPath, [...nodeArgs, cli, 'bridge', '--listen', '127.0.0.1:0', '--db', join(dir, 'bridge.sqlite'), '--log-level', 'warn'], {
          env: { ...process.env, CANRELAY_ADMIN_TOKEN: ADMIN_TOKEN },
          stdio: ['ignore', 'pipe', 'pipe'],
        }),
      ),
  };
}

function floorBuild(mode: string): Build {
  if (mode === 'c') {
    const binary = join(tempDir('canrelay-floor-c-'), 'relay-floor');
    execFileSync('cc', ['-O2', '-o', binary, join(REPO, 'bench/relay-floor.c'), '-lcrypto'], { stdio: 'inherit' });
    return { name: 'floor (c)', floor: true, start: () => new CliProcess(spawn(binary, [], { stdio: ['ignore', 'pipe', 'pipe'] })) };
  }
  const script = join(REPO, 'build/bench/relay-floor.js');
  return { name: `floor (${mode})`, floor: true, start: () => new CliProcess(spawn(process.execPath, [script, mode], { stdio: ['ignore', 'pipe', 'pipe'] })) };
}

/** An SSE viewer that reads everything and counts events; bounded: it keeps no text. */
function viewer(base: string, path: string): { events: () => number; close: () => void } {
  let events = 0;
  const req = request(base + path, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } }, (res) => {
    res.setEncoding('utf8');
    res.on('data', (c: string) => {
      for (let i = c.indexOf('\nevent: '); i >= 0; i = c.indexOf('\nevent: ', i + 1)) events++;
    });
    res.on('error', () => {});
  });
  req.on('error', () => {});
  req.end();
  return { events: () => events, close: () => req.destroy() };
}

async function once(shape: Shape, build: Build, run: number): Promise<Result> {
  const dir = tempDir('canrelay-fleet-bench-');
  // --log-level warn: info lines per connection would be the load generator's own cost to read.
  const proc = build.start(dir);
  const pid = proc.child.pid!;
  // The listening line is at info level: wait for the port through /healthz instead of the log.
  const base = await discoverBase(pid);
  const admin = new AdminClient(base, ADMIN_TOKEN);
  const rssStart = sampleProc(pid).rssBytes;
  const ids = Array.from({ length: shape.dongles }, (_, i) => `fleet-${String(i).padStart(4, '0')}`);
  const tokens = new Map<string, string>();
  const pairs = Array.from({ length: Math.floor(shape.dongles / 2) }, (_, i) => i);
  if (!build.floor) {
    await pool(ids, 8, async (id) => void tokens.set(id, await admin.register(id)));
    await pool(pairs, 8, async (i) => void (await admin.group(`g-${i}`, ids[2 * i]!, ids[2 * i + 1]!)));
  }

  const tally = new RelayTally();
  const agents: FakeAgent[] = [];
  const connectStart = performance.now();
  await pool(ids, 32, async (id) => {
    agents.push(await FakeAgent.connect(base, { dongle: id, token: tokens.get(id) ?? 'floor', record: false, onDown: tally.onDown(id) }));
  });
  const connectS = (performance.now() - connectStart) / 1000;
  await new Promise((r) => setTimeout(r, 2000));
  const rssConnected = sampleProc(pid).rssBytes;

  const viewers: ReturnType<typeof viewer>[] = [];
  for (let i = 0; i < shape.viewers; i++) {
    viewers.push(viewer(base, i % 2 === 0 ? `/api/v1/streams/dongles/${ids[i % ids.length]}/console` : `/api/v1/streams/groups/g-${Math.floor(i / 2) % pairs.length}/console`));
  }

  // Where the memory is when RSS is highest: one /metrics scrape every SCRAPE_MS (a second: a few per cent
  // of the bridge's CPU at 2,000 dongles, and part of its relay p99 there; Prometheus scrapes every 15-60 s).
  const atPeak = { rss_mb: 0, heap_total_mb: 0, heap_used_mb: 0, new_space_mb: 0, external_mb: 0 };
  let polling = false;
  const poller = setInterval(() => {
    if (polling) return;
    polling = true;
    void scrape(base).then((m) => {
      polling = false;
      const rss = m('canrelay_bridge_process_resident_memory_bytes');
      if (rss / 1048576 <= atPeak.rss_mb) return;
      const mb = (b: number): number => Math.round(b / 1048576);
      Object.assign(atPeak, {
        rss_mb: mb(rss),
        heap_total_mb: mb(m('canrelay_bridge_nodejs_heap_size_total_bytes')),
        heap_used_mb: mb(m('canrelay_bridge_nodejs_heap_size_used_bytes')),
        new_space_mb: mb(m('canrelay_bridge_nodejs_heap_space_size_total_bytes{space="new"}')),
        external_mb: mb(m('canrelay_bridge_nodejs_external_memory_bytes')),
      });
    });
  }, SCRAPE_MS);
  const cpu0 = sampleProc(pid).cpuSeconds;
  const gen0 = process.cpuUsage();
  const t0 = Date.now();
  const sentTotal = await sendPaced(agents, shape.rate, shape.seconds);
  let last = tally.relayed;
  let lastChange = Date.now();
  while (tally.relayed < sentTotal && Date.now() - lastChange < SETTLE_MS) {
    await new Promise((r) => setTimeout(r, 50));
    if (tally.relayed !== last) [last, lastChange] = [tally.relayed, Date.now()];
  }
  clearInterval(poller);
  const secs = (Date.now() - t0) / 1000;
  const end = sampleProc(pid);
  const gen = process.cpuUsage(gen0);
  const viewerEvents = viewers.reduce((s, v) => s + v.events(), 0);
  const metrics = await fetch(`${base}/metrics`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } }).then(
    (r) => r.text(),
    () => '',
  );
  const sum = (name: string): number =>
    metrics
      .split('\n')
      .filter((l) => l.startsWith(name + '{') || l.startsWith(name + ' '))
      .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
  /** A counter's lines by their `reason` label (where a drop came from), the non-zero ones. */
  const byReason = (name: string): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const l of metrics.split('\n')) {
      if (!l.startsWith(name + '{')) continue;
      const reason = /reason="([^"]*)"/.exec(l)?.[1] ?? '';
      const n = Number(l.slice(l.lastIndexOf(' ') + 1));
      if (n > 0) out[reason] = (out[reason] ?? 0) + n;
    }
    return out;
  };
  for (const v of viewers) v.close();
  await Promise.all(agents.map((a) => a.close()));
  await proc.stop();
  rmSync(dir, { recursive: true, force: true }); // a run leaves no bridge database behind
  const mb = (b: number): number => Math.round(b / 1048576);
  return {
    ...shape,
    build: build.name,
    run,
    sent: sentTotal,
    relayed: tally.relayed,
    out_of_order: tally.outOfOrder,
    cpu_us_per_frame: tally.relayed > 0 ? Math.round(((end.cpuSeconds - cpu0) / tally.relayed) * 1e7) / 10 : NaN,
    bridge_cpu_percent: Math.round(((end.cpuSeconds - cpu0) / secs) * 100),
    rss_start_mb: mb(rssStart),
    rss_connected_mb: mb(rssConnected),
    connect_s: Math.round(connectS * 100) / 100,
    kb_per_idle_dongle: Math.round((rssConnected - rssStart) / 1024 / shape.dongles),
    peak_rss_mb: mb(end.peakRssBytes),
    p50_ms: tally.latencyMs(0.5),
    p99_ms: tally.latencyMs(0.99),
    viewer_events: viewerEvents,
    bridge_dropped: sum('canrelay_bridge_frames_dropped_total'),
    bridge_dropped_by_reason: byReason('canrelay_bridge_frames_dropped_total'),
    history_mb: Math.round(sum('canrelay_bridge_console_history_bytes') / 104857.6) / 10,
    heap_mb: Math.round(sum('canrelay_bridge_nodejs_heap_size_total_bytes') / 1048576),
    external_mb: Math.round(sum('canrelay_bridge_nodejs_external_memory_bytes') / 1048576),
    at_peak: atPeak,
    load_average: loadAverage(),
    generator_cpu_percent: Math.round(((gen.user + gen.system) / 1e6 / secs) * 100),
  };
}

/** One /metrics scrape; the returned function sums a series (name, or name{labels}) over its lines; 0 when unreachable. */
async function scrape(base: string): Promise<(series: string) => number> {
  const text = await fetch(`${base}/metrics`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } }).then(
    (r) => r.text(),
    () => '',
  );
  const lines = text.split('\n');
  return (series) =>
    lines
      .filter((l) => l.startsWith(series.includes('{') ? series + ' ' : series + '{') || l.startsWith(series + ' '))
      .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

async function discoverBase(pid: number): Promise<string> {
  // The bridge logs at warn, so its port is read from /proc (the one listening TCP socket it owns).
  const { readFileSync, readdirSync, readlinkSync } = await import('node:fs');
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    try {
      const inodes = new Set(
        readdirSync(`/proc/${pid}/fd`)
          .map((fd) => {
            try {
              return readlinkSync(`/proc/${pid}/fd/${fd}`);
            } catch {
              return '';
            }
          })
          .map((l) => /^socket:\[(\d+)\]$/.exec(l)?.[1])
          .filter((x): x is string => x !== undefined),
      );
      for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
        const f = line.trim().split(/\s+/);
        if (f[3] === '0A' && inodes.has(f[9]!)) return `http://127.0.0.1:${parseInt(f[1]!.split(':')[1]!, 16)}`;
      }
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('the bridge did not start listening');
}

const loadAverage = (): string =>
  os
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');

const label = (s: Shape): string => `${s.dongles.toLocaleString('en')} × ${s.rate}/s${s.viewers ? ` + ${s.viewers} viewers` : ''}`;

/** Two panels against fleet size (log scale): bridge CPU per relayed frame, and peak RSS. */
function chart(rows: Result[]): string {
  const W = 420,
    H = 260,
    L = 56,
    B = 40,
    T = 30,
    R = 12;
  const builds = [...new Set(rows.map((r) => r.build))];
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd'];
  const xs = rows.map((r) => r.dongles);
  const x0 = Math.log10(Math.min(...xs) / 1.5),
    x1 = Math.log10(Math.max(...xs) * 1.5);
  const panel = (ox: number, title: string, val: (r: Result) => number, unit: string): string => {
    const ymax = Math.max(1, ...rows.map(val).filter(Number.isFinite)) * 1.15;
    const px = (d: number): number => ox + L + ((Math.log10(d) - x0) / (x1 - x0)) * (W - L - R);
    const py = (v: number): number => T + (1 - v / ymax) * (H - T - B);
    const parts = [
      `<text x="${ox + W / 2}" y="16" text-anchor="middle" font-weight="bold">${title}</text>`,
      `<line x1="${ox + L}" y1="${H - B}" x2="${ox + W - R}" y2="${H - B}" stroke="#444"/>`,
      `<line x1="${ox + L}" y1="${T}" x2="${ox + L}" y2="${H - B}" stroke="#444"/>`,
    ];
    for (let k = 0; k <= 4; k++) {
      const v = (ymax / 4) * k;
      parts.push(
        `<text x="${ox + L - 4}" y="${py(v) + 4}" text-anchor="end">${v < 10 ? v.toFixed(1) : Math.round(v)}</text>`,
        `<line x1="${ox + L}" y1="${py(v)}" x2="${ox + W - R}" y2="${py(v)}" stroke="#ddd"/>`,
      );
    }
    for (const d of [10, 100, 1000])
      if (Math.log10(d) > x0 && Math.log10(d) < x1) parts.push(`<text x="${px(d)}" y="${H - B + 16}" text-anchor="middle">${d.toLocaleString('en')}</text>`);
    parts.push(
      `<text x="${ox + (W + L) / 2}" y="${H - 6}" text-anchor="middle">dongles (log scale)</text>`,
      `<text x="${ox + 12}" y="${H / 2}" transform="rotate(-90 ${ox + 12} ${H / 2})" text-anchor="middle">${unit}</text>`,
    );
    builds.forEach((b, bi) => {
      for (const r of rows.filter((r) => r.build === b && Number.isFinite(val(r)))) {
        const shape = r.viewers
          ? `<rect x="${px(r.dongles) - 4}" y="${py(val(r)) - 4}" width="8" height="8" fill="none" stroke="${colors[bi]}"/>`
          : `<circle cx="${px(r.dongles)}" cy="${py(val(r))}" r="4" fill="${colors[bi]}"/>`;
        parts.push(`${shape}<title>${b}: ${label(r)}: ${val(r)} ${unit}</title>`);
      }
    });
    return parts.join('\n');
  };
  const legend =
    builds.map((b, i) => `<circle cx="${20 + i * 160}" cy="${H + 14}" r="4" fill="${colors[i]}"/><text x="${28 + i * 160}" y="${H + 18}">${b}</text>`).join('\n') +
    `<rect x="${20 + builds.length * 160}" y="${H + 10}" width="8" height="8" fill="none" stroke="#444"/><text x="${32 + builds.length * 160}" y="${H + 18}">with console viewers</text>`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${2 * W}" height="${H + 28}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
${panel(0, 'bridge CPU per relayed frame', (r) => r.cpu_us_per_frame, 'µs')}
${panel(W, 'bridge peak RSS', (r) => r.peak_rss_mb, 'MB')}
${legend}
</svg>
`;
}

async function main(): Promise<void> {
  // The bridge runs with the node flags of its systemd unit (NODE_OPTIONS there), as deployed, plus
  // BENCH_BRIDGE_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"); BENCH_COMPARE_NODE_ARGS replaces
  // them for the compared build (BENCH_COMPARE, or this build again when only the node flags differ;
  // "" for none).
  const own = [...UNIT_NODE_ARGS, ...words(process.env.BENCH_BRIDGE_NODE_ARGS)];
  process.stdout.write(`bridge node flags: ${own.join(' ') || '(none)'}\n`);
  const builds: Build[] = [bridgeBuild('this build', CLI, own)];
  if (COMPARE || process.env.BENCH_COMPARE_NODE_ARGS !== undefined)
    builds.push(
      bridgeBuild(
        COMPARE ? 'compared build' : `this build ${process.env.BENCH_COMPARE_NODE_ARGS}`,
        COMPARE ?? CLI,
        process.env.BENCH_COMPARE_NODE_ARGS === undefined ? own : words(process.env.BENCH_COMPARE_NODE_ARGS),
      ),
    );
  for (const mode of words(process.env.BENCH_FLOOR?.replace(/,/g, ' '))) builds.push(floorBuild(mode));
  // BENCH_RUNS=n repeats every shape (builds interleaved within each repetition): medians under noisy load.
  const runs = Math.max(1, Number(process.env.BENCH_RUNS ?? 1));
  const results: Result[] = [];
  for (let run = 0; run < runs; run++) {
    for (const shape of SHAPES) {
      for (const build of builds) {
        const r = await once(shape, build, run);
        process.stdout.write(`${JSON.stringify(r)}\n`);
        results.push(r);
      }
    }
  }
  const same = (a: Result, b: Result): boolean => a.run === b.run && a.dongles === b.dongles && a.rate === b.rate && a.seconds === b.seconds && a.viewers === b.viewers;
  for (const r of results) {
    const floor = results.find((f) => f.build === 'floor (ws)' && same(f, r));
    if (floor !== undefined && r !== floor && floor.cpu_us_per_frame > 0) r.over_floor = Math.round((r.cpu_us_per_frame / floor.cpu_us_per_frame) * 100) / 100;
  }
  const md = [
    '# Bridge cost at fleet shape (make bench-fleet)',
    '',
    "N fake agents (one process, the test suite's protocol-level fake) in N/2 groups send numbered frames every 10 ms to one bridge process with default flags; every frame must arrive at the peer, in order. CPU is the bridge's own (from /proc) from the first send until the last frame arrived, divided by the frames relayed. The load generator runs on the same 2 cores (its CPU % is shown): figures measured on a loaded machine. Floor rows (BENCH_FLOOR) are bench/relay-floor.ts in the bridge's place: transport and codec only; × floor is a row's µs over the ws floor's in the same run and shape.",
    '',
    '| build | dongles × frames/s | s | viewers | relayed / sent | out of order | dropped by the bridge | bridge µs/frame | × floor (ws) | bridge CPU % | RSS start MB | RSS connected MB | connect s | KB per idle dongle | peak RSS MB | at peak: heap total / used / new space, external MB | history MB | p50 ms | p99 ms | generator CPU % | load average |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...results.map(
      (r) =>
        `| ${r.build} | ${r.dongles.toLocaleString('en')} × ${r.rate} | ${r.seconds} | ${r.viewers} | ${r.relayed.toLocaleString('en')} / ${r.sent.toLocaleString('en')} | ${r.out_of_order} | ${r.bridge_dropped} | ${r.cpu_us_per_frame} | ${r.over_floor ?? ''} | ${r.bridge_cpu_percent} | ${r.rss_start_mb} | ${r.rss_connected_mb} | ${r.connect_s} | ${r.kb_per_idle_dongle} | ${r.peak_rss_mb} | ${r.at_peak.heap_total_mb} / ${r.at_peak.heap_used_mb} / ${r.at_peak.new_space_mb}, ${r.at_peak.external_mb} | ${r.history_mb} | ${r.p50_ms} | ${r.p99_ms} | ${r.generator_cpu_percent} | ${r.load_average} |`,
    ),
    '',
    '![cost against fleet size](bridge-fleet.svg)',
    '',
  ].join('\n');
  const file = writeResults('bridge-fleet', { runs: results, median_us_per_frame: median(results.filter((r) => r.build === 'this build').map((r) => r.cpu_us_per_frame)) }, md);
  writeFileSync(join(file, '..', 'bridge-fleet.svg'), chart(results));
  process.stdout.write(`\nwritten ${file} and bridge-fleet.svg\n`);
}

runBench(main);
