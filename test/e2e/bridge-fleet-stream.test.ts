/**
 * The fleet stream, `GET /api/v1/streams/fleet`, on a real bridge process with protocol-level fake agents:
 * the snapshot a new client opens with (every dongle and group, no ids), live changes (presence, bus_state,
 * command_status, group_state, registrations and removals), never a frame, the consoles' auth, and the
 * resume rules (a clean resume gets no snapshot; a stream_reset is followed by one).
 */
import { commandStatusData } from '../../core/console/normalize.js';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ADMIN_TOKEN, startBridgeProcess } from '../helpers/bridge-process.js';
import { until } from '../helpers/until.js';
import { FakeAgent, numberedFrame } from '../helpers/fake-agent.js';
import { fakeBusState } from '../helpers/fake-fleet.js';
import { SseClient, type SseEvent } from '../helpers/sse-client.js';

const FLEET = '/api/v1/streams/fleet';
const snapshotDone = (evs: SseEvent[]) => evs.some((e) => e.event === 'log' && e.json.code === 'fleet_snapshot');

test('fleet stream: snapshot, live changes without frames, auth and resume', async () => {
  const b = await startBridgeProcess();
  const agents: FakeAgent[] = [];
  const clients: SseClient[] = [];
  try {
    const tokens = { d1: await b.admin.register('d1'), d2: await b.admin.register('d2'), d3: await b.admin.register('d3') };
    await b.admin.group('g1', 'd1', 'd2');
    const a1 = await FakeAgent.connect(b.base, { dongle: 'd1', token: tokens.d1 });
    const a2 = await FakeAgent.connect(b.base, { dongle: 'd2', token: tokens.d2 });
    agents.push(a1, a2);
    const viewer = String((await b.admin.post('/api/v1/viewer-tokens')).body.token);

    // Auth: like a console.
    assert.equal((await SseClient.connect(b.base + FLEET)).status, 401);
    const asAgent = await SseClient.connect(b.base + FLEET, { Authorization: `Bearer ${tokens.d3}` });
    assert.equal(asAgent.status, 403);
    asAgent.close();

    const c = await SseClient.connect(b.base + FLEET, { Authorization: `Bearer ${viewer}` });
    clients.push(c);
    assert.equal(c.status, 200);
    await c.waitFor(snapshotDone, 10_000, 'the snapshot');
    const end = c.events.findIndex((e) => e.event === 'log' && e.json.code === 'fleet_snapshot');
    const snap = c.events.slice(0, end + 1);
    assert.ok(
      snap.every((e) => e.id === undefined),
      'snapshot events carry no id',
    );
    const presence = new Map(snap.filter((e) => e.event === 'presence').map((e) => [e.json.dongle, e.json]));
    assert.equal(presence.get('d1')?.state, 'online');
    assert.equal(presence.get('d1')?.version, 'fake-1');
    assert.equal(typeof presence.get('d1')?.since, 'string');
    assert.equal(presence.get('d2')?.state, 'online');
    assert.equal(presence.get('d3')?.state, 'offline', 'a registered dongle never connected is in the snapshot');
    const g = snap.find((e) => e.event === 'group_state');
    assert.equal(g?.json.group, 'g1');
    assert.equal(g?.json.mode, 'relaying');
    assert.deepEqual(snap[end]!.json.details as Record<string, unknown>, { dongles: 3, groups: 2 - 1 });

    // Live: frames never; a bus turning error-passive, a command failing, a dongle going offline.
    a1.sendFrames(Array.from({ length: 50 }, (_, i) => numberedFrame('can0', 0x100, i)));
    const bs = fakeBusState('error-passive', { tec: 130, load: 0.3, load_peak_1m: 0.4, load_history: [0.3], frame_rate: 50 });
    a1.sendEvent(1, 'bus_state', { ...bs });
    await c.waitFor((evs) => evs.some((e) => e.event === 'bus_state' && e.json.dongle === 'd1' && e.json.state === 'error-passive'), 10_000, 'd1 error-passive');
    const cmd = await b.admin.post('/api/v1/dongles/d1/commands', { type: 'send_frame', bus: 'can0', id: '0x123', data_hex: '01' });
    assert.equal(cmd.status, 202, JSON.stringify(cmd.body));
    await c.waitFor((evs) => evs.some((e) => e.event === 'command_status' && e.json.dongle === 'd1' && e.json.command_id === cmd.body.command_id), 10_000, 'the command status');
    // A status the agent reports for a command it was never given is not shown (it names no command), while a
    // real one sent after it is.
    a1.sendEvent(2, 'command_status', { ...commandStatusData('no-such-command', 'send_frame', 'failed', 'x') });
    a1.sendEvent(3, 'command_status', { ...commandStatusData(String(cmd.body.command_id), 'send_frame', 'delivered') });
    await c.waitFor(
      (evs) => evs.some((e) => e.event === 'command_status' && e.json.command_id === cmd.body.command_id && e.json.status === 'delivered'),
      10_000,
      "the agent's delivered",
    );
    assert.ok(!c.events.some((e) => e.event === 'command_status' && e.json.command_id === 'no-such-command'), 'the unknown command is not shown');
    await a2.close();
    await c.waitFor((evs) => evs.some((e) => e.event === 'presence' && e.json.dongle === 'd2' && e.json.state === 'offline'), 10_000, 'd2 offline');
    await c.waitFor((evs) => evs.some((e) => e.event === 'group_state' && e.json.group === 'g1' && e.json.mode === 'degraded'), 10_000, 'g1 degraded');
    await b.admin.register('d4');
    await c.waitFor((evs) => evs.some((e) => e.event === 'presence' && e.json.dongle === 'd4' && e.json.state === 'offline'), 10_000, 'd4 registered');
    assert.equal((await b.admin.del('/api/v1/groups/g1')).status, 200);
    await c.waitFor((evs) => evs.some((e) => e.event === 'log' && e.json.code === 'group_removed'), 10_000, 'g1 removed');
    assert.equal((await b.admin.del('/api/v1/dongles/d3')).status, 200);
    await c.waitFor((evs) => evs.some((e) => e.event === 'log' && e.json.code === 'dongle_removed' && e.json.dongle === 'd3'), 10_000, 'd3 removed');
    assert.equal(c.ofType('can_frame').length, 0, 'never a frame on the fleet stream');
    assert.ok(
      c.events.slice(end + 1).every((e) => e.id !== undefined),
      'live events carry ids',
    );

    // Resume: a clean resume continues without a snapshot…
    const last = c.events.filter((e) => e.id !== undefined).at(-1)!.id!;
    c.close();
    const r = await SseClient.connect(b.base + FLEET, { Authorization: `Bearer ${viewer}`, 'Last-Event-ID': last });
    clients.push(r);
    await b.admin.register('d5');
    await r.waitFor((evs) => evs.some((e) => e.event === 'presence' && e.json.dongle === 'd5'), 10_000, 'd5 after the resume');
    assert.ok(!snapshotDone(r.events), 'no snapshot on a clean resume');
    assert.equal(r.ofType('stream_reset').length, 0);
    // …and a resume that cannot be honoured gets stream_reset, then the snapshot (the current state, d3 gone).
    const x = await SseClient.connect(b.base + FLEET, { Authorization: `Bearer ${viewer}`, 'Last-Event-ID': '999999999999999' });
    clients.push(x);
    await x.waitFor(snapshotDone, 10_000, 'the snapshot after a reset');
    assert.equal(x.events[0]!.event, 'stream_reset');
    // Without an id: a client cut during the snapshot resumes from where it was and gets it all again, never a
    // clean resume from the reset's position that would skip the rest of the snapshot.
    assert.equal(x.events[0]!.id, undefined);
    const snapshotEnd = x.events.findIndex((e) => e.event === 'log' && e.json.code === 'fleet_snapshot');
    assert.ok(snapshotEnd > 0 && x.events.slice(0, snapshotEnd + 1).every((e) => e.id === undefined), 'the reset and the snapshot carry no position');
    const names = x
      .ofType('presence')
      .map((e) => e.json.dongle)
      .sort();
    assert.deepEqual(names, ['d1', 'd2', 'd4', 'd5']);
    assert.equal(x.ofType('group_state').length, 0, 'the deleted group is not in the snapshot');
  } finally {
    for (const c of clients) c.close();
    for (const a of agents) await a.close();
    await b.proc.stop();
  }
});

