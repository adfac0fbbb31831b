/**
 * A bridge stopped (SIGTERM, then restarted) while a group side is offline with a backlog: those frames
 * were acknowledged to their origin and live only in the stopping process, so they are lost — and must
 * never be lost silently (docs/architecture.md, drop table). The stopping bridge counts them in the
 * group's persisted `dropped` (what the next start's group_state shows) and logs them; the receiving
 * agent B, kept running (SIGSTOP/SIGCONT) so its sequence checker remembers A's numbers, sees exactly
 * that many gaps once the restarted bridge relays again.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { startBridgeProcess, type StartedBridge } from '../helpers/bridge-process.js';
import { FakeAgent, numberedFrame } from '../helpers/fake-agent.js';
import { startAgentProcess, type StartedAgent } from '../helpers/processes.js';
import { getJson, metricValue } from '../helpers/sse-client.js';
import { until } from '../helpers/until.js';

const cleanup: (() => Promise<unknown> | void)[] = [];
after(async () => {
  for (const c of cleanup.reverse()) await c();
});

/** Only the stop may drop a frame: the backlog bounds are out of reach, and B's link is declared dead fast. */
const BRIDGE_FLAGS = ['--backlog-max-frames', '1000000', '--backlog-max-age-ms', '3600000', '--uplink-heartbeat-seconds', '0.5'];
const HELD = 300;

const metrics = async (base: string): Promise<string> => (await getJson(base + '/metrics')).text;
const uplink = async (a: StartedAgent, kind: string): Promise<number> => metricValue(await metrics(a.base), 'canrelay_uplink', { kind }) ?? 0;
const txFrames = async (a: StartedAgent): Promise<number> => metricValue(await metrics(a.base), 'canrelay_can_frames_total', { bus: 'can0', direction: 'tx' }) ?? 0;
const sideB = async (bridge: StartedBridge, name: string): Promise<number> => metricValue(await metrics(bridge.base), name, { group: 'st', side: 'b' }) ?? 0;
const groupState = async (bridge: StartedBridge): Promise<Record<string, unknown>> => (await bridge.admin.call('GET', '/api/v1/groups/st')).body;

test("bridge stopped while side B is offline with a backlog: every held frame is counted (group dropped, log line) and equals B's gaps after the restart", async () => {
  const bridge = await startBridgeProcess(BRIDGE_FLAGS);
  cleanup.push(() => bridge.proc.stop('SIGKILL'));
  const ta = await bridge.admin.register('st-a');
  const tb = await bridge.admin.register('st-b');
  await bridge.admin.group('st', 'st-a', 'st-b');
  const b = await startAgentProcess(['--sim', '--sim-rate', '1', '--bridge', bridge.base, '--token', tb, '--relay-max-age-ms', '3600000'], { id: 'st-b' });
  cleanup.push(() => b.proc.stop('SIGKILL'));
  cleanup.push(() => void b.proc.child.kill('SIGCONT'));
  await b.proc.waitForLog((l) => l.msg === 'uplink connected');

  let a = await FakeAgent.connect(bridge.base, { dongle: 'st-a', token: ta });
  cleanup.push(() => a.close());
  let next = 0;
  const send = (n: number): void => {
    const frames = [];
    for (let i = 0; i < n; i++) frames.push(numberedFrame('can0', 0x100, next++));
    a.sendFrames(frames);
  };

  // B gets A's first frames and acknowledges them: nothing is in flight when it goes away.
  send(10);
  await until(async () => (await txFrames(b)) === 10, 30_000, 'B transmitting the first 10 frames');
  await until(async () => (await sideB(bridge, 'canrelay_bridge_backlog_frames')) === 0, 30_000, "the bridge holding nothing for B (B's ack)");

  // B goes silent (its process kept, and with it its sequence checker); the bridge cuts its link.
  b.proc.child.kill('SIGSTOP');
  await until(async () => ((await groupState(bridge)).sides as { b: { online: boolean } }).b.online === false, 30_000, 'side B offline on the bridge');
  for (let i = 0; i < 3; i++) send(HELD / 3);
  await until(async () => (await sideB(bridge, 'canrelay_bridge_backlog_frames')) === HELD, 30_000, `the bridge holding ${HELD} frames for B`);
  await a.waitFor(() => a.ackedUp === 4, 30_000, "A's 4 batches acknowledged: only the bridge holds those frames now");
  assert.equal((await groupState(bridge)).dropped, 0);

  assert.equal(await bridge.proc.stop(), 0, 'the bridge stops cleanly on SIGTERM');
  const line = bridge.proc.logs.find((l) => l.code === 'relay_dropped_at_stop');
  assert.ok(line, 'the stopping bridge logs what it drops');
  assert.deepEqual([line.level, line.group, line.side, line.dongle, line.connected, line.frames], [40, 'st', 'b', 'st-b', false, HELD]);

  // Restarted on the same port and database: the count is in the group's state.
  const again = await startBridgeProcess([...BRIDGE_FLAGS, '--listen', `127.0.0.1:${new URL(bridge.base).port}`], { db: bridge.db });
  cleanup.push(() => again.proc.stop('SIGKILL'));
  assert.equal((await groupState(again)).dropped, HELD, "the next start's group_state counts the frames dropped at the stop");

  // B comes back to the new bridge, A reconnects (same run) and goes on: B sees exactly the dropped frames as gaps.
  b.proc.child.kill('SIGCONT');
  await until(() => b.proc.logs.filter((l) => l.msg === 'uplink connected').length >= 2, 60_000, 'B reconnected');
  a = await a.reconnect();
  cleanup.push(() => a.close());
  send(20);
  await until(async () => (await txFrames(b)) === 30, 30_000, 'B transmitting the 20 frames sent after the restart');
  const gaps = await uplink(b, 'relay_seq_gaps');
  assert.equal(gaps, HELD, `B's relay_seq_gaps (${gaps}) equal the frames the stopped bridge counted (${HELD})`);
  assert.equal(await uplink(b, 'relay_seq_duplicates'), 0);
  assert.equal(await uplink(b, 'relay_seq_reordered'), 0);
  assert.equal((await groupState(again)).dropped, HELD, 'nothing else dropped');
  await a.close();
  await b.proc.stop();
  await again.proc.stop();
});
