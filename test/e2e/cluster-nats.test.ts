/**
 * Cluster mode over a real nats-server (JetStream) and a real PostgreSQL, with real bridge and agent
 * processes on loopback: the cross-node group relay, one owner per dongle, losing a node (SIGKILL, agents
 * reach another node through a TCP balancer), and losing NATS (SIGKILL and restart).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { ADMIN_TOKEN, startBridgeProcess, type StartedBridge } from '../helpers/bridge-process.js';
import {
  agentFrames as frames,
  agentUplink as uplink,
  checkNodeLoss,
  clusterServers,
  framesAccountedAtB as accounted,
  freezeBeforeKill,
  metricsText as metrics,
} from '../helpers/cluster-servers.js';
import { connect } from 'nats';
import { OWNER_BUCKET } from '../../cloud-bridge/cluster/ownership.js';
import type { CanFrame } from '../../core/can/frame.js';
import { assertHeadLikeGet } from '../helpers/head-request.js';
import { FakeAgent, frameNumber, numberedFrame } from '../helpers/fake-agent.js';
import { TcpBalancer } from '../helpers/tcp-balancer.js';
import { startAgentProcess, tempDir, writeCandumpLog, type StartedAgent } from '../helpers/processes.js';
import { getJson, metricValue, SseClient } from '../helpers/sse-client.js';
import { until, untilValue } from '../helpers/until.js';

const servers = clusterServers();
const { track } = servers;

/** A cluster node: fast heartbeats (1 s, takeover after 2 s) so that node loss is seen quickly. */
async function node(id: string, db: string, extra: string[] = []): Promise<StartedBridge> {
  return track(await startBridgeProcess(['--cluster', servers.nats.url, '--node-id', id, '--uplink-heartbeat-seconds', '1', ...extra], { db }));
}

test('group relay across nodes: A on node 1, B on node 2, 20,000 frames both ways, counts equal, order kept, zero gaps', async () => {
  const db = await servers.pg.createDatabase();
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

const takeovers = async (b: StartedBridge): Promise<number> => {
  const m = await metrics(b.base);
  return metricValue(m, 'canrelay_bridge_rejected_messages_total', { reason: 'duplicate_agent', node: metricNode(m) }) ?? 0;
};
const metricNode = (m: string): string => /node="([^"]+)"/.exec(m)?.[1] ?? '';
const connectedLines = (a: StartedAgent): number => a.proc.logs.filter((l) => l.msg === 'uplink connected').length;

test('the same dongle token on two nodes at once: one wins, the other is refused, no flapping', async () => {
  const db = await servers.pg.createDatabase();
  const n1 = await node('o1', db);
  const n2 = await node('o2', db);
  const token = await n1.admin.register('cx-dup');
  await until(async () => (await n2.admin.get('/api/v1/dongles/cx-dup')).status === 200, 10_000, 'the dongle known on node 2');
  // Both start together, one through each node.
  const [x, y] = await Promise.all([
    startAgentProcess(['--sim', '--sim-rate', '10', '--bridge', n1.base, '--token', token], { id: 'cx-dup' }),
    startAgentProcess(['--sim', '--sim-rate', '10', '--bridge', n2.base, '--token', token], { id: 'cx-dup' }),
  ]);
  track(x);
  track(y);
  await until(async () => (await takeovers(n1)) + (await takeovers(n2)) >= 3, 60_000, 'the second agent refused three times');
  const wins = [connectedLines(x), connectedLines(y)];
  assert.equal(wins.filter((n) => n > 0).length, 1, `exactly one agent connected (uplink connected lines: ${wins.join(', ')})`);
  assert.equal(Math.max(...wins), 1, 'the winner connected once and kept its link (no flapping)');
  const loser = wins[0] === 0 ? x : y;
  assert.ok(
    loser.proc.logs.some((l) => /DUPLICATE AGENT/.test(l.msg)),
    'the loser is told why',
  );
  const connected = async (b: StartedBridge): Promise<number> => metricValue(await metrics(b.base), 'canrelay_bridge_agents_connected', { node: b === n1 ? 'o1' : 'o2' }) ?? 0;
  assert.equal((await connected(n1)) + (await connected(n2)), 1, 'one live link cluster-wide');
});