test('fleet stream: --fleet-max-clients caps concurrent clients (503 with the reason and Retry-After, counted); a client leaving frees its place', async () => {
  const b = await startBridgeProcess(['--fleet-max-clients', '2']);
  const clients: SseClient[] = [];
  const metric = async (name: string): Promise<number> => {
    const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(await (await fetch(b.base + '/metrics')).text());
    return m ? Number(m[1]) : NaN;
  };
  try {
    await b.admin.register('c1');
    const auth = { Authorization: `Bearer ${String((await b.admin.post('/api/v1/viewer-tokens')).body.token)}` };
    for (let i = 0; i < 2; i++) {
      const c = await SseClient.connect(b.base + FLEET, auth);
      clients.push(c);
      assert.equal(c.status, 200);
      await c.waitFor(snapshotDone, 10_000, `client ${i + 1}'s snapshot`);
    }
    assert.equal(await metric('canrelay_bridge_fleet_clients'), 2);
    const r = await fetch(b.base + FLEET, { headers: auth });
    assert.equal(r.status, 503);
    assert.equal(r.headers.get('retry-after'), '10');
    const body = (await r.json()) as { error: string };
    assert.match(body.error, /fleet stream is full: 2 clients are connected.*--fleet-max-clients/);
    assert.equal(await metric('canrelay_bridge_fleet_clients_refused_total'), 1);
    // The admin token is no exception, and the cap is the fleet stream's alone: consoles still open.
    assert.equal((await fetch(b.base + FLEET, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } })).status, 503);
    assert.equal(await metric('canrelay_bridge_fleet_clients_refused_total'), 2);
    const console1 = await SseClient.connect(b.base + '/api/v1/streams/dongles/c1/console', auth);
    clients.push(console1);
    assert.equal(console1.status, 200);
    // Still serving the two: a change reaches them.
    await b.admin.register('c2');
    for (const c of clients.slice(0, 2)) await c.waitFor((evs) => evs.some((e) => e.event === 'presence' && e.json.dongle === 'c2'), 10_000, 'c2 on a capped client');
    // One leaves: its place is free (the bridge sees the close), and a new client gets the snapshot.
    clients[0]!.close();
    await until(async () => (await metric('canrelay_bridge_fleet_clients')) === 1, 10_000, 'the place freed');
    const again = await SseClient.connect(b.base + FLEET, auth);
    clients.push(again);
    assert.equal(again.status, 200);
    await again.waitFor(snapshotDone, 10_000, 'the snapshot of the client that took the freed place');
    assert.equal(await metric('canrelay_bridge_fleet_clients_refused_total'), 2);
  } finally {
    for (const c of clients) c.close();
    await b.proc.stop();
  }
});

