/**
 * The bridge with real agents: real processes on loopback, real SQLite, replay and simulated sources.
 * Relay in order both ways, an offline side's backlog within and beyond its bound, a bridge restart with
 * the outbox draining exactly once, a command through every status (and one that ends `failed`), and a
 * refused token.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { cleanupAfter } from '../helpers/cleanup.js';
import { startBridgeProcess, type StartedBridge } from '../helpers/bridge-process.js';
import { startAgentProcess, tempDir, writeCandumpLog, type StartedAgent } from '../helpers/processes.js';
import { until } from '../helpers/until.js';
import { getJson, metricValue, SseClient } from '../helpers/sse-client.js';

const { track, client } = cleanupAfter();

const metrics = async (base: string): Promise<string> => (await getJson(base + '/metrics')).text;
const frames = async (a: StartedAgent, bus: string, dir: 'rx' | 'tx'): Promise<number> =>
  metricValue(await metrics(a.base), 'canrelay_can_frames_total', { bus, direction: dir }) ?? 0;
const uplink = async (a: StartedAgent, kind: string): Promise<number> => metricValue(await metrics(a.base), 'canrelay_uplink', { kind }) ?? NaN;

async function group(bridge: StartedBridge, gid: string, a: string, b: string, busMap?: Record<string, string>): Promise<[string, string]> {
  const ta = await bridge.admin.register(a);
  const tb = await bridge.admin.register(b);
  await bridge.admin.group(gid, a, b, busMap);
  return [ta, tb];
}

test('relay both ways with real agents: every frame transmitted at the other side, in order, counts equal', async () => {
  // Exact delivery is the point here, not the age rule (test/faults/relay.test.ts): on a loaded machine
  // B's burst may wait seconds for A to start, so the age limits are generous.
  const bridge = track(await startBridgeProcess(['--backlog-max-age-ms', '60000']));
  const [ta, tb] = await group(bridge, 'g1', 'e2e-a', 'e2e-b', { can0: 'can1' });
  const generous = ['--relay-max-age-ms', '60000'];
  const dir = tempDir('canrelay-e2e-');
  writeCandumpLog(join(dir, 'a.log'), 20_000, { bus: 'can0', ids: [0x100, 0x200, 0x18daf110 & 0x7ff] });
  writeCandumpLog(join(dir, 'b.log'), 5_000, { bus: 'can1', ids: [0x300] });
  // B first, so that nothing A sends finds B offline; each replays at full speed.
  const b = track(await startAgentProcess(['--replay', join(dir, 'b.log'), '--replay-speed', '0', '--bridge', bridge.base, '--token', tb, ...generous], { id: 'e2e-b' }));
  await b.proc.waitForLog((l) => l.msg === 'uplink connected');
  const a = track(await startAgentProcess(['--replay', join(dir, 'a.log'), '--replay-speed', '0', '--bridge', bridge.base, '--token', ta, ...generous], { id: 'e2e-a' }));
  await until(async () => (await frames(b, 'can1', 'tx')) >= 20_000 && (await frames(a, 'can0', 'tx')) >= 5_000, 60_000, 'both directions relayed');
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(await frames(b, 'can1', 'tx'), 20_000, 'A→B: every frame of A, transmitted once on the mapped bus');
  assert.equal(await frames(a, 'can0', 'tx'), 5_000, "B→A: every frame of B on the inverse-mapped bus, and none of A's own back (a loop would add A's 20,000)");
  for (const x of [a, b]) {
    for (const kind of ['relay_seq_gaps', 'relay_seq_duplicates', 'relay_seq_reordered']) assert.equal(await uplink(x, kind), 0, `${kind} at ${x === a ? 'A' : 'B'}`);
  }
  const m = await metrics(bridge.base);
  assert.equal(metricValue(m, 'canrelay_bridge_frames_relayed_total', { group: 'g1', direction: 'a_to_b' }), 20_000);
  assert.equal(metricValue(m, 'canrelay_bridge_frames_relayed_total', { group: 'g1', direction: 'b_to_a' }), 5_000);
  await a.proc.stop();
  await b.proc.stop();
  await bridge.proc.stop();
});

/** The indexes (test/helpers/processes.ts writeCandumpLog) of the frames an agent's console shows it transmitted, in order. */
const txIndexes = (c: SseClient): number[] =>
  c.events.filter((e) => e.event === 'can_frame' && e.json.direction === 'tx').map((e) => Number.parseInt(String(e.json.data_hex).replace(/ /g, ''), 16));
const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