test('a silent link of B taken over by a new connection to the same node: the node A is on resends what was in flight to the old link, nothing lost, no stall', async () => {
  const db = await servers.pg.createDatabase();
  const n1 = await node('r1', db, ['--backlog-max-age-ms', '60000', '--backlog-max-frames', '50000']);
  const ta = await n1.admin.register('rx-a');
  const tb = await n1.admin.register('rx-b');
  await n1.admin.group('gr', 'rx-a', 'rx-b', { can0: 'can0' });
  const n2 = await node('r2', db, ['--backlog-max-age-ms', '60000', '--backlog-max-frames', '50000']);
  await until(async () => (await n2.admin.get('/api/v1/groups/gr')).status === 200, 10_000, 'the group known on node 2');
  // B on node 2 takes DOWN batches but never acknowledges them and answers no ping: a link gone silent.
  const b1 = await FakeAgent.connect(n2.base, { dongle: 'rx-b', token: tb, autoAck: false, autoPong: false });
  const silentSince = Date.now();
  const a = await FakeAgent.connect(n1.base, { dongle: 'rx-a', token: ta });
  const N = 20_000; // more than node 1's window (16,384 frames in flight): the rest waits in its backlog
  for (let i = 0; i < N; i += 100) a.sendFrames(Array.from({ length: 100 }, (_, k) => numberedFrame('can0', 0x123, i + k)));
  await b1.waitFor(() => b1.applied.length >= 16_000, 30_000, 'node 1 window in flight to B');
  // The same agent again, on the same node: refused while the old link is within its heartbeats, then it
  // takes over (2 intervals of 1 s), before the old link would be cut for silence (2.5): no lease changes.
  let b2: FakeAgent | undefined;
  while (b2 === undefined) {
    assert.ok(Date.now() - silentSince < 20_000, 'the takeover happened');
    b2 = await b1.reconnect({ autoAck: true, autoPong: true }).catch(() => undefined);
    if (b2 === undefined) await new Promise((r) => setTimeout(r, 100));
  }
  // Taken over, not cut for silence first (a cut releases the lease, which restarted the sender before).
  assert.equal(metricValue(await metrics(n2.base), 'canrelay_bridge_agent_takeovers_total', { node: 'r2' }), 1, "B's new link took over the silent one");
  await b2.waitFor(() => b2.applied.length >= N, 60_000, 'every frame of A at B after the takeover');
  assert.deepEqual(
    b2.applied.map((f) => frameNumber(f.frame)),
    Array.from({ length: N }, (_, i) => i),
    'B got every frame, in order: the in-flight batches were sent again to its new link',
  );
  await a.close();
  await b2.close();
  b1.kill();
  // Each node holds PostgreSQL connections: stopped now, not at the end of the file (the server's max_connections).
  await Promise.all([n1.proc.stop(), n2.proc.stop()]);
});

test('a silent link of B taken over on the same node while A keeps sending: every frame reaches B, on the old link or the new one', async () => {
  // Twice: the race (batches of the old stream still on their way at the takeover) does not happen every time.
  for (let round = 0; round < 2; round++) {
    const db = await servers.pg.createDatabase();
    const flags = ['--backlog-max-age-ms', '60000', '--backlog-max-frames', '50000'];
    const n1 = await node(`q1-${round}`, db, flags);
    const ta = await n1.admin.register('qa');
    const tb = await n1.admin.register('qb');
    await n1.admin.group('gq', 'qa', 'qb', { can0: 'can0' });
    const n2 = await node(`q2-${round}`, db, flags);
    await until(async () => (await n2.admin.get('/api/v1/groups/gq')).status === 200, 10_000, 'the group known on node 2');
    const b1 = await FakeAgent.connect(n2.base, { dongle: 'qb', token: tb, autoAck: false, autoPong: false });
    // B's network is gone: what node 2 writes to this link from now on never reaches the agent.
    (b1.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const silentSince = Date.now();
    const a = await FakeAgent.connect(n1.base, { dongle: 'qa', token: ta });
    let n = 0;
    let sending = true;
    let burst = false;
    const pump = (async () => {
      while (sending) {
        a.sendFrames([numberedFrame('can0', 0x123, n++)]);
        await new Promise((r) => (burst ? setImmediate(r) : setTimeout(r, 10)));
      }
    })();
    // Around the takeover (two silent heartbeats), A sends as fast as it can.
    await new Promise((r) => setTimeout(r, Math.max(0, silentSince + 1900 - Date.now())));
    burst = true;
    let b2: FakeAgent | undefined;
    while (b2 === undefined) {
      assert.ok(Date.now() - silentSince < 20_000, 'the takeover happened');
      b2 = await b1.reconnect({ autoAck: true, autoPong: true }).catch(() => undefined);
      if (b2 === undefined) await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 300));
    burst = false;
    await new Promise((r) => setTimeout(r, 500));
    sending = false;
    await pump;
    const last = n - 1;
    await b2.waitFor(() => b2.applied.some((f) => frameNumber(f.frame) === last), 20_000, 'the last frame at B');
    const got = new Set([...b1.applied, ...b2.applied].map((f) => frameNumber(f.frame)));
    const missing = Array.from({ length: n }, (_, i) => i).filter((i) => !got.has(i));
    assert.deepEqual(missing.slice(0, 10), [], `round ${round}: ${missing.length} of ${n} frames of A never reached B`);
    await a.close();
    await b2.close();
    b1.kill();
    await Promise.all([n1.proc.stop(), n2.proc.stop()]); // PostgreSQL connections back before the next round
  }
});

