/**
 * Faults of the control plane's links, with real agent and bridge processes on loopback:
 *  - two gateways sharing one token: one keeps the link, the other is refused (4409) with a growing
 *    backoff, nothing of it is relayed, no flapping, a duplicate_agent log on the dongle's console;
 *  - a half-open connection (the first agent frozen with SIGSTOP): a newcomer takes over;
 *  - agent state wiped, or corrupt and moved aside at start: the fresh agent's mirrored events arrive
 *    (the bridge numbers them afresh), and nothing is published twice.
 */
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { cleanupAfter } from '../helpers/cleanup.js';
import { until } from '../helpers/until.js';
import { ADMIN_TOKEN, startBridgeProcess, type StartedBridge } from '../helpers/bridge-process.js';
import { startAgentProcess, tempDir, type StartedAgent } from '../helpers/processes.js';
import { getJson, metricValue, SseClient } from '../helpers/sse-client.js';

const { track, client } = cleanupAfter();

const metrics = async (base: string): Promise<string> => (await getJson(base + '/metrics')).text;
const uplink = async (a: StartedAgent, kind: string): Promise<number> => metricValue(await metrics(a.base), 'canrelay_uplink', { kind }) ?? NaN;
async function dongleConsole(b: StartedBridge, id: string): Promise<SseClient> {
  const c = await SseClient.connect(`${b.base}/api/v1/streams/dongles/${id}/console`, { Authorization: `Bearer ${ADMIN_TOKEN}` });
  client(c);
  return c;
}
const agentArgs = (b: StartedBridge, token: string, rate = 200): string[] => ['--sim', '--sim-rate', String(rate), '--bridge', b.base, '--token', token];
const isDuplicateLog = (l: { msg: string }): boolean => l.msg.startsWith('DUPLICATE AGENT');

test('two agents with one token: the first keeps the link, the second is refused with 4409 and backs off; no flapping', async () => {
  const bridge = track(await startBridgeProcess(['--uplink-heartbeat-seconds', '1']));
  const token = await bridge.admin.register('twin');
  const c = await dongleConsole(bridge, 'twin');
  const first = track(await startAgentProcess(agentArgs(bridge, token), { id: 'twin' }));
  await first.proc.waitForLog((l) => l.msg === 'uplink connected');
  const second = track(await startAgentProcess(agentArgs(bridge, token), { id: 'twin' }));
  await second.proc.waitForLog(isDuplicateLog);
  await c.waitFor((ev) => ev.some((e) => e.event === 'log' && e.json.code === 'duplicate_agent'), 5000, 'the duplicate_agent log on the console');

  // A bounded window: the second keeps asking, ever more rarely; the first is never replaced.
  const windowMs = 12_000;
  await new Promise((r) => setTimeout(r, windowMs));
  const m = await metrics(bridge.base);
  const refused = metricValue(m, 'canrelay_bridge_rejected_messages_total', { reason: 'duplicate_agent' }) ?? 0;
  assert.equal(metricValue(m, 'canrelay_bridge_agent_takeovers_total'), 0, 'no takeover of a healthy link');
  assert.ok(refused >= 2 && refused <= 8, `the refused agent retried with a growing backoff (${refused} refusals in ${windowMs / 1000} s)`);
  const delays = second.proc.logs.filter(isDuplicateLog).map((l) => Number(l.retry_in_ms));
  for (let i = 1; i < delays.length; i++) assert.ok(delays[i]! >= delays[i - 1]!, `backoff grows: ${delays.join(', ')}`);
  assert.ok(delays.at(-1)! >= 2000, `backoff grows past 2 s: ${delays.join(', ')}`);

  assert.equal(first.proc.logs.filter((l) => l.msg === 'uplink connected').length, 1, 'the first connected once');
  assert.equal(first.proc.logs.filter((l) => l.msg === 'uplink disconnected').length, 0, 'and was never cut');
  assert.equal(second.proc.logs.filter((l) => l.msg === 'uplink connected').length, 0, 'the second was never welcomed');
  assert.equal(await uplink(second, 'frames_sent'), 0, 'nothing of the second was sent up');
  assert.equal(await uplink(second, 'events_sent'), 0);
  assert.equal(c.ofType('presence').filter((e) => e.json.state === 'offline').length, 0, 'the dongle never went offline');
  assert.ok((await uplink(first, 'frames_sent')) > 0, 'the first relays');
});

test('takeover after a half-open connection: the first agent frozen (SIGSTOP), a newcomer gets the link', async () => {
  const bridge = track(await startBridgeProcess(['--uplink-heartbeat-seconds', '0.5']));
  const token = await bridge.admin.register('frozen');
  const first = track(await startAgentProcess(agentArgs(bridge, token), { id: 'frozen' }));
  await first.proc.waitForLog((l) => l.msg === 'uplink connected');
  first.proc.child.kill('SIGSTOP');
  try {
    const second = track(await startAgentProcess(agentArgs(bridge, token), { id: 'frozen' }));
    await second.proc.waitForLog((l) => l.msg === 'uplink connected', 20_000);
    const received = async (): Promise<number> => metricValue(await metrics(bridge.base), 'canrelay_bridge_frames_received_total', { dongle: 'frozen' }) ?? 0;
    const before = await received();
    await until(async () => (await uplink(second, 'frames_acked')) > 0 && (await received()) > before, 10_000, "the newcomer's frames reach the bridge");
    assert.equal((await bridge.admin.get('/api/v1/dongles/frozen')).body.online, true);

    // The frozen one wakes up: its link is gone; it comes back as a duplicate and is refused.
    first.proc.child.kill('SIGCONT');
    await first.proc.waitForLog(isDuplicateLog, 20_000);
    assert.equal(second.proc.logs.filter((l) => l.msg === 'uplink disconnected').length, 0, 'the newcomer keeps the link');
  } finally {
    first.proc.child.kill('SIGCONT');
  }
});