test('an offline side: group_state shows the growing backlog, it drains on return; beyond the bound drops are counted', async () => {
  const bridge = track(await startBridgeProcess(['--backlog-max-frames', '4000', '--backlog-max-age-ms', '120000', '--group-state-interval', '1']));
  const [ta, tb] = await group(bridge, 'g2', 'off-a', 'off-b');
  const gc = await SseClient.connect(`${bridge.base}/api/v1/streams/groups/g2/console?access_token=${bridge.admin.token}`);
  // B's console shows every frame it transmits (unsampled, all kept): which of A's frames reached its bus.
  const consoleFlags = ['--console-max-rate', '1000000', '--history-events', '200000', '--history-seconds', '600'];
  const startB = async (): Promise<{ b: StartedAgent; bc: SseClient }> => {
    // B's own age limit applies when it transmits: as long as the bridge's, so the backlog is transmitted.
    const b = track(
      await startAgentProcess(['--sim', '--sim-rate', '1', '--bridge', bridge.base, '--token', tb, '--relay-max-age-ms', '120000', ...consoleFlags], { id: 'off-b' }),
    );
    await b.proc.waitForLog((l) => l.msg === 'uplink connected');
    return { b, bc: client(await SseClient.connect(`${b.url}?backlog=200000`)) };
  };
  let { b, bc } = await startB();
  // A replays numbered frames at 1,000 frames/s (each carries its index), more than the test lasts.
  const log = join(tempDir('canrelay-e2e-'), 'a.log');
  writeCandumpLog(log, 300_000, { ids: [0x100], stepUs: 1000 });
  const a = track(await startAgentProcess(['--replay', log, '--replay-speed', '1', '--bridge', bridge.base, '--token', ta, '--relay-max-age-ms', '120000'], { id: 'off-a' }));
  await until(async () => (await frames(b, 'can0', 'tx')) > 500, 20_000, 'relaying');

  // Where the first B stops: A frozen a moment, until B has transmitted and acknowledged everything the
  // bridge sent it (nothing in flight, nothing waiting) and its console shows every frame it transmitted.
  // Then `last` is the last frame on B's bus, and the bridge owes the next B exactly the frames after it.
  a.proc.child.kill('SIGSTOP');
  const bridgeFigure = async (name: string): Promise<number> => metricValue(await metrics(bridge.base), name, { group: 'g2', side: 'b' }) ?? NaN;
  await until(
    async () =>
      (await bridgeFigure('canrelay_bridge_in_flight_frames')) === 0 &&
      (await bridgeFigure('canrelay_bridge_backlog_frames')) === 0 &&
      txIndexes(bc).length === (await frames(b, 'can0', 'tx')),
    20_000,
    'everything relayed to the first B transmitted, acknowledged and on its console',
  );
  const first = txIndexes(bc);
  const last = first.at(-1)!;
  assert.deepEqual(first, range(0, last), "the first B transmitted A's frames from the first, in order, none missing");

  // Within the bound: B offline while A sends, then A frozen until the new B is connected, so the backlog
  // stays under its 4,000 frames however long B takes to start on a loaded machine (the replay catches up
  // at most 1 s, ~1,000 frames, when A resumes; by then B is online).
  await b.proc.stop('SIGKILL');
  a.proc.child.kill('SIGCONT');
  const state = async (): Promise<Record<string, unknown>> => (await bridge.admin.get('/api/v1/groups/g2')).body;
  const backlogB = async (): Promise<number> => ((await state()) as { sides: { b: { backlog: number } } }).sides.b.backlog;
  await until(async () => (await state()).offline_side === 'b', 10_000, 'B offline in the group state');
  const s1 = (await state()) as { mode: string; sides: { b: { online: boolean; backlog: number } } };
  assert.equal(s1.mode, 'degraded');
  assert.equal(s1.sides.b.online, false);
  await until(async () => (await backlogB()) > s1.sides.b.backlog + 100, 10_000, `backlog grows from ${s1.sides.b.backlog}`);
  a.proc.child.kill('SIGSTOP');
  await gc.waitFor((ev) => ev.some((e) => e.event === 'group_state' && e.json.offline_side === 'b'), 5000, 'group_state event with B offline');
  const waiting = await backlogB();
  assert.ok(waiting < 3000, `the backlog (${waiting}) is within the bound with room for A's catch-up`);
  ({ b, bc } = await startB());
  a.proc.child.kill('SIGCONT');
  await until(async () => ((await state()) as { sides: { b: { backlog: number } } }).sides.b.backlog < 200, 20_000, 'backlog drained');
  assert.ok((await frames(b, 'can0', 'tx')) >= waiting, 'the backlog was transmitted on return');
  // A fresh B cannot see a gap before its first frame (relay_seq_gaps below): what it transmitted shows
  // it. The new B starts at the frame after the first B's last, and goes on with every frame A has
  // received by now, each once, in order: the backlog was kept for it, none of it lost or sent twice.
  const received = await frames(a, 'can0', 'rx');
  await bc.waitFor(
    (ev) => ev.some((e) => e.event === 'can_frame' && e.json.direction === 'tx' && Number.parseInt(String(e.json.data_hex).replace(/ /g, ''), 16) >= received - 1),
    20_000,
    `frame ${received - 1} (A had received ${received}) on the new B`,
  );
  const second = txIndexes(bc);
  assert.equal(second[0], last + 1, `the new B starts with the frame after the first B's last (${last})`);
  assert.deepEqual(second, range(last + 1, second.at(-1)!), 'the new B transmitted every frame after it, in order, each once');
  assert.equal(await uplink(b, 'relay_seq_gaps'), 0, 'nothing lost within the bound');
  const dropped = (): Promise<number> =>
    metrics(bridge.base).then((m) => metricValue(m, 'canrelay_bridge_frames_dropped_total', { group: 'g2', side: 'b', reason: 'backlog_full' }) ?? 0);
  assert.equal(await dropped(), 0);

  // Beyond the bound: ~6 s offline is ~6,000 frames for a 4,000-frame backlog. B freezes first, so that
  // batches it never acknowledged are resent to the new B before what survived the drops: the new
  // process then has a frame before the gap to see it from (a fresh B cannot know what came before).
  b.proc.child.kill('SIGSTOP');
  await until(async () => ((await state()) as { sides: { b: { backlog: number } } }).sides.b.backlog > 100, 10_000, 'batches in flight to the frozen B');
  await b.proc.stop('SIGKILL');
  await until(async () => (await dropped()) > 1000, 20_000, 'drops beyond the bound');
  ({ b, bc } = await startB());
  await until(async () => ((await state()) as { sides: { b: { backlog: number } } }).sides.b.backlog < 200, 20_000, 'drained again');
  const gaps = await uplink(b, 'relay_seq_gaps');
  assert.ok(gaps > 0, 'the dropped frames show as sequence gaps at B');
  assert.ok(((await state()) as { dropped: number }).dropped >= (await dropped()), 'group_state counts the drops');
  gc.close();
  await a.proc.stop();
  await b.proc.stop();
  await bridge.proc.stop();
});