/** A's frames 0 … n-1, ten to a batch: what it sent, to send again after a reconnect. */
function sendNumbered(a: FakeAgent, n: number): { batch: number; frames: { frame: CanFrame; seq: number }[] }[] {
  const sent: { batch: number; frames: { frame: CanFrame; seq: number }[] }[] = [];
  for (let i = 0; i < n; i += 10) {
    const frames = Array.from({ length: 10 }, (_, k) => numberedFrame('can0', 0x321, i + k));
    const seq0 = a.state.seqs.get('can0') ?? 0;
    sent.push({ batch: a.sendFrames(frames), frames: frames.map((frame, k) => ({ frame, seq: seq0 + k })) });
  }
  return sent;
}

/** A (reconnected) sends every batch again, as an agent whose acks were lost does, then ten new frames: B must have each frame once. */
async function resendThenCheckOnce(a: FakeAgent, b: FakeAgent, sent: ReturnType<typeof sendNumbered>): Promise<void> {
  const n = sent.length * 10;
  for (const s of sent) a.resendBatch(s.batch, s.frames);
  a.sendFrames(Array.from({ length: 10 }, (_, k) => numberedFrame('can0', 0x321, n + k)));
  await b.waitFor(() => b.applied.some((f) => frameNumber(f.frame) === n + 9), 20_000, 'the new batch at B');
  await new Promise((r) => setTimeout(r, 300)); // anything relayed twice would be here by now
  assert.deepEqual(
    b.applied.map((f) => frameNumber(f.frame)),
    Array.from({ length: n + 10 }, (_, i) => i),
    'each frame of A at B once, in order',
  );
}

test('an agent that moves to another node resends batches its old node took (their acks lost with the link): relayed once, never twice', async () => {
  const db = await servers.pg.createDatabase();
  const n1 = await node('m1', db);
  const ta = await n1.admin.register('mx-a');
  const tb = await n1.admin.register('mx-b');
  await n1.admin.group('gm', 'mx-a', 'mx-b', { can0: 'can0' });
  const n2 = await node('m2', db);
  await until(async () => (await n2.admin.get('/api/v1/groups/gm')).status === 200, 10_000, 'the group known on node 2');
  const b = await FakeAgent.connect(n2.base, { dongle: 'mx-b', token: tb });
  const a = await FakeAgent.connect(n1.base, { dongle: 'mx-a', token: ta });
  const sent = sendNumbered(a, 200);
  await b.waitFor(() => b.applied.length >= 200, 20_000, "A's 200 frames at B through node 1");
  // A's link drops; it reconnects to node 2 and, as an agent whose acks were lost with the link does,
  // sends again every batch it sent (node 1 took and relayed them all).
  a.kill();
  await until(async () => metricValue(await metrics(n1.base), 'canrelay_bridge_agents_connected', { node: 'm1' }) === 0, 10_000, 'node 1 saw the link end');
  const a2 = await FakeAgent.connect(n2.base, { dongle: 'mx-a', token: ta }, a.state, a.run);
  await resendThenCheckOnce(a2, b, sent);
  await a2.close();
  await b.close();
  await Promise.all([n1.proc.stop(), n2.proc.stop()]);
});

