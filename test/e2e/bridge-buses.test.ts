/**
 * Which buses the bridge relays, with fake agents against the real bridge process: a dongle has at most
 * MAX_BUSES_PER_DONGLE buses (an agent naming more is refused, and the bridge and the peer live on), one
 * origin's frames on many buses reach the peer in DOWN batches it can decode, and with a bus map only the
 * buses it names are relayed.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CanFrame } from '../../core/can/frame.js';
import { MAX_BUSES_PER_DONGLE } from '../../core/names.js';
import { CLOSE } from '../../core/uplink/messages.js';
import type { StartedBridge } from '../helpers/bridge-process.js';
import { relaySuite } from '../helpers/relay-suite.js';
import { type FakeAgent, frameNumber, numberedFrame } from '../helpers/fake-agent.js';
import { getJson, metricValue } from '../helpers/sse-client.js';

const { bridge, agent, reconnect: again } = relaySuite();
const numbers = (a: FakeAgent): number[] => a.applied.map((r) => frameNumber(r.frame));
const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);
/** One frame on each of `n` buses named `<prefix><i>`, numbered from `first`, received `ageMs` ago. */
function onBuses(prefix: string, n: number, first: number, ageMs = 0): CanFrame[] {
  return range(0, n).map((i) => ({ ...numberedFrame(`${prefix}${i}`, 0x100, first + i), tsUs: (Date.now() - ageMs) * 1000 }));
}
async function healthy(b: StartedBridge): Promise<void> {
  assert.equal(b.proc.exitCode, null, `the bridge is running (stderr: ${b.proc.stderr.slice(-2000)})`);
  assert.equal((await getJson(b.base + '/healthz')).status, 200);
}

test('an agent whose UP batches name more than a dongle’s buses is refused (4400, bad_batch); the bridge lives on and the peer is welcomed', async () => {
  // The attack of the review: UP batches of 200 buses each, partly aged, while B is offline. Merged into one
  // DOWN batch of 400 names they were corrupt bytes: B refused them (4400), and once the older frames aged
  // out the bridge failed to re-encode what was left: B was refused at every reconnect, or the bridge exited
  // (from its sweep timer, or the setImmediate that sends relayed frames).
  const b = await bridge(['--backlog-max-age-ms', '3000']);
  const ta = await b.admin.register('bx-a');
  const tb = await b.admin.register('bx-b');
  await b.admin.group('bx', 'bx-a', 'bx-b');
  const a = await agent(b.base, { dongle: 'bx-a', token: ta });
  a.sendFrames(onBuses('x', 200, 0, 2000));
  a.sendFrames(onBuses('y', 200, 200));
  await a.waitFor(() => a.closeCode !== undefined || a.ackedUp >= 2, 5000, 'A refused');
  const bb = await agent(b.base, { dongle: 'bx-b', token: tb });
  await new Promise((r) => setTimeout(r, 1500)); // the older half past the age limit, the newer not yet
  // B comes back (as it does after refusing a batch) and is welcomed; the bridge is still there.
  const b2 = await again(bb);
  assert.ok(b2.welcome, 'B is welcomed again');
  await new Promise((r) => setTimeout(r, 300));
  await healthy(b);
  assert.equal(b2.closeCode, undefined, `B stays connected (${b2.closeReason})`);
  assert.deepEqual([...bb.badDown, ...b2.badDown], [], 'B was never sent a batch it could not decode');
  assert.equal(bb.applied.length + b2.applied.length, 0, 'nothing of the refused batches reached B');
  assert.equal(a.closeCode, CLOSE.PROTOCOL, 'A was refused');
  const err = a.ofType('error')[0];
  assert.equal(err?.code, 'bad_batch');
  assert.match(err?.message ?? '', new RegExp(`names 200 buses; a dongle has at most ${MAX_BUSES_PER_DONGLE}`));
  const a2 = await again(a);
  a2.sendFrames([numberedFrame('can0', 0x100, 1000)]);
  await b2.waitFor(() => b2.applied.length >= 1, 5000, 'a frame relayed after the refusal');
  assert.deepEqual(numbers(b2), [1000]);
  assert.equal(metricValue((await getJson(b.base + '/metrics')).text, 'canrelay_bridge_rejected_messages_total', { reason: 'bad_batch' }), 1);
  await healthy(b);
});

test('a connection whose UP batches together name more than a dongle’s buses is refused at the batch that crosses the limit', async () => {
  const b = await bridge();
  const ta = await b.admin.register('by-a');
  const tb = await b.admin.register('by-b');
  await b.admin.group('by', 'by-a', 'by-b');
  const a = await agent(b.base, { dongle: 'by-a', token: ta });
  const bb = await agent(b.base, { dongle: 'by-b', token: tb });
  a.sendFrames(onBuses('p', 40, 0));
  a.sendFrames(onBuses('p', 40, 40)); // the same 40 buses again: fine
  a.sendFrames(onBuses('q', MAX_BUSES_PER_DONGLE - 40 + 1, 80)); // one bus too many
  await a.waitFor(() => a.closeCode !== undefined, 5000, 'A refused');
  assert.equal(a.closeCode, CLOSE.PROTOCOL);
  assert.match(a.ofType('error')[0]?.message ?? '', new RegExp(`name ${MAX_BUSES_PER_DONGLE + 1} different buses`));
  await bb.waitFor(() => bb.applied.length >= 80, 5000, 'the two batches before it');
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(numbers(bb), range(0, 80), 'the refused batch is not relayed');
  await healthy(b);
});

