/**
 * Cluster mode over a real nats-server (JetStream) with real bridge and agent processes on loopback.
 * The nodes share one SQLite file (WAL) as the durable store until the PostgreSQL store lands; what is
 * tested here is NATS: ownership leases, the cross-node group relay, node loss.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startBridgeProcess, type StartedBridge } from '../helpers/bridge-process.js';
import { ensureNatsServer, NatsServer } from '../helpers/nats.js';
import { startAgentProcess, tempDir, writeCandumpLog, type StartedAgent } from '../helpers/processes.js';
import { getJson, metricValue } from '../helpers/sse-client.js';
import { until } from '../helpers/until.js';

let nats: NatsServer;
const procs: { proc: { stop(s?: NodeJS.Signals): Promise<unknown> } }[] = [];
before(async () => {
  ensureNatsServer();
  nats = await NatsServer.start();
});
after(async () => {
  for (const p of procs) await p.proc.stop('SIGKILL');
  await nats?.stop();
});
const track = <T extends { proc: { stop(s?: NodeJS.Signals): Promise<unknown> } }>(p: T): T => (procs.push(p), p);

const metrics = async (base: string): Promise<string> => (await getJson(base + '/metrics')).text;
const frames = async (a: StartedAgent, bus: string, dir: 'rx' | 'tx'): Promise<number> =>
  metricValue(await metrics(a.base), 'canrelay_can_frames_total', { bus, direction: dir }) ?? 0;
const uplink = async (a: StartedAgent, kind: string): Promise<number> => metricValue(await metrics(a.base), 'canrelay_uplink', { kind }) ?? NaN;

/** A cluster node: fast heartbeats (1 s, takeover after 2 s) so that node loss is seen quickly. */
async function node(id: string, db: string, extra: string[] = []): Promise<StartedBridge> {
  return track(await startBridgeProcess(['--cluster', nats.url, '--node-id', id, '--uplink-heartbeat-seconds', '1', ...extra], { db }));
}

test('group relay across nodes: A on node 1, B on node 2, 20,000 frames both ways, counts equal, order kept, zero gaps', async () => {
  const db = join(tempDir('canrelay-cluster-'), 'bridge.sqlite');
  // B replays before A connects: its frames wait in the backlog, so the bound is raised above the count.
  const generous = ['--backlog-max-age-ms', '60000', '--backlog-max-frames', '50000'];
  const n1 = await node('n1', db, generous);
  const ta = await n1.admin.register('cx-a');
  const tb = await n1.admin.register('cx-b');
  await n1.admin.group('gx', 'cx-a', 'cx-b', { can0: 'can1' });
  const n2 = await node('n2', db, generous);
  const dir = tempDir('canrelay-cluster-');
  writeCandumpLog(join(dir, 'a.log'), 20_000, { bus: 'can0', ids: [0x100, 0x200, 0x300] });
  writeCandumpLog(join(dir, 'b.log'), 20_000, { bus: 'can1', ids: [0x400, 0x500] });
  const agentArgs = ['--replay-speed', '0', '--relay-max-age-ms', '60000'];
  // B first (on node 2), so that nothing A sends finds B offline.
  const b = track(await startAgentProcess(['--replay', join(dir, 'b.log'), '--bridge', n2.base, '--token', tb, ...agentArgs], { id: 'cx-b' }));
  await b.proc.waitForLog((l) => l.msg === 'uplink connected');
  const a = track(await startAgentProcess(['--replay', join(dir, 'a.log'), '--bridge', n1.base, '--token', ta, ...agentArgs], { id: 'cx-a' }));
  await until(async () => (await frames(b, 'can1', 'tx')) >= 20_000 && (await frames(a, 'can0', 'tx')) >= 20_000, 120_000, 'both directions relayed across nodes');
  assert.equal(await frames(b, 'can1', 'tx'), 20_000, 'A→B: every frame of A, transmitted once at B (on node 2)');
  assert.equal(await frames(a, 'can0', 'tx'), 20_000, 'B→A: every frame of B, transmitted once at A (on node 1)');
  for (const x of [a, b]) {
    for (const kind of ['relay_seq_gaps', 'relay_seq_duplicates', 'relay_seq_reordered']) assert.equal(await uplink(x, kind), 0, `${kind} at ${x === a ? 'A' : 'B'}`);
  }
  const m1 = await metrics(n1.base);
  const m2 = await metrics(n2.base);
  // Each direction is queued on the node its frames arrive at, and carried over NATS to the other.
  assert.equal(metricValue(m1, 'canrelay_bridge_frames_relayed_total', { group: 'gx', direction: 'a_to_b', node: 'n1' }), 20_000);
  assert.equal(metricValue(m2, 'canrelay_bridge_frames_relayed_total', { group: 'gx', direction: 'b_to_a', node: 'n2' }), 20_000);
  assert.ok((metricValue(m1, 'canrelay_bridge_cluster_down_batches_total', { direction: 'out', node: 'n1' }) ?? 0) > 0, 'node 1 published DOWN batches');
  assert.ok((metricValue(m2, 'canrelay_bridge_cluster_down_batches_total', { direction: 'in', node: 'n2' }) ?? 0) > 0, 'node 2 delivered them');
  const h = (await getJson(n2.base + '/healthz')).body as { cluster: { node: string; nats: string } };
  assert.deepEqual(h.cluster, { node: 'n2', nats: 'reachable' });
});
