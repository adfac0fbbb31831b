/**
 * make bench-fleet-stream: the fleet stream (GET /api/v1/streams/fleet) at fleet size. One real bridge
 * process; N protocol-level fake agents (default 2,000, BENCH_FLEET_DONGLES) connected; one fleet client.
 * Measures how long the snapshot takes to arrive and its size, then has every agent send a presence "seen"
 * and a bus_state refresh (same state) every BENCH_FLEET_PERIOD_S (default 5; staggered: a share of the
 * agents each second) for BENCH_FLEET_SECONDS (default 30) — 2N/period updates/s —
 * and records the fleet stream's events per second (it must stay near the merge quota, 100/s, plus
 * changes), and how soon a real change (a bus turning error-passive) shows up meanwhile.
 * Not a test: figures depend on the machine (the load generator shares its cores with the bridge).
 */
import { busStateData, presenceData } from '../core/console/normalize.js';
import { ADMIN_TOKEN, startBridgeProcess } from '../test/helpers/bridge-process.js';
import { FakeAgent } from '../test/helpers/fake-agent.js';
import { SseClient } from '../test/helpers/sse-client.js';
import { median, sampleProc, writeResults } from './lib.js';

const N = Number(process.env.BENCH_FLEET_DONGLES ?? 2000);
const SECONDS = Number(process.env.BENCH_FLEET_SECONDS ?? 30);
const PERIOD = Number(process.env.BENCH_FLEET_PERIOD_S ?? 5);
const CHANGES = 5;

async function pool<T>(items: T[], width: number, f: (t: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (i < items.length) await f(items[i++]!);
  }));
}

const bus = (state: 'error-active' | 'error-passive') =>
  busStateData({ bus: 'can0', link: 'up', state, tec: state === 'error-passive' ? 140 : 0, rec: 0, bitrate: 500_000, bitrate_source: 'kernel', sample_point: 0.875, data_bitrate: null, data_sample_point: null, restart_ms: 0, counters: {}, load: 0.2, load_peak_1m: 0.3, load_history: Array(60).fill(0.2) as number[], frame_rate: 100, error_frames: {} });

