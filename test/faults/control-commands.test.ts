/**
 * Command floods and command bookkeeping, with real bridge and agent processes on loopback and a real
 * SQLite outbox:
 *  - 5,000 commands to an offline dongle: the queue bound answers 429 beyond --max-queued-commands; on
 *    connect delivery is paced (a bounded number in flight), /healthz keeps answering, every accepted
 *    command reaches a final status and none the agent transmitted is reported timed_out;
 *  - the agent's outbox, when full, prunes presence/log events and never a command_status;
 *  - a sent command whose agent is cut off before it reports is never timed_out while the agent is away:
 *    the report its outbox delivers after the reconnect finishes it; once the agent is back and silent
 *    for the report wait, it does time out (the negative control);
 *  - finished commands are deleted after --command-retention.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { Outbox } from '../../agent/uplink/outbox.js';
import { IN_FLIGHT_WINDOW } from '../../cloud-bridge/command-delivery.js';
import { STATUS_GRACE_MS } from '../../cloud-bridge/commands.js';
import { commandStatusData, presenceData } from '../../core/console/normalize.js';
import { cleanupAfter } from '../helpers/cleanup.js';
import { ADMIN_TOKEN, startBridgeProcess, type StartedBridge } from '../helpers/bridge-process.js';
import { FakeAgent } from '../helpers/fake-agent.js';
import { startAgentProcess, tempDir } from '../helpers/processes.js';
import { getJson, metricValue, SseClient } from '../helpers/sse-client.js';

const { track, client } = cleanupAfter();
const metrics = async (base: string): Promise<string> => (await getJson(base + '/metrics')).text;
const command = { type: 'send_frame', bus: 'can0', id: '0x123', data_hex: '01 02 03' };

/** Posts `n` commands, `parallel` at a time; returns the statuses and the accepted ids in order of acceptance. */
async function postMany(b: StartedBridge, dongle: string, n: number, parallel: number): Promise<{ statuses: Map<number, number>; accepted: string[]; refusal: string }> {
  const statuses = new Map<number, number>();
  const accepted: string[] = [];
  let refusal = '';
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) {
      next++;
      const r = await b.admin.post(`/api/v1/dongles/${dongle}/commands`, { ...command, timeout_s: 600 });
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
      if (r.status === 202) accepted.push(String(r.body.command_id));
      else if (r.status === 429) refusal = String(r.body.error);
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return { statuses, accepted, refusal };
}