test('consoles: --console-max-clients caps the clients of every stream together (fleet included): 503 saying which flag; a place frees when one leaves', async () => {
  const b = await startBridgeProcess(['--console-max-clients', '2']);
  const clients: SseClient[] = [];
  try {
    await b.admin.register('m1');
    const auth = { Authorization: `Bearer ${String((await b.admin.post('/api/v1/viewer-tokens')).body.token)}` };
    clients.push(await SseClient.connect(b.base + '/api/v1/streams/dongles/m1/console', auth));
    clients.push(await SseClient.connect(b.base + FLEET, auth));
    assert.deepEqual(
      clients.map((c) => c.status),
      [200, 200],
    );
    for (const path of ['/api/v1/streams/dongles/m1/console', FLEET]) {
      const r = await fetch(b.base + path, { headers: auth });
      assert.equal(r.status, 503, path);
      assert.equal(r.headers.get('retry-after'), '10');
      assert.match(((await r.json()) as { error: string }).error, /the consoles are full: 2 clients are connected \(the bridge's --console-max-clients\)/);
    }
    const text = async (): Promise<string> => (await fetch(b.base + '/metrics')).text();
    assert.match(await text(), /^canrelay_bridge_console_clients_refused_total 2$/m);
    assert.match(await text(), /^canrelay_bridge_fleet_clients_refused_total 0$/m, 'refused by the console cap, not the fleet cap');
    clients.shift()!.close();
    await until(async () => /^canrelay_bridge_console_clients 1$/m.test(await text()), 10_000, 'the place freed');
    const again = await SseClient.connect(b.base + '/api/v1/streams/dongles/m1/console', auth);
    clients.push(again);
    assert.equal(again.status, 200);
  } finally {
    for (const c of clients) c.close();
    await b.proc.stop();
  }
});