test('bridge restart: agents reconnect, the outbox drains, nothing twice', async () => {
  const first = track(await startBridgeProcess());
  const port = new URL(first.base).port;
  const [ta, tb] = await group(first, 'g3', 'rs-a', 'rs-b');
  const b = track(await startAgentProcess(['--sim', '--sim-rate', '1', '--bridge', first.base, '--token', tb], { id: 'rs-b' }));
  const a = track(await startAgentProcess(['--sim', '--sim-rate', '500', '--presence-interval', '1', '--bridge', first.base, '--token', ta], { id: 'rs-a' }));
  await a.proc.waitForLog((l) => l.msg === 'uplink connected');
  await until(async () => (await frames(b, 'can0', 'tx')) > 200, 20_000, 'relaying');

  // Every presence event A makes after this instant must reach the new bridge: none lost, none twice.
  const outageStart = new Date().toISOString();
  await first.proc.stop('SIGTERM');
  // Presence "seen" events (one a second) pile up in A's outbox.
  await until(async () => (await uplink(a, 'outbox_events')) >= 2, 20_000, 'events waiting in the outbox while the bridge is away');
  const second = track(await startBridgeProcess(['--listen', `127.0.0.1:${port}`], { db: first.db }));
  await until(async () => (await uplink(a, 'connects')) >= 2 && (await uplink(b, 'connects')) >= 2, 60_000, 'both agents reconnect');
  await until(async () => (await uplink(a, 'outbox_events')) === 0, 20_000, 'the outbox drains');
  const txBefore = await frames(b, 'can0', 'tx');
  await until(async () => (await frames(b, 'can0', 'tx')) > txBefore + 200, 20_000, 'relaying again');

  const c = await SseClient.connect(`${second.base}/api/v1/streams/dongles/rs-a/console?backlog=10000&access_token=${second.admin.token}`);
  // The dongle console also carries the bridge's own online/offline presences (bridge clock, never in
  // A's console): compare only A's periodic `seen` presences.
  const agentSeen = (e: { event: string; json: Record<string, unknown> }): boolean => e.event === 'presence' && e.json.state === 'seen';
  await c.waitFor((ev) => ev.filter(agentSeen).length >= 3, 10_000, 'presence events from the outage');
  const seen = c.events.filter(agentSeen).map((e) => String(e.json.ts));
  assert.equal(new Set(seen).size, seen.length, 'each mirrored event once');
  // None lost: A's own console (everything A published, in order) up to the newest one mirrored.
  // biome-ignore lint/complexity/useMathMinMax: ISO time strings, compared as strings
  const newest = seen.reduce((m, ts) => (ts > m ? ts : m), '');
  const own = await SseClient.connect(`${a.url}?backlog=10000`);
  await own.waitFor((ev) => ev.some((e) => e.event === 'presence' && String(e.json.ts) === newest), 20_000, "A's own console up to the newest mirrored presence");
  const expected = own.events
    .filter(agentSeen)
    .map((e) => String(e.json.ts))
    .filter((ts) => ts > outageStart && ts <= newest);
  own.close();
  assert.ok(expected.length >= 2, `presence events made during the outage: ${expected.length}`);
  const mirrored = new Set(seen);
  assert.deepEqual(
    expected.filter((ts) => !mirrored.has(ts)),
    [],
    'every presence event of A since the outage began is mirrored by the new bridge',
  );
  assert.equal(await uplink(b, 'relay_seq_duplicates'), 0, 'no frame transmitted twice');
  c.close();
  await a.proc.stop();
  await b.proc.stop();
  await second.proc.stop();
});