test('agent state wiped: the fresh agent’s mirrored events arrive, numbered afresh; nothing is published twice', async () => {
  const bridge = track(await startBridgeProcess());
  const token = await bridge.admin.register('wiped');
  const c = await dongleConsole(bridge, 'wiped');
  const started = (): number => c.ofType('presence').filter((e) => String(e.json.reason).startsWith('agent started')).length;

  // The first agent mirrors a few events (periodic presence), so the bridge's stored seq is past 1.
  const old = track(await startAgentProcess([...agentArgs(bridge, token, 10), '--presence-interval', '1'], { id: 'wiped' }));
  await c.waitFor((ev) => ev.filter((e) => e.event === 'presence' && e.json.state === 'seen').length >= 3, 15_000, 'a few mirrored events');
  await old.proc.stop();
  assert.equal(started(), 1);

  // A new gateway (or a wiped disk): a new state directory, so its outbox numbers from 1 again.
  const fresh = tempDir('canrelay-wiped-');
  let a = track(await startAgentProcess(agentArgs(bridge, token, 10), { id: 'wiped', stateDir: fresh }));
  await c.waitFor(() => started() === 2, 10_000, "the fresh agent's 'agent started' presence");
  assert.equal(c.ofType('log').filter((e) => e.json.code === 'mirror_reset').length, 1, 'the reset is announced');
  await a.proc.stop();
  await c.waitFor(
    (ev) => ev.filter((e) => e.event === 'presence' && e.json.state === 'offline' && e.json.reason === 'received SIGTERM').length === 2,
    10_000,
    'its final presence',
  );

  // The same state again: numbering continues, no reset, no event twice.
  a = track(await startAgentProcess(agentArgs(bridge, token, 10), { id: 'wiped', stateDir: fresh }));
  await c.waitFor(() => started() === 3, 10_000, 'the restarted agent’s presence');
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(c.ofType('log').filter((e) => e.json.code === 'mirror_reset').length, 1, 'no reset for the same state');
  const mirrored = c.ofType('presence').filter((e) => e.json.state === 'offline' && e.json.reason === 'received SIGTERM');
  assert.equal(mirrored.length, 2, 'each final presence published once');
  assert.equal(started(), 3);
  await a.proc.stop();
  await bridge.proc.stop();
});

test('a corrupt agent state file, moved aside at start: the agent’s mirrored events still arrive', async () => {
  const bridge = track(await startBridgeProcess());
  const token = await bridge.admin.register('corrupt');
  const c = await dongleConsole(bridge, 'corrupt');
  const started = (): number => c.ofType('presence').filter((e) => String(e.json.reason).startsWith('agent started')).length;
  const dir = tempDir('canrelay-corrupt-');
  const first = track(await startAgentProcess([...agentArgs(bridge, token, 10), '--presence-interval', '1'], { id: 'corrupt', stateDir: dir }));
  await c.waitFor((ev) => ev.filter((e) => e.event === 'presence' && e.json.state === 'seen').length >= 3, 15_000, 'a few mirrored events');
  await first.proc.stop();

  for (const f of ['agent.sqlite-wal', 'agent.sqlite-shm']) rmSync(join(dir, f), { force: true });
  writeFileSync(join(dir, 'agent.sqlite'), Buffer.alloc(8192, 0x5a));
  const again = track(await startAgentProcess(agentArgs(bridge, token, 10), { id: 'corrupt', stateDir: dir }));
  await again.proc.waitForLog((l) => /moved aside/.test(l.msg));
  await c.waitFor(() => started() === 2, 10_000, "the restarted agent's 'agent started' presence");
  assert.equal(c.ofType('log').filter((e) => e.json.code === 'mirror_reset').length, 1);
  await again.proc.stop();
  await bridge.proc.stop();
});

test("a frozen bridge: the agent's --uplink-heartbeat-seconds decides how soon it cuts the link and reconnects", async () => {
  const bridge = track(await startBridgeProcess([]));
  const token = await bridge.admin.register('hb');
  const agent = track(await startAgentProcess([...agentArgs(bridge, token, 50), '--uplink-heartbeat-seconds', '0.5'], { id: 'hb' }));
  await agent.proc.waitForLog((l) => l.msg === 'uplink connected');
  bridge.proc.child.kill('SIGSTOP');
  try {
    // 2.5 intervals of 0.5 s; the default 10 s would take 25 s, past this bound.
    await agent.proc.waitForLog((l) => l.msg === 'uplink heartbeat lost: no pong from the bridge; reconnecting', 15_000);
  } finally {
    bridge.proc.child.kill('SIGCONT');
  }
  await until(() => agent.proc.logs.filter((l) => l.msg === 'uplink connected').length >= 2, 30_000, 'the agent back on the resumed bridge');
});