test('an agent whose silent link on one node is taken over on another resends batches the first node took: relayed once, never twice', async () => {
  const db = await servers.pg.createDatabase();
  const n1 = await node('s1', db);
  const ta = await n1.admin.register('sx-a');
  const tb = await n1.admin.register('sx-b');
  await n1.admin.group('gs', 'sx-a', 'sx-b', { can0: 'can0' });
  const n2 = await node('s2', db);
  await until(async () => (await n2.admin.get('/api/v1/groups/gs')).status === 200, 10_000, 'the group known on node 2');
  const b = await FakeAgent.connect(n2.base, { dongle: 'sx-b', token: tb });
  // A answers no ping: after its batches its link on node 1 goes silent (a half-open connection).
  const a = await FakeAgent.connect(n1.base, { dongle: 'sx-a', token: ta, autoPong: false });
  const sent = sendNumbered(a, 200);
  const silentSince = Date.now();
  await b.waitFor(() => b.applied.length >= 200, 20_000, "A's 200 frames at B through node 1");
  // The same agent on node 2: refused while its link on node 1 is within its heartbeats, then it takes
  // over (2 intervals of 1 s) before node 1 cuts the silent link (2.5): node 1 has not seen it end, but
  // two silent seconds let it save the position (every second) where node 2 reads it.
  let a2: FakeAgent | undefined;
  while (a2 === undefined) {
    assert.ok(Date.now() - silentSince < 20_000, 'the takeover happened');
    a2 = await FakeAgent.connect(n2.base, { dongle: 'sx-a', token: ta }, a.state, a.run).catch(() => undefined);
    if (a2 === undefined) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(metricValue(await metrics(n2.base), 'canrelay_bridge_agent_takeovers_total', { node: 's2' }), 1, 'taken over, not after a cut');
  await resendThenCheckOnce(a2, b, sent);
  await a2.close();
  await b.close();
  a.kill();
  await Promise.all([n1.proc.stop(), n2.proc.stop()]);
});

/**
 * Every frame A sent is at B, or counted lost at B (gaps not made up by late ones); duplicates are counted
 * too. And only what docs/cluster.md allows is lost: frames node 1 acknowledged and never delivered.
 */
test('SIGKILL of the node A is on, mid-relay: A reconnects to another node through the balancer, the relay resumes, every lost frame is counted', async (t) => {
  const db = await servers.pg.createDatabase();
  const generous = ['--backlog-max-age-ms', '60000', '--backlog-max-frames', '50000'];
  const n1 = await node('k1', db, generous);
  const ta = await n1.admin.register('kx-a');
  const tb = await n1.admin.register('kx-b');
  await n1.admin.group('gk', 'kx-a', 'kx-b', { can0: 'can1' });
  const n2 = await node('k2', db, generous);
  const lb = await TcpBalancer.start([n1, n2].map((n) => Number(new URL(n.base).port)));
  try {
    const dir = tempDir('canrelay-cluster-');
    const N = 10_000;
    // 2,000 frames/s for 5 s: long enough to kill node 1 in the middle.
    writeCandumpLog(join(dir, 'a.log'), N, { bus: 'can0', ids: [0x100, 0x200], stepUs: 500 });
    writeCandumpLog(join(dir, 'b.log'), 10, { bus: 'can1', ids: [0x400] });
    const agentArgs = ['--relay-max-age-ms', '60000'];
    // B's console shows every frame it transmits (unsampled, all kept): which of A's frames reached its bus.
    const consoleFlags = ['--console-max-rate', '1000000', '--history-events', '200000', '--history-seconds', '600'];
    const b = track(await startAgentProcess(['--replay', join(dir, 'b.log'), '--bridge', n2.base, '--token', tb, ...agentArgs, ...consoleFlags], { id: 'kx-b' }));
    await b.proc.waitForLog((l) => l.msg === 'uplink connected');
    const bc = await SseClient.connect(`${b.url}?backlog=200000`);
    servers.onStop(() => bc.close());
    const a = track(await startAgentProcess(['--replay', join(dir, 'a.log'), '--replay-speed', '1', '--bridge', lb.base, '--token', ta, ...agentArgs], { id: 'kx-a' }));
    await until(async () => (await frames(b, 'can1', 'tx')) >= 1000, 60_000, 'relay running through node 1');
    assert.equal(metricValue(await metrics(n1.base), 'canrelay_bridge_agents_connected', { node: 'k1' }), 1, 'A is on node 1');
    const at = await freezeBeforeKill(n1, a, b);
    await n1.proc.stop('SIGKILL');
    const killedAt = Date.now();
    await until(async () => metricValue(await metrics(n2.base), 'canrelay_bridge_agents_connected', { node: 'k2' }) === 2, 60_000, 'A reconnected to node 2');
    // Reported, not asserted (timing on a loaded machine): the target is within 5 s.
    t.diagnostic(`A back on node 2 about ${Date.now() - killedAt} ms after the SIGKILL (polled every 100 ms)`);
    await until(async () => (await accounted(b)).total >= N, 120_000, 'every frame of A transmitted at B or counted lost');
    const r = await accounted(b);
    t.diagnostic(`at B: ${JSON.stringify(r)}`);
    assert.equal(r.total, N, `every frame accounted for: ${JSON.stringify(r)}`);
    assert.ok(r.tx > 1000, 'the relay resumed after the node loss');
    t.diagnostic(await checkNodeLoss(N, at, a, b, bc));
    assert.ok((await uplink(a, 'connects')) >= 2, 'A connected again after its node went');
  } finally {
    await lb.close();
  }
});

test('nats-server SIGKILLed and restarted: /healthz says NATS is unreachable, then the cross-node relay recovers without a restart', async (t) => {
  const db = await servers.pg.createDatabase();
  const generous = ['--backlog-max-age-ms', '60000', '--backlog-max-frames', '50000'];
  const n1 = await node('r1', db, generous);
  const ta = await n1.admin.register('rx-a');
  const tb = await n1.admin.register('rx-b');
  await n1.admin.group('gr', 'rx-a', 'rx-b', { can0: 'can1' });
  const n2 = await node('r2', db, generous);
  const dir = tempDir('canrelay-cluster-');
  const N = 12_000;
  writeCandumpLog(join(dir, 'a.log'), N, { bus: 'can0', ids: [0x100], stepUs: 500 });
  writeCandumpLog(join(dir, 'b.log'), 10, { bus: 'can1', ids: [0x400] });
  const agentArgs = ['--relay-max-age-ms', '60000'];
  const b = track(await startAgentProcess(['--replay', join(dir, 'b.log'), '--bridge', n2.base, '--token', tb, ...agentArgs], { id: 'rx-b' }));
  await b.proc.waitForLog((l) => l.msg === 'uplink connected');
  const a = track(await startAgentProcess(['--replay', join(dir, 'a.log'), '--replay-speed', '1', '--bridge', n1.base, '--token', ta, ...agentArgs], { id: 'rx-a' }));
  await until(async () => (await frames(b, 'can1', 'tx')) >= 1000, 60_000, 'relay running across nodes');
  await servers.nats.kill();
  const health = async (): Promise<{ status: string; cluster: { nats: string } }> => (await getJson(n1.base + '/healthz')).body as { status: string; cluster: { nats: string } };
  await until(async () => (await health()).cluster.nats === 'unreachable', 30_000, 'node 1 says NATS is unreachable');
  assert.equal((await health()).status, 'degraded');
  await n1.proc.waitForLog((l) => /NATS unreachable/.test(l.msg));
  const stalled = await frames(b, 'can1', 'tx');
  await servers.nats.restart();
  await until(async () => (await health()).cluster.nats === 'reachable', 60_000, 'node 1 reconnected to NATS');
  await until(async () => (await frames(b, 'can1', 'tx')) > stalled, 60_000, 'the relay moves again');
  await until(async () => (await accounted(b)).total >= N, 120_000, 'every frame of A transmitted at B or counted lost');
  const r = await accounted(b);
  t.diagnostic(`at B: ${JSON.stringify(r)}`);
  // Unacknowledged batches are resent after NATS returns (the backlog bounds are generous here): none lost.
  assert.deepEqual({ tx: r.tx, gaps: r.gaps }, { tx: N, gaps: 0 }, `every frame transmitted at B: ${JSON.stringify(r)}`);
  const m1 = await metrics(n1.base);
  assert.ok((metricValue(m1, 'canrelay_bridge_cluster_nats_disconnects_total', { node: 'r1' }) ?? 0) >= 1, 'the loss is counted');
  assert.equal(metricValue(m1, 'canrelay_bridge_agents_connected', { node: 'r1' }), 1, 'A kept its link to node 1 throughout');
  assert.equal(await uplink(a, 'connects'), 1, 'A never lost its link');
});

test('an agent that moved to another node while NATS was away keeps its live link when NATS returns (the old node lease does not win)', async () => {
  const db = await servers.pg.createDatabase();
  const n1 = await node('w1', db);
  const token = await n1.admin.register('wx');
  const n2 = await node('w2', db);
  await until(async () => (await n2.admin.get('/api/v1/dongles/wx')).status === 200, 10_000, 'the dongle known on node 2');
  // On node 1, its lease written to NATS; then NATS goes, and the agent's link to node 1 goes silent.
  const a1 = await FakeAgent.connect(n1.base, { dongle: 'wx', token, autoPong: false });
  await new Promise((r) => setTimeout(r, 1500)); // a lease refresh or two reach NATS
  await servers.nats.kill();
  // The agent reaches node 2 (no NATS: admitted unchecked) once its silent link to node 1 was cut (2.5 heartbeats).
  await until(async () => metricValue(await metrics(n1.base), 'canrelay_bridge_agents_connected', { node: 'w1' }) === 0, 20_000, 'node 1 cut the silent link');
  const a2 = await FakeAgent.connect(n2.base, { dongle: 'wx', token });
  await servers.nats.restart();
  await until(async () => ((await getJson(n2.base + '/healthz')).body as { cluster: { nats: string } }).cluster.nats === 'reachable', 60_000, 'node 2 back on NATS');
  // A few refreshes of the lease on both nodes (every 0.5 s): node 2's live link stays.
  await new Promise((r) => setTimeout(r, 4000));
  assert.equal(a2.closeCode, undefined, `the live link on node 2 was not cut: ${a2.closeCode} ${a2.closeReason}`);
  assert.equal(metricValue(await metrics(n2.base), 'canrelay_bridge_cluster_leases_lost_total', { node: 'w2' }), 0);
  await a2.close();
  a1.kill();
  await Promise.all([n1.proc.stop(), n2.proc.stop()]);
});

test('nats-server replaced by one with an empty store (the lease bucket gone): agents are still admitted, and their leases are written again', async () => {
  const db = await servers.pg.createDatabase();
  const n1 = await node('e1', db);
  const token = await n1.admin.register('es-a');
  const first = await FakeAgent.connect(n1.base, { dongle: 'es-a', token });
  await first.close();
  await servers.nats.restartEmpty();
  const health = async (): Promise<string> => ((await getJson(n1.base + '/healthz')).body as { cluster: { nats: string } }).cluster.nats;
  await until(async () => (await health()) === 'reachable', 60_000, 'node 1 reconnected to NATS');
  // Before: every claim read a bucket that no longer existed, was taken for a lost race, and refused.
  const again = await FakeAgent.connect(n1.base, { dongle: 'es-a', token, hello: false });
  try {
    // Welcomed, not refused; perhaps only once a JetStream request to the missing bucket timed out (5 s).
    await again.sayHello(20_000);
    // The lease is in the new server's bucket again, in node 1's name (read as another node would).
    const nc = await connect({ servers: servers.nats.url });
    try {
      const kv = await nc.jetstream().views.kv(OWNER_BUCKET);
      const holder = async (): Promise<string | undefined> => {
        const e = await kv.get('es-a').catch(() => null);
        return e?.operation === 'PUT' ? (e.json() as { node?: string }).node : undefined;
      };
      await until(async () => (await holder()) === 'e1', 20_000, 'the lease written again');
    } finally {
      await nc.close();
    }
  } finally {
    await again.close();
  }
});

test('a command posted on node 2 to a dongle connected to node 1 reaches succeeded; its status is readable on both nodes', async () => {
  const db = await servers.pg.createDatabase();
  const n1 = await node('c1', db);
  const n2 = await node('c2', db);
  const token = await n1.admin.register('cx-cmd');
  const a = track(await startAgentProcess(['--sim', '--sim-rate', '10', '--bridge', n1.base, '--token', token], { id: 'cx-cmd' }));
  await a.proc.waitForLog((l) => l.msg === 'uplink connected');
  await until(async () => (await n2.admin.get('/api/v1/dongles/cx-cmd')).status === 200, 10_000, 'the dongle known on node 2');
  const r = await n2.admin.post('/api/v1/dongles/cx-cmd/commands', { type: 'send_frame', bus: 'can0', id: '0x7DF', data_hex: '02 01 0C' });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  const id = String(r.body.command_id);
  for (const n of [n1, n2]) await until(async () => (await n.admin.get(`/api/v1/commands/${id}`)).body.status === 'succeeded', 30_000, `succeeded, seen on ${n.base}`);
  const history = ((await n2.admin.get(`/api/v1/commands/${id}`)).body.history as { status: string }[]).map((h) => h.status);
  assert.deepEqual(history, ['queued', 'sent', 'delivered', 'succeeded']);
});

test('recordings through any node: the list, a ticket and the download of a dongle whose link another node holds, byte-identical; a dongle no node holds is 503', async () => {
  const db = await servers.pg.createDatabase();
  const n1 = await node('rc1', db);
  const token = await n1.admin.register('rc-gw');
  const n2 = await node('rc2', db);
  await until(async () => (await n2.admin.get('/api/v1/dongles/rc-gw')).status === 200, 10_000, 'the dongle known on node 2');
  const dir = tempDir('canrelay-cluster-rec-');
  writeCandumpLog(join(dir, 'in.log'), 20_000, { ids: [0x100, 0x200] }); // about 800 KB: some 25 chunks
  const recs = join(dir, 'recs');
  const a = track(
    await startAgentProcess(['--replay', join(dir, 'in.log'), '--replay-speed', '0', '--record-on-start', '--record-dir', recs, '--bridge', n1.base, '--token', token], {
      id: 'rc-gw',
    }),
  );
  await a.proc.waitForLog((l) => l.msg === 'uplink connected');
  await a.proc.waitForLog((l) => l.code === 'replay_ended', 60_000);
  const id = String(((await getJson(`${a.base}/api/v1/recordings`)).body as { recordings: { id: string }[] }).recordings[0]!.id);
  assert.equal((await fetch(`${a.base}/api/v1/recordings/${id}/stop`, { method: 'POST' })).status, 200);
  const onDisk = Buffer.from(await (await fetch(`${a.base}/api/v1/recordings/${id}`)).arrayBuffer());
  // Node 2 has no link of the dongle: it asks node 1, which holds it.
  await untilValue(async () => {
    const r = await n2.admin.get('/api/v1/dongles/rc-gw/recordings');
    return r.status === 200 ? r : undefined;
  }, 'the list through node 2');
  const listed = await n2.admin.get('/api/v1/dongles/rc-gw/recordings');
  assert.deepEqual(
    (listed.body.recordings as { id: string }[]).map((r) => r.id),
    [id],
  );
  // The GET and its HEAD (status and headers as the GET's, no body) through node 2.
  const viaNode2 = (await assertHeadLikeGet(`${n2.base}/api/v1/dongles/rc-gw/recordings/${id}`, { Authorization: `Bearer ${ADMIN_TOKEN}` })).body;
  assert.equal(viaNode2.length, onDisk.length);
  assert.ok(viaNode2.equals(onDisk), 'the download through node 2 is byte-identical to the gateway file');
  // A ticket from node 2, the download (and its HEAD) through node 1 (the balancer may pick either).
  const issued = await n2.admin.post(`/api/v1/dongles/rc-gw/recordings/${id}/ticket`);
  assert.equal(issued.status, 201);
  const viaTicket = (await assertHeadLikeGet(n1.base + String(issued.body.url))).body;
  assert.ok(viaTicket.equals(onDisk));
  assert.equal((await n2.admin.get(`/api/v1/dongles/rc-gw/recordings/20000101T000000Z-000000`)).status, 404, "the agent's own answer, through node 1");
  // The agent gone: no node holds the link.
  await a.proc.stop();
  await until(async () => (await n2.admin.get('/api/v1/dongles/rc-gw/recordings')).status === 503, 15_000, 'node 2 says it is not connected');
  await Promise.all([n1.proc.stop(), n2.proc.stop()]);
});