test('one origin’s frames on 300 buses, sent over 5 connections while the peer was offline, reach it in DOWN batches it can decode, in order', async () => {
  const b = await bridge(['--backlog-max-age-ms', '60000']);
  const ta = await b.admin.register('bz-a');
  const tb = await b.admin.register('bz-b');
  await b.admin.group('bz', 'bz-a', 'bz-b');
  let a = await agent(b.base, { dongle: 'bz-a', token: ta });
  for (let k = 0; k < 5; k++) {
    if (k > 0) a = await again(a);
    const batch = a.sendFrames(onBuses(`k${k}b`, 60, k * 60));
    await a.waitFor(() => a.ackedUp >= batch, 5000, `batch ${batch} taken`);
  }
  const bb = await agent(b.base, { dongle: 'bz-b', token: tb });
  await bb.waitFor(() => bb.applied.length >= 300 || bb.closeCode !== undefined, 10_000, '300 frames at B');
  assert.deepEqual(bb.badDown, [], 'every DOWN batch decoded');
  assert.deepEqual(numbers(bb), range(0, 300));
  assert.deepEqual(
    bb.applied.map((r) => r.frame.bus),
    range(0, 5).flatMap((k) => range(0, 60).map((i) => `k${k}b${i}`)),
  );
  for (const d of bb.downBatches) assert.ok(new Set(d.frames.map((f) => f.frame.bus)).size <= MAX_BUSES_PER_DONGLE, 'a DOWN batch names at most a dongle’s buses');
  await healthy(b);
});

test('with a bus map only the buses it names are relayed, each way: a frame on another bus never lands on a mapped one, and is counted as not_mapped', async () => {
  // The README's own example, {"can0": "can1"}, between two gateways with can0 and can1 each. Before,
  // A/can1 (not in the map) went to B/can1 under its own name, mixed with A/can0's frames mapped there
  // (and B's sequence check mixed their numbers); B/can0 likewise landed on A/can0.
  const b = await bridge();
  const ta = await b.admin.register('bm-a');
  const tb = await b.admin.register('bm-b');
  await b.admin.group('bm', 'bm-a', 'bm-b', { can0: 'can1' });
  const a = await agent(b.base, { dongle: 'bm-a', token: ta, buses: ['can0', 'can1'] });
  const bb = await agent(b.base, { dongle: 'bm-b', token: tb, buses: ['can0', 'can1'] });
  // A: 10 on can0 (mapped to B/can1), 7 on can1 (not in the map), interleaved.
  a.sendFrames([
    ...range(0, 5).map((n) => numberedFrame('can0', 0x100, n)),
    ...range(100, 107).map((n) => numberedFrame('can1', 0x200, n)),
    ...range(5, 10).map((n) => numberedFrame('can0', 0x100, n)),
  ]);
  // B: 4 on can1 (the map's target: back to A/can0), 3 on can0 (not in the map either way).
  bb.sendFrames([...range(0, 4).map((n) => numberedFrame('can1', 0x300, n)), ...range(200, 203).map((n) => numberedFrame('can0', 0x400, n))]);
  await bb.waitFor(() => bb.applied.length >= 10, 5000, "A/can0's frames at B");
  await a.waitFor(() => a.applied.length >= 4, 5000, "B/can1's frames at A");
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(
    bb.applied.map((r) => [frameNumber(r.frame), r.frame.bus]),
    range(0, 10).map((n) => [n, 'can1']),
    'B/can1 gets A/can0 and nothing of A/can1',
  );
  assert.deepEqual(
    a.applied.map((r) => [frameNumber(r.frame), r.frame.bus]),
    range(0, 4).map((n) => [n, 'can0']),
    'A/can0 gets B/can1 and nothing of B/can0',
  );
  const m = (await getJson(b.base + '/metrics')).text;
  assert.equal(metricValue(m, 'canrelay_bridge_frames_dropped_total', { group: 'bm', side: 'b', reason: 'not_mapped' }), 7, "A/can1's frames, owed to side b");
  assert.equal(metricValue(m, 'canrelay_bridge_frames_dropped_total', { group: 'bm', side: 'a', reason: 'not_mapped' }), 3, "B/can0's frames, owed to side a");
  assert.equal(metricValue(m, 'canrelay_bridge_frames_relayed_total', { group: 'bm', direction: 'a_to_b' }), 10);
  assert.equal(metricValue(m, 'canrelay_bridge_frames_relayed_total', { group: 'bm', direction: 'b_to_a' }), 4);
  const st = await b.admin.get('/api/v1/groups/bm');
  assert.equal(st.body.dropped, 0, "group_state's dropped counts frames lost, not those the map leaves out");
  // Without a bus map every bus relays under its own name.
  await b.admin.put('/api/v1/groups/bm', { sides: { a: 'bm-a', b: 'bm-b' }, bus_map: {} });
  a.sendFrames([numberedFrame('can1', 0x200, 300)]);
  await bb.waitFor(() => bb.applied.length >= 11, 5000, 'an unmapped group relays every bus');
  assert.deepEqual([frameNumber(bb.applied[10]!.frame), bb.applied[10]!.frame.bus], [300, 'can1']);
});