test('5,000 commands to an offline dongle: 429 beyond the bound; on connect paced delivery, none transmitted reported timed_out', async () => {
  const bridge = track(await startBridgeProcess());
  const token = await bridge.admin.register('flood');
  const c = await SseClient.connect(`${bridge.base}/api/v1/streams/dongles/flood/console`, { Authorization: `Bearer ${ADMIN_TOKEN}` });
  client(c);

  const { statuses, accepted, refusal } = await postMany(bridge, 'flood', 5000, 16);
  assert.equal(statuses.get(202), 1000, 'the default --max-queued-commands are accepted');
  assert.equal(statuses.get(429), 4000, 'the rest are refused with 429');
  assert.match(refusal, /1000 unfinished commands.*--max-queued-commands/);
  assert.equal(metricValue(await metrics(bridge.base), 'canrelay_bridge_commands_refused_total'), 4000);

  const agent = track(await startAgentProcess(['--sim', '--sim-rate', '50', '--bridge', bridge.base, '--token', token], { id: 'flood' }));
  const m = async (status: string): Promise<number> => metricValue(await metrics(bridge.base), 'canrelay_bridge_command_status_total', { status }) ?? 0;
  // The bridge keeps serving HTTP while it delivers (bounded: 1,000 commands, 120 s).
  let healthChecks = 0;
  const deadline = Date.now() + 120_000;
  while ((await m('succeeded')) + (await m('failed')) + (await m('timed_out')) < 1000) {
    assert.ok(Date.now() < deadline, `every command reaches a final status (succeeded so far: ${await m('succeeded')})`);
    const h = await getJson(bridge.base + '/healthz');
    assert.equal(h.status, 200);
    assert.equal(h.body.status, 'ok');
    healthChecks++;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(healthChecks > 0);
  assert.equal(await m('succeeded'), 1000, 'all carried out');
  assert.equal(await m('timed_out'), 0, 'none transmitted is reported timed_out');
  assert.equal(await m('failed'), 0);
  const tx = metricValue(await metrics(agent.base), 'canrelay_can_frames_total', { bus: 'can0', direction: 'tx' });
  assert.equal(tx, 1000, 'each command transmitted exactly once');
  assert.equal(metricValue(await metrics(agent.base), 'canrelay_uplink', { kind: 'outbox_pruned' }), 0);

  // Paced: the console's statuses never show more than the window sent and unfinished at once.
  await c.waitFor((ev) => ev.filter((e) => e.event === 'command_status' && e.json.status === 'succeeded').length === 1000, 10_000, 'every succeeded on the console');
  const open = new Set<string>();
  let most = 0;
  for (const e of c.ofType('command_status')) {
    const id = String(e.json.command_id);
    if (e.json.status === 'sent') open.add(id);
    if (e.json.status === 'succeeded' || e.json.status === 'failed' || e.json.status === 'timed_out') open.delete(id);
    most = Math.max(most, open.size);
  }
  assert.ok(most <= IN_FLIGHT_WINDOW && most > 0, `at most ${IN_FLIGHT_WINDOW} in flight (saw ${most})`);

  // Delivered in the order accepted (README: "delivered when it connects, oldest first"), each through
  // every status. The order of acceptance is the order of the `queued` statuses on the console (each
  // published as its command is stored); `accepted` is the same set but in the order the 16 parallel
  // POSTs' answers came back, which need not be the order the bridge took them in.
  const ofStatus = (status: string): string[] =>
    c
      .ofType('command_status')
      .filter((e) => e.json.status === status)
      .map((e) => String(e.json.command_id));
  const queued = ofStatus('queued');
  assert.deepEqual([...queued].sort(), [...accepted].sort(), 'each accepted command queued once on the console');
  const sent = ofStatus('sent');
  assert.equal(sent.length, 1000);
  assert.deepEqual(sent, queued, 'sent one by one in the order they were accepted, oldest first');
  const v = await bridge.admin.get(`/api/v1/commands/${accepted[999]}`);
  assert.deepEqual(
    (v.body.history as { status: string }[]).map((h) => h.status),
    ['queued', 'sent', 'delivered', 'succeeded'],
  );
  await agent.proc.stop();
  await bridge.proc.stop();
});

test("the agent's outbox, when full, prunes presence and log events first and never a command_status", () => {
  const db = new Database(join(tempDir('canrelay-outbox-'), 'agent.sqlite'));
  const notices: Record<string, number>[] = [];
  const box = new Outbox(db, 100, (byType) => notices.push(byType));
  for (let i = 0; i < 300; i++) {
    box.append({ type: 'presence', data: presenceData('seen', {}) });
    if (i % 10 === 0) box.append({ type: 'command_status', data: commandStatusData(`cmd-${i}`, 'send_frame', 'succeeded') });
  }
  assert.equal(box.size, 100);
  const kept = box.pending(0, 1000);
  assert.equal(kept.filter((e) => e.event === 'command_status').length, 30, 'every command_status kept');
  assert.equal(box.pruned, 230);
  assert.equal(box.prunedByType.get('presence'), 230);
  assert.equal(box.prunedByType.get('command_status'), undefined);
  assert.ok(notices.length > 0 && notices.every((n) => n.command_status === undefined), 'what was pruned is reported');

  // Command statuses alone may exceed the bound rather than be lost.
  for (let i = 0; i < 150; i++) box.append({ type: 'command_status', data: commandStatusData(`more-${i}`, 'send_frame', 'succeeded') });
  assert.equal(box.pending(0, 1000).filter((e) => e.event === 'command_status').length, 180);
  db.close();
});

test('a sent command is not timed out while its agent is offline; the report after the reconnect finishes it', async () => {
  const bridge = track(await startBridgeProcess());
  const token = await bridge.admin.register('away');
  const history = async (id: string): Promise<string[]> => ((await bridge.admin.get(`/api/v1/commands/${id}`)).body.history as { status: string }[]).map((h) => h.status);
  let a = await FakeAgent.connect(bridge.base, { dongle: 'away', token });
  const r = await bridge.admin.post('/api/v1/dongles/away/commands', { ...command, timeout_s: 1 });
  const id = String(r.body.command_id);
  await a.waitFor(() => a.ofType('command').some((m) => m.command_id === id), 5000, 'command at the agent');
  // The agent transmits it, but its link dies before the report goes up; it stays away well past the
  // command's timeout plus the report wait (1 s + 10 s).
  await a.close();
  const away = Date.now() + 13_000;
  while (Date.now() < away) {
    assert.equal((await bridge.admin.get(`/api/v1/commands/${id}`)).body.status, 'sent', 'unknown while the agent is away, never timed_out');
    await new Promise((res) => setTimeout(res, 500));
  }
  // Back: its outbox delivers the statuses it kept.
  a = await a.reconnect();
  a.sendEvent(1, 'command_status', { ts: new Date().toISOString(), command_id: id, type: 'send_frame', status: 'delivered' });
  a.sendEvent(2, 'command_status', { ts: new Date().toISOString(), command_id: id, type: 'send_frame', status: 'succeeded' });
  await a.waitFor(() => a.ackedEvents === 2, 5000, 'the reports acknowledged');
  assert.deepEqual(await history(id), ['queued', 'sent', 'delivered', 'succeeded'], 'never timed_out');

  // Negative control: a sent command whose agent is connected and never reports times out after the wait.
  const r2 = await bridge.admin.post('/api/v1/dongles/away/commands', { ...command, timeout_s: 1 });
  const id2 = String(r2.body.command_id);
  const deadline = Date.now() + 30_000;
  while ((await bridge.admin.get(`/api/v1/commands/${id2}`)).body.status !== 'timed_out') {
    assert.ok(Date.now() < deadline, 'a silent connected agent: timed_out after the report wait');
    await new Promise((res) => setTimeout(res, 250));
  }
  assert.deepEqual(await history(id2), ['queued', 'sent', 'timed_out']);
  await a.close();
  await bridge.proc.stop();
});

test('hundreds of sent commands whose agent stays away do not stall the timeout sweep: a queued command behind them still times out', async () => {
  const bridge = track(await startBridgeProcess());
  const token = await bridge.admin.register('gone');
  await bridge.admin.register('victim');
  // More sent-and-unreported commands than one sweep looks at (200), past their deadline with their agent offline.
  const n = 7 * IN_FLIGHT_WINDOW;
  for (let i = 0; i < n; i++) assert.equal((await bridge.admin.post('/api/v1/dongles/gone/commands', { ...command, timeout_s: 5 })).status, 202);
  let got = 0;
  while (got < n) {
    const a = await FakeAgent.connect(bridge.base, { dongle: 'gone', token });
    await a.waitFor(() => a.ofType('command').length >= Math.min(IN_FLIGHT_WINDOW, n - got), 5000, 'a window of commands');
    got += a.ofType('command').length;
    await a.close(); // never reports: they stay sent
  }
  // Every one past its deadline and the report wait (5 s + STATUS_GRACE_MS): left to the sweeps, agent away.
  await new Promise((r) => setTimeout(r, 5000 + STATUS_GRACE_MS + 1000));
  const r = await bridge.admin.post('/api/v1/dongles/victim/commands', { ...command, timeout_s: 1 });
  const id = String(r.body.command_id);
  const deadline = Date.now() + 30_000;
  while ((await bridge.admin.get(`/api/v1/commands/${id}`)).body.status !== 'timed_out') {
    assert.ok(Date.now() < deadline, 'the queued command timed out');
    await new Promise((res) => setTimeout(res, 250));
  }
  const one = await bridge.admin.get('/api/v1/dongles/gone/commands?limit=1');
  assert.equal((one.body.commands as { status: string }[])[0]!.status, 'sent', 'while those stay sent: their agent is away');
  await bridge.proc.stop();
});

test('finished commands are deleted after --command-retention', async () => {
  const bridge = track(await startBridgeProcess(['--command-retention', '1s']));
  await bridge.admin.register('old');
  const r = await bridge.admin.post('/api/v1/dongles/old/commands', { ...command, timeout_s: 0.5 });
  assert.equal(r.status, 202);
  const id = String(r.body.command_id);
  const deadline = Date.now() + 20_000;
  let seenTimedOut = false;
  for (;;) {
    const v = await bridge.admin.get(`/api/v1/commands/${id}`);
    if (v.status === 200 && v.body.status === 'timed_out') seenTimedOut = true;
    if (v.status === 404) {
      assert.match(String(v.body.error), /--command-retention/);
      break;
    }
    assert.ok(Date.now() < deadline, 'deleted within the retention and one sweep');
    await new Promise((res) => setTimeout(res, 100));
  }
  assert.ok(seenTimedOut, 'it finished (timed out, never sent: the dongle was offline) before it was deleted');
  assert.ok((metricValue(await metrics(bridge.base), 'canrelay_bridge_commands_pruned_total') ?? 0) >= 1);
  await bridge.proc.stop();
});
