/**
 * The bridge's agent uplink with fake agents (real ws clients speaking the protocol) against the real
 * bridge process: hello/welcome, mirroring with dedupe, exactly-once UP batches across reconnects, the
 * group relay with bus mapping, backlog bounds by count and age, commands end to end, bad input, and
 * replacement of a connection.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeBatch, KIND_DOWN, KIND_UP, MAX_BATCH_BYTES } from '../../core/uplink/frame-codec.js';
import { MAX_TEXT_MESSAGE_BYTES, PROTOCOL_VERSION } from '../../core/uplink/messages.js';
import { ADMIN_TOKEN, type StartedBridge } from '../helpers/bridge-process.js';
import { relaySuite } from '../helpers/relay-suite.js';
import { type FakeAgent, frameNumber, numberedFrame, type FakeAgentOptions } from '../helpers/fake-agent.js';
import { getJson, metricValue, SseClient, type SseEvent } from '../helpers/sse-client.js';

const { bridge, agent, reconnect, track } = relaySuite();
async function consoleOf(b: StartedBridge, path: string, headers: Record<string, string> = {}): Promise<SseClient> {
  const c = await SseClient.connect(`${b.base}/api/v1/streams/${path}/console`, { Authorization: `Bearer ${ADMIN_TOKEN}`, ...headers });
  assert.equal(c.status, 200);
  track(() => c.close());
  return c;
}
async function metrics(b: StartedBridge): Promise<string> {
  return (await getJson(b.base + '/metrics')).text;
}
/** A pair of registered dongles in one group, both connected. */
async function pair(b: StartedBridge, gid: string, busMap?: Record<string, string>): Promise<{ a: FakeAgent; b: FakeAgent; tokens: [string, string] }> {
  const ta = await b.admin.register(`${gid}-a`);
  const tb = await b.admin.register(`${gid}-b`);
  await b.admin.group(gid, `${gid}-a`, `${gid}-b`, busMap);
  const a = await agent(b.base, { dongle: `${gid}-a`, token: ta, buses: ['can0', 'can5'] });
  const bb = await agent(b.base, { dongle: `${gid}-b`, token: tb, buses: ['can1'] });
  return { a, b: bb, tokens: [ta, tb] };
}
const numbers = (a: FakeAgent): number[] => a.applied.map((r) => frameNumber(r.frame));
const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);
const groupStates = (c: SseClient): Record<string, unknown>[] => c.ofType('group_state').map((e) => e.json);
const now = (): string => new Date().toISOString();
/** Polls the group's live state until `side` owes exactly `n` frames (e.g. 0: all acknowledged). */
async function waitBacklog(b: StartedBridge, gid: string, side: 'a' | 'b', n: number, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const st = await b.admin.get(`/api/v1/groups/${gid}`);
    const have = (st.body.sides as Record<string, { backlog: number }>)[side]!.backlog;
    if (have === n) return;
    if (Date.now() > deadline) throw new Error(`group ${gid} side ${side}: backlog ${have}, expected ${n}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

test('hello/welcome; mirrored events published once, deduplicated after a reconnect', async () => {
  const b = await bridge();
  const token = await b.admin.register('gw-m');
  const c = await consoleOf(b, 'dongles/gw-m');
  const a = await agent(b.base, { dongle: 'gw-m', token, run: 'run-mirror-1' });
  assert.equal(a.welcome!.protocol, PROTOCOL_VERSION);
  assert.equal(a.welcome!.dongle, 'gw-m');
  assert.equal(a.welcome!.event_ack, 0);
  await c.waitFor((ev) => ev.some((e) => e.event === 'presence' && e.json.state === 'online'), 5000, 'bridge-made online presence');

  for (let seq = 1; seq <= 3; seq++) a.sendEvent(seq, 'log', { ts: now(), level: 'info', message: `event ${seq}` });
  await a.waitFor(() => a.ackedEvents === 3, 5000, 'event_ack 3');
  await a.close();
  await c.waitFor((ev) => ev.some((e) => e.event === 'presence' && e.json.state === 'offline'), 5000, 'offline presence');

  const a2 = await reconnect(a);
  assert.equal(a2.welcome!.event_ack, 3, 'welcome carries the highest stored seq');
  // The outbox resends what it is not sure about, then goes on.
  for (const seq of [2, 3, 4]) a2.sendEvent(seq, 'log', { ts: now(), level: 'info', message: `event ${seq}` });
  a2.sendEvent(5, 'presence', { ts: now(), state: 'seen', buses: { can0: 'up' } });
  a2.sendEvent(4, 'log', { ts: now(), level: 'info', message: 'event 4 out of order' });
  await a2.waitFor(() => a2.ackedEvents === 5 && a2.ofType('event_ack').length === 5, 5000, 'acks');
  await c.waitFor((ev) => ev.some((e) => e.event === 'presence' && e.json.state === 'seen'), 5000, 'seen');
  const logs = c.ofType('log').map((e) => e.json);
  assert.deepEqual(
    logs.map((l) => l.message),
    ['event 1', 'event 2', 'event 3', 'event 4'],
    'each mirrored event exactly once, in order',
  );
  assert.ok(
    logs.every((l) => l.dongle === 'gw-m'),
    'mirrored events carry the dongle',
  );
  assert.equal(metricValue(await metrics(b), 'canrelay_bridge_duplicate_events_total', { dongle: 'gw-m' }), 3);

  // A well-formed envelope with bad event data is refused (counted), skipped and acknowledged.
  a2.sendEvent(6, 'log', { ts: now(), level: 'loud', message: 'x' });
  await a2.waitFor(() => a2.ackedEvents === 6, 5000, 'ack of the refused event');
  assert.equal(a2.closeCode, undefined, 'still connected');
  assert.equal(metricValue(await metrics(b), 'canrelay_bridge_rejected_messages_total', { reason: 'bad_event' }), 1);
});

test('relay A→B and B→A in order with bus mapping; loop guard; exactly once across a reconnect', async () => {
  const b = await bridge();
  const { a, b: bb } = await pair(b, 'r1', { can0: 'can1' });
  const gc = await consoleOf(b, 'groups/r1');
  const bc = await consoleOf(b, 'dongles/r1-b');

  // 3 batches × 1000 frames on can0, plus a tx frame (already transmitted at A: never relayed) and one on a bus the map leaves out (never relayed).
  for (let k = 0; k < 3; k++) a.sendFrames(range(k * 1000, (k + 1) * 1000).map((n) => numberedFrame('can0', 0x100 + (n % 7), n)));
  a.sendFrames([numberedFrame('can0', 0x7ff, 999_999, 'tx'), numberedFrame('can5', 0x200, 5000)]);
  await bb.waitFor(() => bb.applied.length >= 3000, 10_000, '3000 frames at B');
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(bb.applied.length, 3000, 'every rx frame of a mapped bus once; the tx frame is not relayed');
  assert.deepEqual(numbers(bb), range(0, 3000), 'in order');
  assert.ok(
    bb.applied.slice(0, 3000).every((r) => r.frame.bus === 'can1' && r.origin === 'r1-a'),
    'mapped a→b, origin marked',
  );
  assert.equal(
    metricValue(await metrics(b), 'canrelay_bridge_frames_dropped_total', { group: 'r1', side: 'b', reason: 'not_mapped' }),
    1,
    'the frame on can5, left out by the map, counted',
  );
  assert.deepEqual(
    bb.applied.slice(0, 3000).map((r) => r.seq),
    range(0, 3000),
    'the origin per-bus sequence numbers travel end to end',
  );
  const sentTs = bb.applied[0]!.frame.tsUs;
  assert.ok(Math.abs(sentTs - Date.now() * 1000) < 60e6, 'origin timestamps are kept');
  const downNumbers = bb.downBatches.map((x) => x.batch);
  for (let i = 1; i < downNumbers.length; i++) assert.ok(downNumbers[i]! > downNumbers[i - 1]!, 'DOWN batch numbers increase');

  // B→A uses the inverse map.
  bb.sendFrames(range(0, 50).map((n) => numberedFrame('can1', 0x300, n)));
  await a.waitFor(() => a.applied.length >= 50, 5000, '50 frames at A');
  assert.deepEqual(numbers(a), range(0, 50));
  assert.ok(a.applied.every((r) => r.frame.bus === 'can0' && r.origin === 'r1-b'));
  await a.waitFor(() => a.ackedUp >= 4, 5000, 'UP acks');

  // Exactly once across a reconnect: A resends its last two batches (acks lost), then sends a new one.
  const resend = [{ batch: 3, frames: range(2000, 3000).map((n, i) => ({ frame: numberedFrame('can0', 0x100 + (n % 7), n), seq: 2000 + i })) }];
  const a2 = await reconnect(a);
  for (const r of resend) a2.resendBatch(r.batch, r.frames);
  a2.sendFrames(range(6000, 6010).map((n) => numberedFrame('can0', 0x101, n)));
  await bb.waitFor(() => bb.applied.length >= 3010, 5000, 'the new batch at B');
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(numbers(bb).slice(3000), range(6000, 6010), 'the resent batch was not relayed twice');
  await a2.waitFor(() => a2.ackedUp >= 5, 5000, 'ack of the new batch');
  const m = await metrics(b);
  assert.equal(metricValue(m, 'canrelay_bridge_duplicate_batches_total', { dongle: 'r1-a' }), 1);
  assert.equal(metricValue(m, 'canrelay_bridge_frames_relayed_total', { group: 'r1', direction: 'a_to_b' }), 3010);
  assert.equal(metricValue(m, 'canrelay_bridge_frames_relayed_total', { group: 'r1', direction: 'b_to_a' }), 50);
  assert.equal(metricValue(m, 'canrelay_bridge_frames_loop_guarded_total'), 1);
  assert.equal(metricValue(m, 'canrelay_bridge_seq_gaps_total', { dongle: 'r1-a', bus: 'can0' }), 0, 'tracked, and no gap');
  assert.equal(metricValue(m, 'canrelay_bridge_frames_received_total', { dongle: 'r1-a' }), 3002 + 10);

  // A new agent run starts its numbering over: batch 1 of the new run is taken.
  const a3 = await reconnect(a2, { run: 'a-new-run-0001' });
  assert.equal(a3.state.nextBatch, 1);
  a3.sendFrames([numberedFrame('can0', 0x102, 7000)]);
  await bb.waitFor(() => numbers(bb).includes(7000), 5000, 'first frame of the new run');

  // The group console shows both sides' frames, each marked with its dongle, and group_state; B's own
  // console shows what was relayed to it as tx on its bus, and what it received as rx.
  await gc.waitFor((ev) => ev.some((e) => e.event === 'can_frame' && e.json.dongle === 'r1-b'), 5000, "B's frames on the group console");
  const frames = gc.ofType('can_frame').map((e) => e.json);
  assert.ok(frames.some((f) => f.dongle === 'r1-a' && f.direction === 'rx' && f.bus === 'can0'));
  assert.ok(
    frames.every((f) => f.direction === 'rx' || (f.dongle === 'r1-a' && f.id === '0x7FF')),
    'a relayed frame shows once, as its origin side received it (the only tx is the one A itself sent up as tx)',
  );
  assert.ok(groupStates(gc).some((s) => s.mode === 'relaying'));
  await bc.waitFor((ev) => ev.some((e) => e.event === 'can_frame' && e.json.direction === 'tx'), 5000, 'DOWN frames on B’s console');
  const bFrames = bc.ofType('can_frame').map((e) => e.json);
  assert.ok(bFrames.some((f) => f.direction === 'tx' && f.bus === 'can1' && f.dongle === 'r1-b'));
  assert.ok(bFrames.some((f) => f.direction === 'rx' && f.bus === 'can1' && f.dongle === 'r1-b'));
});

test('end-to-end sequence numbers: gaps, duplicates and reordering counted per dongle and bus', async () => {
  const b = await bridge();
  const token = await b.admin.register('gw-seq');
  const a = await agent(b.base, { dongle: 'gw-seq', token, run: 'run-seq-0001' });
  const f = (n: number, bus = 'can0'): ReturnType<typeof numberedFrame> => numberedFrame(bus, 0x10, n);
  let batch = 1;
  const send = (items: [number, number][], bus = 'can0'): void =>
    a.resendBatch(
      batch++,
      items.map(([n, seq]) => ({ frame: f(n, bus), seq })),
    );
  send([
    [0, 1],
    [1, 2],
    [2, 3],
  ]); // in order
  send([[3, 7]]); // 3 missing: a gap of 3
  send([[4, 7]]); // the same number again: a duplicate
  send([[5, 5]]); // a late one: reordered
  send([[6, 8]]); // back in order
  send([[7, 0xffffffff]], 'can1');
  send([[8, 0]], 'can1'); // wrap-around is a normal step
  await a.waitFor(() => a.ackedUp >= batch - 1, 5000, 'acks');
  const m = await metrics(b);
  const v = (name: string, bus = 'can0'): number | undefined => metricValue(m, `canrelay_bridge_seq_${name}_total`, { dongle: 'gw-seq', bus });
  assert.equal(v('gaps'), 3);
  assert.equal(v('duplicates'), 1);
  assert.equal(v('reordered'), 1);
  assert.equal(v('gaps', 'can1'), 0);
  // A new agent run starts its numbers over without counting a gap.
  const a2 = await reconnect(a, { run: 'run-seq-0002' });
  a2.resendBatch(1, [
    { frame: f(9), seq: 1 },
    { frame: f(10), seq: 2 },
  ]);
  await a2.waitFor(() => a2.ackedUp >= 1, 5000, 'ack');
  const m2 = await metrics(b);
  assert.equal(metricValue(m2, 'canrelay_bridge_seq_gaps_total', { dongle: 'gw-seq', bus: 'can0' }), 3);
  assert.equal(metricValue(m2, 'canrelay_bridge_seq_reordered_total', { dongle: 'gw-seq', bus: 'can0' }), 1);
});

test('backlog: B offline → group_state shows it growing → B back → drained in order; count bound drops the oldest', async () => {
  const b = await bridge(['--backlog-max-frames', '500', '--backlog-max-age-ms', '60000', '--group-state-interval', '1']);
  const { a, b: bb, tokens } = await pair(b, 'bk');
  const gc = await consoleOf(b, 'groups/bk');
  a.sendFrames(range(0, 10).map((n) => numberedFrame('can0', 0x10, n)));
  await bb.waitFor(() => bb.applied.length === 10, 5000, 'first 10');
  await gc.waitFor((ev) => ev.some((e) => e.event === 'group_state' && e.json.mode === 'relaying'), 5000, 'relaying');
  await waitBacklog(b, 'bk', 'b', 0); // B has acknowledged everything before it goes away
  await bb.close();
  await gc.waitFor((ev) => ev.some((e) => e.event === 'group_state' && e.json.offline_side === 'b' && e.json.mode === 'degraded'), 5000, 'B offline');

  a.sendFrames(range(10, 210).map((n) => numberedFrame('can0', 0x10, n)));
  await gc.waitFor((ev) => ev.some((e) => e.event === 'group_state' && (e.json.sides as Record<string, { backlog: number }>).b.backlog === 200), 5000, 'backlog 200');
  a.sendFrames(range(210, 410).map((n) => numberedFrame('can0', 0x10, n)));
  await gc.waitFor((ev) => ev.some((e) => e.event === 'group_state' && (e.json.sides as Record<string, { backlog: number }>).b.backlog === 400), 5000, 'backlog grows to 400');

  // Back within the bound: everything drains, in order, nothing lost.
  const b2 = await agent(b.base, { dongle: 'bk-b', token: tokens[1] });
  await b2.waitFor(() => b2.applied.length >= 400, 5000, '400 drained');
  assert.deepEqual(numbers(b2), range(10, 410));
  await gc.waitFor(
    (ev) => ev.some((e) => e.event === 'group_state' && e.json.mode === 'relaying' && (e.json.sides as Record<string, { backlog: number }>).b.backlog === 0),
    5000,
    'drained state',
  );

  // Beyond the bound: 800 frames for an offline B with room for 500 → the 300 oldest are dropped and counted.
  await waitBacklog(b, 'bk', 'b', 0);
  await b2.close();
  await gc.waitFor((ev) => ev.filter((e) => e.event === 'group_state' && e.json.offline_side === 'b').length >= 2, 5000, 'B offline again');
  a.sendFrames(range(1000, 1800).map((n) => numberedFrame('can0', 0x10, n)));
  await gc.waitFor(
    (ev) => ev.some((e) => e.event === 'group_state' && e.json.dropped === 300 && (e.json.sides as Record<string, { backlog: number }>).b.backlog === 500),
    5000,
    'dropped 300',
  );
  const b3 = await agent(b.base, { dongle: 'bk-b', token: tokens[1] });
  await b3.waitFor(() => b3.applied.length >= 500, 5000, '500 drained');
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(numbers(b3), range(1300, 1800), 'the newest 500, in order');
  const m = await metrics(b);
  assert.equal(metricValue(m, 'canrelay_bridge_frames_dropped_total', { group: 'bk', side: 'b', reason: 'backlog_full' }), 300);
  const state = await b.admin.get('/api/v1/groups/bk');
  assert.equal(state.body.dropped, 300);
  assert.equal(state.body.relayed_total, 10 + 400 + 500);
});

test('age bound: frames older than --backlog-max-age-ms are dropped and counted, never delivered', async () => {
  const b = await bridge(['--backlog-max-age-ms', '300', '--group-state-interval', '1']);
  const { a, b: bb, tokens } = await pair(b, 'age');
  await bb.close();
  const batch = a.sendFrames(range(0, 100).map((n) => numberedFrame('can0', 0x20, n)));
  await a.waitFor(() => a.ackedUp >= batch, 5000, 'the bridge took the batch (queued for B)');
  await waitBacklog(b, 'age', 'b', 0); // then aged out
  assert.equal((await b.admin.get('/api/v1/groups/age')).body.dropped, 100);
  const b2 = await agent(b.base, { dongle: 'age-b', token: tokens[1] });
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(b2.applied.length, 0, 'stale frames are never transmitted');
  a.sendFrames([numberedFrame('can0', 0x20, 42)]);
  await b2.waitFor(() => b2.applied.length === 1, 5000, 'fresh frames flow');
  assert.equal(frameNumber(b2.applied[0]!.frame), 42);
  assert.equal(metricValue(await metrics(b), 'canrelay_bridge_frames_dropped_total', { group: 'age', side: 'b', reason: 'too_old' }), 100);
});

test('age bound: frames stamped 30 s in the future (a clock stepped ahead) still age out of the backlog from their arrival', async () => {
  const b = await bridge(['--backlog-max-age-ms', '300', '--group-state-interval', '1']);
  const { a, b: bb, tokens } = await pair(b, 'ahead');
  await bb.close();
  const ahead = (Date.now() + 30_000) * 1000;
  const batch = a.sendFrames(range(0, 50).map((n) => ({ ...numberedFrame('can0', 0x20, n), tsUs: ahead + n })));
  await a.waitFor(() => a.ackedUp >= batch, 5000, 'the bridge took the batch (queued for B)');
  await waitBacklog(b, 'ahead', 'b', 0); // aged out 300 ms after arrival, not 30.3 s
  const b2 = await agent(b.base, { dongle: 'ahead-b', token: tokens[1] });
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(b2.applied.length, 0, 'never transmitted');
  assert.equal(metricValue(await metrics(b), 'canrelay_bridge_frames_dropped_total', { group: 'ahead', side: 'b', reason: 'too_old' }), 50);
});

test('the bus map of a group changed while frames wait for its side: they are dropped as group_changed, never sent to the old bus', async () => {
  const b = await bridge(['--backlog-max-age-ms', '60000', '--group-state-interval', '1']);
  const { a, b: bb, tokens } = await pair(b, 'remap', { can0: 'can1' });
  await bb.close();
  const batch = a.sendFrames(range(0, 40).map((n) => numberedFrame('can0', 0x20, n)));
  await a.waitFor(() => a.ackedUp >= batch, 5000, 'the bridge took the batch (queued for B, mapped to can1)');
  await waitBacklog(b, 'remap', 'b', 40);
  const groupMessages = (): number => a.messages.filter((m) => m.t === 'group').length;
  const before = groupMessages();
  const put = await b.admin.put('/api/v1/groups/remap', { sides: { a: 'remap-a', b: 'remap-b' }, bus_map: { can0: 'can2' } });
  assert.equal(put.status, 200, JSON.stringify(put.body));
  await waitBacklog(b, 'remap', 'b', 0);
  // A connected side is told the group again: what it holds for the old buses, it drops (agent-relay-ends.test.ts).
  await a.waitFor(() => groupMessages() > before, 5000, 'a group message for the new bus map');
  const told = a.messages.filter((m) => m.t === 'group').at(-1);
  assert.equal(told?.group, 'remap');
  assert.ok(told.relay_rev !== undefined && told.relay_rev !== a.welcome!.relay_rev, 'under a new relay revision');
  assert.equal(metricValue(await metrics(b), 'canrelay_bridge_frames_dropped_total', { group: 'remap', side: 'b', reason: 'group_changed' }), 40);
  const b2 = await agent(b.base, { dongle: 'remap-b', token: tokens[1] });
  a.sendFrames([numberedFrame('can0', 0x20, 99)]);
  await b2.waitFor(() => b2.applied.length >= 1, 5000, 'a frame sent after the change');
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(
    b2.applied.map((r) => [frameNumber(r.frame), r.frame.bus]),
    [[99, 'can2']],
    'only the new frame, on the newly mapped bus',
  );
});

test('unacknowledged DOWN batches are resent on reconnect with the same numbers (before the backlog)', async () => {
  const b = await bridge(['--backlog-max-age-ms', '60000']);
  const { a, b: bb, tokens } = await pair(b, 'ra');
  bb.autoAck = false;
  a.sendFrames(range(0, 20).map((n) => numberedFrame('can0', 0x30, n)));
  await bb.waitFor(() => bb.applied.length === 20, 5000, '20 at B');
  const firstBatch = bb.downBatches[0]!.batch;
  bb.kill();
  await new Promise((r) => setTimeout(r, 200));
  a.sendFrames(range(20, 30).map((n) => numberedFrame('can0', 0x30, n)));
  const b2 = await agent(b.base, { dongle: 'ra-b', token: tokens[1] });
  await b2.waitFor(() => b2.applied.length >= 30, 5000, 'resend + backlog');
  assert.deepEqual(numbers(b2), range(0, 30));
  assert.equal(b2.downBatches[0]!.batch, firstBatch, 'resent with its original batch number');
  await waitBacklog(b, 'ra', 'b', 0); // acknowledged: nothing owed any more
});

test('commands: queued → sent → delivered → succeeded on the dongle console and GET; timeout; offline stays queued', async () => {
  const b = await bridge(['--command-timeout', '30']);
  const token = await b.admin.register('gw-cmd');
  const c = await consoleOf(b, 'dongles/gw-cmd');
  const a = await agent(b.base, { dongle: 'gw-cmd', token });
  const r = await b.admin.post('/api/v1/dongles/gw-cmd/commands', { type: 'send_frame', bus: 'can0', id: '0x123', data_hex: '01 02 03' });
  assert.equal(r.status, 202);
  const cid = String(r.body.command_id);
  await a.waitFor(() => a.ofType('command').length === 1, 5000, 'command at the agent');
  const msg = a.ofType('command')[0]!;
  assert.equal(msg.command_id, cid);
  assert.deepEqual(msg.command, { type: 'send_frame', bus: 'can0', id: '0x123', data_hex: '01 02 03' });
  assert.ok(Date.parse(msg.expires_at) > Date.now() + 20_000, 'expires_at from the default timeout');

  a.sendEvent(1, 'command_status', { ts: now(), command_id: cid, type: 'send_frame', status: 'delivered' });
  a.sendEvent(2, 'command_status', { ts: now(), command_id: cid, type: 'send_frame', status: 'succeeded' });
  const statuses = (ev: SseEvent[]): string[] => ev.filter((e) => e.event === 'command_status' && e.json.command_id === cid).map((e) => String(e.json.status));
  await c.waitFor((ev) => statuses(ev).includes('succeeded'), 5000, 'succeeded on the console');
  assert.deepEqual(statuses(c.events), ['queued', 'sent', 'delivered', 'succeeded']);
  assert.ok(c.ofType('command_status').every((e) => e.json.dongle === 'gw-cmd'));
  const shown = await b.admin.get(`/api/v1/commands/${cid}`);
  assert.equal(shown.body.status, 'succeeded');
  assert.deepEqual(
    (shown.body.history as { status: string }[]).map((h) => h.status),
    ['queued', 'sent', 'delivered', 'succeeded'],
  );

  // A sent command the agent never reports times out after its timeout plus the report grace; the
  // agent's own final report, even later, replaces the timeout (it says what happened on the bus).
  const t = await b.admin.post('/api/v1/dongles/gw-cmd/commands', { type: 'send_frame', bus: 'can0', id: '0x124', timeout_s: 1 });
  const tid = String(t.body.command_id);
  await c.waitFor((ev) => ev.some((e) => e.event === 'command_status' && e.json.command_id === tid && e.json.status === 'timed_out'), 20_000, 'timed_out');
  const timed = await b.admin.get(`/api/v1/commands/${tid}`);
  assert.deepEqual(
    (timed.body.history as { status: string }[]).map((h) => h.status),
    ['queued', 'sent', 'timed_out'],
  );
  assert.match(String((timed.body.history as { error?: string }[])[2]!.error), /no report from the agent/);
  a.sendEvent(3, 'command_status', { ts: now(), command_id: tid, type: 'send_frame', status: 'succeeded' });
  await a.waitFor(() => a.ackedEvents === 3, 5000, 'ack');
  assert.equal((await b.admin.get(`/api/v1/commands/${tid}`)).body.status, 'succeeded', "the agent's late report replaces the timeout");
  a.sendEvent(4, 'command_status', { ts: now(), command_id: tid, type: 'send_frame', status: 'delivered' });
  await a.waitFor(() => a.ackedEvents === 4, 5000, 'ack');
  assert.equal((await b.admin.get(`/api/v1/commands/${tid}`)).body.status, 'succeeded', 'never backwards from a final report');

  // An offline dongle's command stays queued until it connects.
  const tokenOff = await b.admin.register('gw-off');
  const q = await b.admin.post('/api/v1/dongles/gw-off/commands', { type: 'send_frame', bus: 'can0', id: '0x1', data_hex: 'FF' });
  const qid = String(q.body.command_id);
  await new Promise((r) => setTimeout(r, 500));
  assert.equal((await b.admin.get(`/api/v1/commands/${qid}`)).body.status, 'queued');
  const off = await agent(b.base, { dongle: 'gw-off', token: tokenOff });
  await off.waitFor(() => off.ofType('command').some((m) => m.command_id === qid), 5000, 'queued command sent on connect');
  assert.equal((await b.admin.get(`/api/v1/commands/${qid}`)).body.status, 'sent');
  // … and an offline dongle's command that nobody picks up times out while queued.
  await off.close();
  const late = await b.admin.post('/api/v1/dongles/gw-off/commands', { type: 'send_frame', bus: 'can0', id: '0x2', timeout_s: 0.5 });
  const lid = String(late.body.command_id);
  const deadline = Date.now() + 5000;
  while ((await b.admin.get(`/api/v1/commands/${lid}`)).body.status !== 'timed_out') {
    assert.ok(Date.now() < deadline, 'queued command times out');
    await new Promise((r) => setTimeout(r, 100));
  }
  const m = await metrics(b);
  assert.ok(metricValue(m, 'canrelay_bridge_command_status_total', { status: 'timed_out' })! >= 2);
  assert.equal(metricValue(m, 'canrelay_bridge_command_status_total', { status: 'succeeded' }), 2, 'the first, and the late report');
});

test('bad input: malformed, oversized, unknown, out of place → error + close code + counted; the bridge lives on', async () => {
  const b = await bridge();
  const token = await b.admin.register('gw-bad');
  const raw = (opts: Partial<FakeAgentOptions> = {}): Promise<FakeAgent> => agent(b.base, { dongle: 'gw-bad', token, hello: false, ...opts });
  const errorCode = (a: FakeAgent): string | undefined => a.ofType('error')[0]?.code;

  const cases: { name: string; code: number; reason: string; run: (a: FakeAgent) => void | Promise<void>; hello?: boolean }[] = [
    { name: 'not JSON', code: 4400, reason: 'malformed', run: (a) => a.sendRaw('{nope') },
    { name: 'schema', code: 4400, reason: 'malformed', run: (a) => a.sendJson({ t: 'hello', protocol: 1 }) },
    { name: 'unknown t', code: 4400, reason: 'unknown_type', run: (a) => a.sendJson({ t: 'teleport' }) },
    { name: 'oversized text', code: 4413, reason: 'too_large', run: (a) => a.sendRaw(JSON.stringify({ t: 'event', pad: 'x'.repeat(MAX_TEXT_MESSAGE_BYTES) })) },
    { name: 'binary before hello', code: 4400, reason: 'out_of_place', run: (a) => a.sendRaw(encodeBatch({ kind: KIND_UP, batch: 1, frames: [] })) },
    { name: 'event before hello', code: 4400, reason: 'out_of_place', run: (a) => a.sendEvent(1, 'log', { ts: now(), level: 'info', message: 'x' }) },
    {
      name: 'DOWN from an agent',
      code: 4400,
      reason: 'out_of_place',
      hello: true,
      run: (a) => a.sendRaw(encodeBatch({ kind: KIND_DOWN, batch: 1, origin: 'x', frames: [{ frame: numberedFrame('can0', 1, 1), seq: 0 }] })),
    },
    {
      name: 'truncated batch',
      code: 4400,
      reason: 'bad_batch',
      hello: true,
      run: (a) => a.sendRaw(encodeBatch({ kind: KIND_UP, batch: 9, frames: [{ frame: numberedFrame('can0', 1, 1), seq: 0 }] }).subarray(0, 20)),
    },
    {
      name: 'hello twice',
      code: 4400,
      reason: 'out_of_place',
      hello: true,
      run: (a) => a.sendJson({ t: 'hello', protocol: PROTOCOL_VERSION, dongle: 'gw-bad', run: 'run-000001', version: 'x', buses: [] }),
    },
    {
      name: 'wrong dongle',
      code: 4401,
      reason: 'wrong_dongle',
      run: (a) => a.sendJson({ t: 'hello', protocol: PROTOCOL_VERSION, dongle: 'someone-else', run: 'run-000001', version: 'x', buses: [] }),
    },
    {
      name: 'protocol',
      code: 4400,
      reason: 'protocol_version',
      run: (a) => a.sendJson({ t: 'hello', protocol: 99, dongle: 'gw-bad', run: 'run-000001', version: 'x', buses: [] }),
    },
  ];
  for (const c of cases) {
    const a = await raw({ hello: c.hello ?? false });
    await c.run(a);
    assert.equal(await a.closed(), c.code, `${c.name}: close code`);
    assert.equal(errorCode(a), c.reason, `${c.name}: error message before the close`);
  }
  // A binary message over MAX_BATCH_BYTES is refused by ws itself (1009) before we can read it.
  const big = await raw({ hello: true });
  big.sendRaw(Buffer.alloc(MAX_BATCH_BYTES + 1));
  assert.equal(await big.closed(), 1009);

  const m = await metrics(b);
  const counted = (reason: string): number => metricValue(m, 'canrelay_bridge_rejected_messages_total', { reason }) ?? 0;
  assert.equal(counted('malformed'), 2);
  assert.equal(counted('unknown_type'), 1);
  assert.equal(counted('too_large'), 2);
  assert.equal(counted('out_of_place'), 4);
  assert.equal(counted('bad_batch'), 1);
  assert.equal(counted('wrong_dongle'), 1);
  assert.equal(counted('protocol_version'), 1);

  // Still serving: a good agent connects and is welcomed.
  const good = await agent(b.base, { dongle: 'gw-bad', token });
  assert.ok(good.welcome);
  // An ack for a DOWN batch never sent is counted and ignored, not fatal.
  good.ackDown(123);
  good.sendEvent(1, 'log', { ts: now(), level: 'info', message: 'after the bogus ack' });
  await good.waitFor(() => good.ackedEvents === 1, 5000, 'event ack after the bogus data_ack');
  assert.equal(good.closeCode, undefined);
  assert.equal(metricValue(await metrics(b), 'canrelay_bridge_rejected_messages_total', { reason: 'bad_ack' }), 1);
  assert.equal((await getJson(b.base + '/healthz')).body.status, 'ok');
});

test('heartbeat: a link that answers no ping is cut and the dongle goes offline', async () => {
  const b = await bridge(['--uplink-heartbeat-seconds', '0.5']);
  const token = await b.admin.register('gw-hb');
  const c = await consoleOf(b, 'dongles/gw-hb');
  const alive = await agent(b.base, { dongle: 'gw-hb', token });
  await new Promise((r) => setTimeout(r, 1500)); // 3 heartbeats: a peer that answers stays
  assert.equal(alive.closeCode, undefined);
  await alive.close();
  await c.waitFor((ev) => ev.filter((e) => e.event === 'presence').length >= 2, 5000, 'offline after a clean close');

  const dead = await agent(b.base, { dongle: 'gw-hb', token, autoPong: false });
  const code = await Promise.race([dead.closed(), new Promise((r) => setTimeout(() => r('still open'), 5000))]);
  assert.equal(code, 1006, 'terminated (no close handshake) after 2.5 silent heartbeats');
  await c.waitFor((ev) => ev.filter((e) => e.event === 'presence' && e.json.state === 'offline').length >= 2, 5000, 'offline presence');
  assert.equal((await b.admin.get('/api/v1/dongles/gw-hb')).body.online, false);
});

test('a second connection with the same token is refused while the first is healthy; a silent first is taken over', async () => {
  const b = await bridge(['--uplink-heartbeat-seconds', '0.5']);
  const token = await b.admin.register('gw-r');
  const c = await consoleOf(b, 'dongles/gw-r');
  const first = await agent(b.base, { dongle: 'gw-r', token, run: 'run-replace-1' });
  await assert.rejects(agent(b.base, { dongle: 'gw-r', token, run: 'run-replace-2' }), /no welcome: closed 4409/, 'CLOSE.DUPLICATE_AGENT');
  assert.equal(first.closeCode, undefined, 'the healthy link is kept');
  await c.waitFor((ev) => ev.some((e) => e.event === 'log' && e.json.code === 'duplicate_agent'), 5000, 'duplicate_agent log');
  assert.equal(metricValue(await metrics(b), 'canrelay_bridge_rejected_messages_total', { reason: 'duplicate_agent' }), 1);

  // The first stops answering pings (its TCP stays open): a newcomer takes over once it has missed its heartbeats.
  await first.close();
  const stale = await agent(b.base, { dongle: 'gw-r', token, run: 'run-replace-1', autoPong: false });
  let second: FakeAgent | undefined;
  for (let i = 0; i < 40 && second === undefined; i++) {
    second = await agent(b.base, { dongle: 'gw-r', token, run: 'run-replace-1' }).catch(() => undefined);
    if (second === undefined) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(second, 'the newcomer got the link');
  await stale.closed();
  await new Promise((r) => setTimeout(r, 300));
  const presence = c.ofType('presence').map((e) => e.json.state);
  assert.deepEqual(presence.slice(-3), ['offline', 'online', 'online'], 'the replaced link closing does not mark the dongle offline');
  assert.equal(metricValue(await metrics(b), 'canrelay_bridge_agent_takeovers_total'), 1);
  second.sendEvent(1, 'log', { ts: now(), level: 'info', message: 'via the second link' });
  await second.waitFor(() => second.ackedEvents === 1, 5000, 'ack on the new link');
  assert.equal(metricValue(await metrics(b), 'canrelay_bridge_agents_connected'), 1);
});