test('a command through every status with a real agent; a refused token is said plainly', async () => {
  const bridge = track(await startBridgeProcess());
  const token = await bridge.admin.register('cmd-a');
  const a = track(await startAgentProcess(['--sim', '--sim-rate', '10', '--bridge', bridge.base, '--token', token], { id: 'cmd-a' }));
  await a.proc.waitForLog((l) => l.msg === 'uplink connected');
  const local = await SseClient.connect(a.url);
  const r = await bridge.admin.post('/api/v1/dongles/cmd-a/commands', { type: 'send_frame', bus: 'can0', id: '0x7DF', data_hex: '02 01 0C' });
  assert.equal(r.status, 202);
  const id = String(r.body.command_id);
  await until(async () => (await bridge.admin.get(`/api/v1/commands/${id}`)).body.status === 'succeeded', 20_000, 'succeeded');
  const history = ((await bridge.admin.get(`/api/v1/commands/${id}`)).body.history as { status: string }[]).map((h) => h.status);
  assert.deepEqual(history, ['queued', 'sent', 'delivered', 'succeeded']);
  await local.waitFor((ev) => ev.some((e) => e.event === 'can_frame' && e.json.id === '0x7DF' && e.json.direction === 'tx'), 5000, 'tx on the local console');
  assert.deepEqual(
    local.ofType('command_status').map((e) => e.json.status),
    ['delivered', 'succeeded'],
    "the agent's own steps on its local console",
  );
  local.close();

  // A command the agent cannot carry out ends `failed`, with the agent's reason: the sim has no can9.
  const f = await bridge.admin.post('/api/v1/dongles/cmd-a/commands', { type: 'send_frame', bus: 'can9', id: '0x7DF', data_hex: '02 01 0C' });
  assert.equal(f.status, 202);
  const fid = String(f.body.command_id);
  const final = new Set(['succeeded', 'failed', 'timed_out']);
  await until(async () => final.has(String((await bridge.admin.get(`/api/v1/commands/${fid}`)).body.status)), 20_000, 'a final status');
  const failed = (await bridge.admin.get(`/api/v1/commands/${fid}`)).body as { status: string; history: { status: string; error?: string }[] };
  assert.equal(failed.status, 'failed', JSON.stringify(failed));
  assert.deepEqual(
    failed.history.map((h) => h.status),
    ['queued', 'sent', 'delivered', 'failed'],
  );
  assert.match(String(failed.history.at(-1)!.error), /no bus "can9"/, 'the reason says which bus');
  assert.equal(await frames(a, 'can9', 'tx'), 0);

  // A dongle removed with a command pending: the command ends failed, saying why (never left queued).
  await bridge.admin.register('cmd-gone');
  const p = await bridge.admin.post('/api/v1/dongles/cmd-gone/commands', { type: 'send_frame', bus: 'can0', id: '0x7DF', data_hex: '02 01 0C' });
  assert.equal(p.status, 202);
  const pid = String(p.body.command_id);
  assert.equal((await bridge.admin.get(`/api/v1/commands/${pid}`)).body.status, 'queued');
  const del = await bridge.admin.call('DELETE', '/api/v1/dongles/cmd-gone');
  assert.ok(del.status === 200 || del.status === 204, `remove: ${del.status}`);
  const gone = (await bridge.admin.get(`/api/v1/commands/${pid}`)).body as { status: string; history: { status: string; error?: string }[] };
  assert.equal(gone.status, 'failed', JSON.stringify(gone));
  assert.match(String(gone.history.at(-1)!.error), /removed/);

  const bad = track(await startAgentProcess(['--sim', '--bridge', bridge.base, '--token', 'not-a-valid-token-at-all-0000'], { id: 'cmd-x' }));
  const refused = await bad.proc.waitForLog((l) => /refused the agent token/.test(l.msg));
  assert.equal(refused.status, 401);
  await a.proc.stop();
  await bad.proc.stop();
  await bridge.proc.stop();
});
