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
import { ADMIN_TOKEN, startBridgeProcess } from '../test/helpers/bridge-process.js';
import { FakeFleet } from '../test/helpers/fake-fleet.js';
import { SseClient } from '../test/helpers/sse-client.js';
import { median, sampleProc, writeResults, runBench } from './lib.js';

const N = Number(process.env.BENCH_FLEET_DONGLES ?? 2000);
const SECONDS = Number(process.env.BENCH_FLEET_SECONDS ?? 30);
const PERIOD = Number(process.env.BENCH_FLEET_PERIOD_S ?? 5);
const CHANGES = 5;

async function main(): Promise<void> {
  const b = await startBridgeProcess();
  const pid = b.proc.child.pid!;
  const t0 = Date.now();
  const fleet = await FakeFleet.start(b, N);
  const agents = fleet.agents;
  console.log(`${N} dongles registered and connected in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  // Every agent reports its bus once, so the snapshot holds a bus_state per dongle too.
  for (const a of agents) fleet.bus(a, 'error-active');
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
      fleet.seen(a);
      fleet.bus(a, 'error-active');
      sent += 2;
    }
    if (s > 0 && s <= CHANGES) {
      const a = agents[s * 7]!;
      const t = performance.now();
      fleet.bus(a, 'error-passive');
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
  await fleet.close();
  await b.proc.stop();
}

runBench(main);
