/**
 * make bench-cluster: what cluster mode costs over the embedded bridge. A protocol-level load generator
 * (test/helpers/fake-agent.ts: N fake agents in this one process, no process per dongle) in N/2 groups
 * sends numbered frames every 10 ms; every frame must arrive at the other side of its group, in order.
 * Three modes, interleaved within each repetition so they share the machine's load:
 *   - embedded: one node, SQLite file (the default bridge);
 *   - cluster-1: one node in cluster mode (real PostgreSQL + nats-server, started here from test/helpers);
 *   - cluster-2: two nodes, side A of every group on node 1 and side B on node 2 (every frame crosses NATS).
 * Per mode: relayed frames/s, delivered %, bridge CPU per relayed frame (summed over the nodes; nats-server
 * and PostgreSQL shown separately), p50/p99 added latency (the fake agent's send time to the peer's receive
 * time, one clock), and the ratio to the embedded mode of the same repetition.
 *
 * Bounded: a fixed number of frames per mode, each wait has a deadline; every process started here
 * (bridges, postgres, nats-server) is stopped at the end, also on failure (and SIGKILLed by the helpers if
 * this process exits early).
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import os from 'node:os';
import { startBridgeProcess, type StartedBridge } from '../test/helpers/bridge-process.js';
import { readUnit, REPO } from '../test/helpers/deploy.js';
import { FakeAgent } from '../test/helpers/fake-agent.js';
import { pool } from '../test/helpers/fake-fleet.js';
import { ensureNatsServer, NatsServer } from '../test/helpers/nats.js';
import { childrenOf, PostgresServer } from '../test/helpers/postgres.js';
import { tempDir } from '../test/helpers/processes.js';
import { median, sampleProc, writeResults, runBench } from './lib.js';
import { numberedFrame, RelayTally, SEND_TICK_MS, sendPaced } from './relay-tally.js';

type Mode = 'embedded' | 'cluster-1' | 'cluster-2';
const MODES: Mode[] = (process.env.BENCH_MODES ?? 'embedded,cluster-1,cluster-2').split(',') as Mode[];
/** dongles x frames/s per dongle x seconds. The issue's 200 x 500/s (100,000 frames/s in) is more than this shared 2-core machine generates and relays side by side (the embedded bridge fell 5 % behind): 200 x 200/s by default. */
const [DONGLES, RATE, SECONDS] = (process.env.BENCH_SHAPE ?? '200x200x15').split('x').map(Number) as [number, number, number];
const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 2));
/** Frames still missing this long after the last one arrived are reported lost. */
const SETTLE_MS = 10_000;
/** Extra node flags for the bridges (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"; the unit's NODE_OPTIONS apply too). */
const EXTRA_NODE_ARGS = (process.env.BENCH_BRIDGE_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');

interface Result {
  mode: Mode;
  run: number;
  sent: number;
  relayed: number;
  delivered_percent: number;
  out_of_order: number;
  dropped_by_bridge: number;
  /** Summed over the nodes' /metrics (cluster modes). */
  cluster: { nats_disconnects: number; undeliverable_batches: number; failed_ops: number; down_batches_out: number };
  frames_per_s: number;
  bridge_us_per_frame: number;
  /** Per node, µs of that node's CPU per frame relayed cluster-wide. */
  node_us_per_frame: number[];
  nats_us_per_frame: number;
  postgres_us_per_frame: number;
  bridge_cpu_percent: number;
  p50_ms: number;
  p99_ms: number;
  generator_cpu_percent: number;
  load_average: string;
}

/** NODE_OPTIONS of the bridge's systemd unit: the bridges run as deployed. */
const UNIT_NODE_OPTIONS =
  (readUnit(join(REPO, 'systemd/canrelay-bridge.service')).Service?.Environment ?? [])
    .map((e) => /^NODE_OPTIONS=(.*)$/.exec(e)?.[1])
    .filter((v): v is string => v !== undefined)
    .pop() ?? '';

const cpuOf = (pids: number[]): number =>
  pids.reduce((s, p) => {
    try {
      return s + sampleProc(p).cpuSeconds;
    } catch {
      return s; // a backend that ended
    }
  }, 0);

/**
 * CPU seconds of a server and every process under it: its own, what its reaped children used (cutime,
 * cstime) and its live children's. A PostgreSQL backend that ends moves its CPU from the last term to the
 * second, so the sum never goes back.
 */
function treeCpu(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14-17 (utime stime cutime cstime) are f[11..14] after the command; in clock ticks (USER_HZ 100).
    const own = (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100;
    return own + childrenOf(pid).reduce((s, c) => s + cpuOf([c]), 0);
  } catch {
    return 0;
  }
}

async function until(pred: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`bench: timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function once(mode: Mode, run: number, servers: { nats: NatsServer; pg: PostgresServer }): Promise<Result> {
  const env = { NODE_OPTIONS: UNIT_NODE_OPTIONS };
  const nodeArgs = EXTRA_NODE_ARGS;
  // Default log level (info: startBridgeProcess reads the "listening" line): a few lines per connection, none per frame.
  const common = ['--backlog-max-frames', '200000'];
  const nodes: StartedBridge[] = [];
  const agents: FakeAgent[] = [];
  let dir: string | undefined;
  try {
    if (mode === 'embedded') {
      dir = tempDir('canrelay-cluster-bench-');
      nodes.push(await startBridgeProcess(common, { db: join(dir, 'bridge.sqlite'), env, nodeArgs }));
    } else {
      const db = await servers.pg.createDatabase('canrelay_bench');
      const count = mode === 'cluster-2' ? 2 : 1;
      for (let i = 1; i <= count; i++) nodes.push(await startBridgeProcess([...common, '--cluster', servers.nats.url, '--node-id', `bench${i}`], { db, env, nodeArgs }));
    }
    const admin = nodes[0]!.admin;
    const ids = Array.from({ length: DONGLES }, (_, i) => `cb-${String(i).padStart(4, '0')}`);
    const tokens = new Map<string, string>();
    await pool(ids, 8, async (id) => void tokens.set(id, await admin.register(id)));
    const groups = Math.floor(DONGLES / 2);
    await pool(
      Array.from({ length: groups }, (_, i) => i),
      8,
      async (i) => void (await admin.group(`cg-${i}`, ids[2 * i]!, ids[2 * i + 1]!)),
    );
    // Every node must know every dongle and group before agents land on it.
    for (const n of nodes.slice(1)) {
      await until(async () => (await n.admin.get(`/api/v1/dongles/${ids.at(-1)}`)).status === 200, 60_000, 'the dongles known on node 2');
      await until(async () => (await n.admin.get(`/api/v1/groups/cg-${groups - 1}`)).status === 200, 60_000, 'the groups known on node 2');
    }

    const tally = new RelayTally();
    // Side A (even) on node 1, side B (odd) on the last node: in cluster-2 every frame crosses nodes.
    await pool(ids, 32, async (id) => {
      const i = Number(id.slice(3));
      const n = nodes[i % 2 === 0 ? 0 : nodes.length - 1]!;
      agents.push(await FakeAgent.connect(n.base, { dongle: id, token: tokens.get(id)!, record: false, onDown: tally.onDown(id) }));
    });
    // Warm-up: frame 0 from every agent, until every peer has it (the cross-node sides are attached then).
    for (const a of agents) a.sendFrames([numberedFrame(0)]);
    await until(() => tally.relayed >= agents.length, 60_000, `the warm-up frame relayed to every side (${tally.relayed}/${agents.length})`);
    tally.reset();

    const nodePids = nodes.map((n) => n.proc.child.pid!);
    const natsPid = mode === 'embedded' ? undefined : servers.nats.pid;
    const pgPid = mode === 'embedded' ? undefined : servers.pg.pids()[0];
    const sample = (): { nodes: number[]; nats: number; pg: number } => ({
      nodes: nodePids.map((p) => cpuOf([p])),
      nats: cpuOf(natsPid === undefined ? [] : [natsPid]),
      pg: treeCpu(pgPid),
    });
    const cpu0 = sample();
    const gen0 = process.cpuUsage();
    const t0 = Date.now();
    // Frame 0 went in the warm-up.
    const sentTotal = await sendPaced(agents, RATE, SECONDS, 1);
    // Until everything arrived, or nothing moved for SETTLE_MS; CPU is read when the last frame arrived.
    let last = tally.relayed;
    let lastChange = Date.now();
    let cpu1 = sample();
    let tEnd = Date.now();
    while (tally.relayed < sentTotal && Date.now() - lastChange < SETTLE_MS) {
      await new Promise((r) => setTimeout(r, 50));
      if (tally.relayed !== last) {
        [last, lastChange] = [tally.relayed, Date.now()];
        // At most twice a second: a sample scans /proc (for PostgreSQL's backends), the generator's own CPU.
        if (Date.now() - tEnd >= 500) [cpu1, tEnd] = [sample(), Date.now()];
      }
    }
    if (tally.relayed >= sentTotal) [cpu1, tEnd] = [sample(), Date.now()];
    const gen = process.cpuUsage(gen0);
    const secs = (tEnd - t0) / 1000;
    // Group counters are cluster-wide (shared through PostgreSQL, every node shows them): the largest value
    // of each series across nodes, not their sum. Cluster counters are per node: summed.
    const droppedBySeries = new Map<string, number>();
    const cluster = { nats_disconnects: 0, undeliverable_batches: 0, failed_ops: 0, down_batches_out: 0 };
    for (const n of nodes) {
      const text = await fetch(`${n.base}/metrics`, { headers: { Authorization: `Bearer ${n.admin.token}` } }).then(
        (r) => r.text(),
        () => '',
      );
      for (const l of text.split('\n')) {
        const v = Number(l.slice(l.lastIndexOf(' ') + 1));
        if (l.startsWith('canrelay_bridge_frames_dropped_total{')) {
          const series = l.slice(0, l.lastIndexOf(' ')).replace(/,?node="[^"]*"/, '');
          droppedBySeries.set(series, Math.max(droppedBySeries.get(series) ?? 0, v));
        } else if (l.startsWith('canrelay_bridge_cluster_nats_disconnects_total')) cluster.nats_disconnects += v;
        else if (l.startsWith('canrelay_bridge_cluster_failed_ops_total')) cluster.failed_ops += v;
        else if (l.startsWith('canrelay_bridge_cluster_down_batches_total') && l.includes('direction="undeliverable"')) cluster.undeliverable_batches += v;
        else if (l.startsWith('canrelay_bridge_cluster_down_batches_total') && l.includes('direction="out"')) cluster.down_batches_out += v;
      }
    }
    const dropped = [...droppedBySeries.values()].reduce((a, b) => a + b, 0);
    const us = (s: number): number => (tally.relayed > 0 ? Math.round((s / tally.relayed) * 1e7) / 10 : NaN);
    const nodeCpu = cpu1.nodes.map((c, i) => c - cpu0.nodes[i]!);
    const bridgeCpu = nodeCpu.reduce((a, b) => a + b, 0);
    return {
      mode,
      run,
      sent: sentTotal,
      relayed: tally.relayed,
      delivered_percent: Math.round((tally.relayed / sentTotal) * 10000) / 100,
      out_of_order: tally.outOfOrder,
      dropped_by_bridge: dropped,
      cluster,
      frames_per_s: Math.round(tally.relayed / secs),
      bridge_us_per_frame: us(bridgeCpu),
      node_us_per_frame: nodeCpu.map(us),
      nats_us_per_frame: us(cpu1.nats - cpu0.nats),
      postgres_us_per_frame: us(cpu1.pg - cpu0.pg),
      bridge_cpu_percent: Math.round((bridgeCpu / secs) * 100),
      p50_ms: tally.latencyMs(0.5),
      p99_ms: tally.latencyMs(0.99),
      generator_cpu_percent: Math.round(((gen.user + gen.system) / 1e6 / secs) * 100),
      load_average: os
        .loadavg()
        .map((l) => l.toFixed(1))
        .join(' '),
    };
  } finally {
    await pool(agents, 64, (a) => a.close());
    // SIGTERM: a clean exit (it also writes a --cpu-prof profile).
    for (const n of nodes) await n.proc.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true }); // a run leaves no bridge database behind
  }
}

async function main(): Promise<void> {
  const clustered = MODES.some((m) => m !== 'embedded');
  if (clustered) ensureNatsServer();
  const nats = clustered ? await NatsServer.start() : undefined;
  let pg: PostgresServer | undefined;
  const results: Result[] = [];
  try {
    pg = clustered ? await PostgresServer.start() : undefined;
    process.stdout.write(
      `shape ${DONGLES} dongles in ${Math.floor(DONGLES / 2)} groups x ${RATE} frames/s x ${SECONDS} s; modes ${MODES.join(', ')}; ${RUNS} runs; bridge NODE_OPTIONS "${UNIT_NODE_OPTIONS}", node flags "${EXTRA_NODE_ARGS.join(' ')}"\n`,
    );
    for (let run = 1; run <= RUNS; run++) {
      for (const mode of MODES) {
        const r = await once(mode, run, { nats: nats!, pg: pg! });
        process.stdout.write(`${JSON.stringify(r)}\n`);
        results.push(r);
      }
    }
  } finally {
    await nats?.stop();
    if (nats) rmSync(nats.storeDir, { recursive: true, force: true });
    await pg?.stop(); // removes its data folder
  }
  const embedded = (run: number): Result | undefined => results.find((r) => r.mode === 'embedded' && r.run === run);
  const ratio = (r: Result): number => {
    const e = embedded(r.run);
    return e ? Math.round((r.bridge_us_per_frame / e.bridge_us_per_frame) * 100) / 100 : NaN;
  };
  const medianRatio = (m: Mode): number => median(results.filter((r) => r.mode === m).map(ratio));
  const md = [
    '# Cluster mode against the embedded bridge (make bench-cluster)',
    '',
    `${DONGLES} protocol-level fake agents (one process) in ${Math.floor(DONGLES / 2)} groups, each sending ${RATE} frames/s for ${SECONDS} s (a batch every ${SEND_TICK_MS} ms), both directions of every group. embedded: one bridge on SQLite; cluster-1: one node on PostgreSQL + NATS; cluster-2: two nodes, side A of every group on node 1 and side B on node 2 (every frame crosses NATS). Modes interleaved within each run. Bridge CPU is the nodes' own (from /proc, summed), from the first send to the last frame's arrival, per frame relayed; nats-server and PostgreSQL (postmaster + backends) separately. Latency: fake agent send time to the peer's receive time. The load generator shares the 2 cores (its CPU % is shown) and the machine was shared with other work: read ratios within a run, not absolutes.`,
    '',
    '| run | mode | relayed / sent | delivered % | out of order | dropped by the bridge | relayed frames/s | bridge µs/frame (per node) | × embedded | nats-server µs/frame | PostgreSQL µs/frame | bridge CPU % | p50 ms | p99 ms | NATS disconnects, undeliverable / published DOWN batches | generator CPU % | load average |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...results.map(
      (r) =>
        `| ${r.run} | ${r.mode} | ${r.relayed.toLocaleString('en')} / ${r.sent.toLocaleString('en')} | ${r.delivered_percent} | ${r.out_of_order} | ${r.dropped_by_bridge} | ${r.frames_per_s.toLocaleString('en')} | ${r.bridge_us_per_frame}${r.node_us_per_frame.length > 1 ? ` (${r.node_us_per_frame.join(' + ')})` : ''} | ${ratio(r)} | ${r.mode === 'embedded' ? '–' : r.nats_us_per_frame} | ${r.mode === 'embedded' ? '–' : r.postgres_us_per_frame} | ${r.bridge_cpu_percent} | ${r.p50_ms} | ${r.p99_ms} | ${r.mode === 'embedded' ? '–' : `${r.cluster.nats_disconnects}, ${r.cluster.undeliverable_batches} / ${r.cluster.down_batches_out}`} | ${r.generator_cpu_percent} | ${r.load_average} |`,
    ),
    '',
    `Median ratio of bridge CPU per relayed frame to the embedded mode of the same run: ${MODES.filter((m) => m !== 'embedded')
      .map((m) => `${m} **${medianRatio(m)}×**`)
      .join(', ')} (goal ≤ 1.5×).`,
    '',
  ].join('\n');
  const file = writeResults('bridge-cluster', { shape: { dongles: DONGLES, rate: RATE, seconds: SECONDS }, runs: results }, md);
  process.stdout.write(`\n${md}\nwritten ${file}\n`);
}

runBench(main);