async function main(): Promise<void> {
  const b = await startBridgeProcess();
  const pid = b.proc.child.pid!;
  const ids = Array.from({ length: N }, (_, i) => `fl-${String(i).padStart(4, '0')}`);
  const tokens = new Map<string, string>();
  const t0 = Date.now();
  await pool(ids, 8, async (id) => void tokens.set(id, await b.admin.register(id)));
  const agents: FakeAgent[] = [];
  await pool(ids, 32, async (id) => void agents.push(await FakeAgent.connect(b.base, { dongle: id, token: tokens.get(id)!, record: false })));
  console.log(`${N} dongles registered and connected in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const seqs = new Map<FakeAgent, number>(agents.map((a) => [a, a.welcome?.event_ack ?? 0]));
  const send = (a: FakeAgent, event: 'presence' | 'bus_state', data: object): void => {
    const seq = seqs.get(a)! + 1;
    seqs.set(a, seq);
    a.sendEvent(seq, event, data as Record<string, unknown>);
  };
  // Every agent reports its bus once, so the snapshot holds a bus_state per dongle too.
  for (const a of agents) send(a, 'bus_state', bus('error-active'));
  await new Promise((r) => setTimeout(r, 3000));

  const rssBefore = sampleProc(pid).rssBytes;
  const tConnect = performance.now();
  const c = await SseClient.connect(b.base + '/api/v1/streams/fleet', { Authorization: `Bearer ${ADMIN_TOKEN}` });
  await c.waitFor((evs) => evs.some((e) => e.event === 'log' && e.json.code === 'fleet_snapshot'), 120_000, 'the snapshot');
  const snapshotMs = performance.now() - tConnect;
  const snapEvents = c.events.length;
  const snapBytes = c.raw.length;
  const snapPresence = c.ofType('presence').length;
  console.log(`snapshot: ${snapEvents} events (${snapPresence} presence), ${(snapBytes / 1024).toFixed(0)} KiB in ${snapshotMs.toFixed(0)} ms`);

  // Load: every agent sends "seen" + a same-state bus_state once a second; a few real changes meanwhile.
  const perSecond: number[] = [];
  const changeLatency: number[] = [];
  let sent = 0;
  let last = c.events.length;
  for (let s = 0; s < SECONDS; s++) {
    const start = performance.now();
    for (let i = s % PERIOD; i < agents.length; i += PERIOD) {
      const a = agents[i]!;
      send(a, 'presence', presenceData('seen', { buses: { can0: 'up' } }));
      send(a, 'bus_state', bus('error-active'));
      sent += 2;
    }
    if (s > 0 && s <= CHANGES) {
      const a = agents[s * 7]!;
      const t = performance.now();
      send(a, 'bus_state', bus('error-passive'));
      await c.waitFor((evs) => evs.some((e) => e.event === 'bus_state' && e.json.dongle === a.opts.dongle && e.json.state === 'error-passive'), 30_000, 'the change');
      changeLatency.push(performance.now() - t);
    }
    await new Promise((r) => setTimeout(r, Math.max(0, 1000 - (performance.now() - start))));
    perSecond.push(c.events.length - last);
    last = c.events.length;
  }
  // Drain: what stays pending is published at the quota.
  await new Promise((r) => setTimeout(r, 3000));
  const live = c.events.slice(snapEvents);
  const seen = live.filter((e) => e.event === 'presence' && e.json.state === 'seen').length;
  const rssAfter = sampleProc(pid).rssBytes;
  const figures = {
    dongles: N,
    seconds: SECONDS,
    updates_sent: sent,
    updates_per_second_in: Math.round((2 * N) / PERIOD),
    snapshot_ms: Math.round(snapshotMs),
    snapshot_events: snapEvents,
    snapshot_kib: Math.round(snapBytes / 1024),
    fleet_events_per_second_max: Math.max(...perSecond),
    fleet_events_per_second_median: median(perSecond),
    fleet_events_total_live: live.length,
    seen_published: seen,
    change_latency_ms_median: Math.round(median(changeLatency)),
    change_latency_ms_max: Math.round(Math.max(...changeLatency)),
    bridge_rss_mb_before: Math.round(rssBefore / 2 ** 20),
    bridge_rss_mb_after: Math.round(rssAfter / 2 ** 20),
  };
  console.log(figures);
  const md = `# Fleet stream at ${N} dongles (make bench-fleet-stream)

Measured ${new Date().toISOString()} on this machine (loaded; the load generator shares the cores).

| figure | value |
|---|---|
| dongles connected (protocol-level fake agents) | ${N} |
| snapshot: time to \`fleet_snapshot\` | ${figures.snapshot_ms} ms |
| snapshot: events / size | ${snapEvents} / ${figures.snapshot_kib} KiB |
| updates sent (presence "seen" + same-state bus_state, every dongle every ${PERIOD} s) | ${figures.updates_per_second_in}/s for ${SECONDS} s (${sent}) |
| fleet stream events/s while they come: median / max | ${figures.fleet_events_per_second_median} / ${figures.fleet_events_per_second_max} |
| "seen" updates published (merged) | ${seen} of ${sent / 2} |
| a bus turning error-passive meanwhile: on the fleet stream after (median / max of ${changeLatency.length}) | ${figures.change_latency_ms_median} / ${figures.change_latency_ms_max} ms |
| bridge RSS before the fleet client / after the load | ${figures.bridge_rss_mb_before} / ${figures.bridge_rss_mb_after} MiB |

Per second: ${perSecond.join(', ')}
`;
  console.log(writeResults('fleet-stream', figures, md));
  c.close();
  await pool(agents, 64, (a) => a.close());
  await b.proc.stop();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
