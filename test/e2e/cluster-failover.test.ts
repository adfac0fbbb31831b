/**
 * Agent failover across cluster nodes without a load balancer: the agent is given every node's URL
 * (`--bridge url1,url2`, or the flag repeated) and, when the node it is on dies (SIGKILL), tries the next
 * one with its jittered backoff. Real nats-server, PostgreSQL, bridge nodes and agents on loopback; the
 * data plane's exactness across the switch is checked at the receiving agent: every frame transmitted or
 * counted.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { startBridgeProcess, type StartedBridge } from '../helpers/bridge-process.js';
import { FakeAgent } from '../helpers/fake-agent.js';
import {
  agentFrames as frames,
  agentUplink as uplink,
  checkNodeLoss,
  clusterServers,
  framesAccountedAtB as accounted,
  freezeBeforeKill,
  metricsText as metrics,
} from '../helpers/cluster-servers.js';
import { startAgentProcess, tempDir, writeCandumpLog } from '../helpers/processes.js';
import { metricValue, SseClient } from '../helpers/sse-client.js';
import { until } from '../helpers/until.js';

const servers = clusterServers();
const { track } = servers;

const connected = async (n: StartedBridge, node: string): Promise<number> => metricValue(await metrics(n.base), 'canrelay_bridge_agents_connected', { node }) ?? 0;

/**
 * Every frame A sent is at B, or counted at B (gaps not made up by late ones, drops); duplicates are counted
 * too. And only what docs/cluster.md allows is lost: frames node 1 acknowledged and never delivered.
 */
test('two --bridge URLs, no balancer: SIGKILL of the node A is on, A reaches the other node, the relay resumes, every frame transmitted or counted', async (t) => {
  const db = await servers.pg.createDatabase();
  const flags = ['--uplink-heartbeat-seconds', '1', '--backlog-max-age-ms', '60000', '--backlog-max-frames', '50000'];
  const n1 = track(await startBridgeProcess(['--cluster', servers.nats.url, '--node-id', 'f1', ...flags], { db }));
  const ta = await n1.admin.register('fx-a');
  const tb = await n1.admin.register('fx-b');
  await n1.admin.group('gf', 'fx-a', 'fx-b', { can0: 'can1' });
  const n2 = track(await startBridgeProcess(['--cluster', servers.nats.url, '--node-id', 'f2', ...flags], { db }));
  await until(async () => (await n2.admin.get('/api/v1/groups/gf')).status === 200, 10_000, 'the group known on node 2');
  const dir = tempDir('canrelay-failover-');
  const N = 10_000;
  // 2,000 frames/s for 5 s: long enough to kill node 1 in the middle.
  writeCandumpLog(join(dir, 'a.log'), N, { bus: 'can0', ids: [0x100, 0x200], stepUs: 500 });
  writeCandumpLog(join(dir, 'b.log'), 10, { bus: 'can1', ids: [0x400] });
  const agentArgs = ['--relay-max-age-ms', '60000'];
  // B's console shows every frame it transmits (unsampled, all kept): which of A's frames reached its bus.
  const consoleFlags = ['--console-max-rate', '1000000', '--history-events', '200000', '--history-seconds', '600'];
  // B: the flag repeated, node 2 first. A: one comma-separated value, node 1 first.
  const b = track(
    await startAgentProcess(['--replay', join(dir, 'b.log'), '--bridge', n2.base, '--bridge', n1.base, '--token', tb, ...agentArgs, ...consoleFlags], { id: 'fx-b' }),
  );
  await b.proc.waitForLog((l) => l.msg === 'uplink connected');
  const bc = await SseClient.connect(`${b.url}?backlog=200000`);
  servers.onStop(() => bc.close());
  const a = track(
    await startAgentProcess(['--replay', join(dir, 'a.log'), '--replay-speed', '1', '--bridge', `${n1.base},${n2.base}`, '--token', ta, ...agentArgs], { id: 'fx-a' }),
  );
  const first = await a.proc.waitForLog((l) => l.msg === 'uplink connected');
  assert.equal(first.bridge, n1.base, 'A starts with the first URL');
  await until(async () => (await frames(b, 'can1', 'tx')) >= 1000, 60_000, 'relay running from node 1 to node 2');
  assert.equal(await connected(n1, 'f1'), 1, 'A is on node 1');
  const at = await freezeBeforeKill(n1, a, b);
  await n1.proc.stop('SIGKILL');
  const killedAt = Date.now();
  await until(async () => (await connected(n2, 'f2')) === 2, 60_000, 'A reconnected to node 2');
  // Reported, not asserted (timing on a shared machine): the target is within 5 s.
  t.diagnostic(`A back on node 2 about ${Date.now() - killedAt} ms after the SIGKILL (polled every 100 ms)`);
  const moved = a.proc.logs.filter((l) => l.msg === 'uplink connected').at(-1);
  assert.equal(moved?.bridge, n2.base, 'A connected to the second URL');
  assert.ok(
    a.proc.logs.some((l) => l.msg === 'uplink: trying the next bridge' && l.to === n2.base),
    'A says it moves to the next bridge',
  );
  await until(async () => (await accounted(b)).total >= N, 120_000, 'every frame of A transmitted at B or counted lost');
  const r = await accounted(b);
  t.diagnostic(`at B: ${JSON.stringify(r)}`);
  assert.equal(r.total, N, `every frame accounted for: ${JSON.stringify(r)}`);
  assert.ok(r.tx > 1000, 'the relay resumed after the node loss');
  t.diagnostic(await checkNodeLoss(N, at, a, b, bc));
  assert.equal(await uplink(b, 'connects'), 1, 'B, on node 2 throughout, never reconnected');
});

test('a node restarted under its own id after a SIGKILL takes its dongles back at once (its old leases are not judged as a live holder)', async () => {
  const db = await servers.pg.createDatabase();
  // Default heartbeat (10 s): the old leases stay fresh for the takeover time (20 s), longer than the restart.
  const first = track(await startBridgeProcess(['--cluster', servers.nats.url, '--node-id', 'same'], { db }));
  const token = await first.admin.register('fx-same');
  const a = await FakeAgent.connect(first.base, { dongle: 'fx-same', token, record: false });
  await until(async () => (await connected(first, 'same')) === 1, 10_000, 'the agent connected to the first run');
  await first.proc.stop('SIGKILL');
  a.kill();
  const again = track(await startBridgeProcess(['--cluster', servers.nats.url, '--node-id', 'same'], { db }));
  // Welcomed, not refused as a duplicate of its own previous run.
  const b = await FakeAgent.connect(again.base, { dongle: 'fx-same', token, record: false }).catch((err: Error) => err);
  assert.ok(!(b instanceof Error), `the restarted node accepted the dongle: ${b instanceof Error ? b.message : ''}`);
  assert.equal(await connected(again, 'same'), 1);
  await (b as FakeAgent).close();
});
