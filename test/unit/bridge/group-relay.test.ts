/**
 * GroupRelay (cloud-bridge/group-relay.ts) without processes: fake links record the DOWN batches they get
 * (decoded with the real codec), a fake store holds the groups, a fake console records group_state. The
 * relay's own rules: unsampled and in order to the other side, the bus map, the loop guard, the backlog of
 * an offline side, resend after a reconnect, acks, backpressure, group changes.
 */
import assert from 'node:assert/strict';
import { mock, test } from 'node:test';
import { pino } from 'pino';
import type { BridgeConsoles } from '../../../cloud-bridge/consoles.js';
import { GroupRelay, type RelayLink } from '../../../cloud-bridge/group-relay.js';
import type { StateStore } from '../../../cloud-bridge/state-store.js';
import type { GroupRow } from '../../../cloud-bridge/store.js';
import type { GroupStateData } from '../../../core/console/events.js';
import type { CanFrame } from '../../../core/can/frame.js';
import { decodeBatch, type Batch, type SequencedFrame } from '../../../core/uplink/frame-codec.js';
import { testFrame } from '../../helpers/can-frames.js';

class FakeLink implements RelayLink {
  ready = true;
  open = true;
  readonly batches: Batch[] = [];
  readonly groups: (string | null)[] = [];
  /** The relay revision of each notice, in order (undefined with no group). */
  readonly revs: (string | undefined)[] = [];
  canSend(): boolean {
    return this.open;
  }
  sendBinary(buf: Buffer): void {
    this.batches.push(decodeBatch(buf));
  }
  notifyGroup(group: string | null, rev?: string): void {
    this.groups.push(group);
    this.revs.push(rev);
  }
  frames(): { bus: string; seq: number; origin: string }[] {
    return this.batches.flatMap((b) => b.frames.map((f) => ({ bus: f.frame.bus, seq: f.seq, origin: b.origin ?? '' })));
  }
  lastBatch(): number {
    return this.batches.at(-1)!.batch;
  }
}

function row(id: string, a: string, b: string, busMap: Record<string, string> = {}): GroupRow {
  return { id, side_a: a, side_b: b, bus_map: JSON.stringify(busMap), created_at: 't', updated_at: 't', dropped: 0, relayed_total: 0 };
}

function setup(rows: GroupRow[], opts: { backlogMaxFrames?: number; groupStateIntervalMs?: number } = {}) {
  const states: GroupStateData[] = [];
  const store = { groups: () => rows, saveGroupCounters: () => undefined, saveAllGroupCounters: () => undefined } as unknown as StateStore;
  const consoles = { groupLog: () => undefined, groupState: (_g: string, s: GroupStateData) => states.push(s), downFrames: () => undefined } as unknown as BridgeConsoles;
  const relay = new GroupRelay(
    { backlogMaxFrames: opts.backlogMaxFrames ?? 1000, backlogMaxAgeMs: 60_000, groupStateIntervalMs: opts.groupStateIntervalMs ?? 3_600_000 },
    store,
    consoles,
    pino({ level: 'silent' }),
  );
  relay.load();
  return { relay, states };
}

function frames(from: number, n: number, over: Partial<CanFrame> = {}): SequencedFrame[] {
  return Array.from({ length: n }, (_, i) => ({
    seq: from + i,
    frame: testFrame({ data: Uint8Array.of(i & 0xff), ...over }),
  }));
}

/** relay() sends at the end of the event-loop turn. */
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

test('group relay: every frame of one side goes to the other, in order, on the mapped bus; nothing goes back to its origin', async () => {
  const { relay } = setup([row('g', 'a1', 'b1', { can0: 'can1' })]);
  const a = new FakeLink();
  const b = new FakeLink();
  relay.attach('a1', a);
  relay.attach('b1', b);
  relay.relay('a1', frames(1, 5));
  relay.relay('a1', frames(6, 5));
  relay.relay('b1', frames(1, 3, { bus: 'can1' }));
  await turn();
  assert.deepEqual(
    b.frames().map((f) => f.seq),
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    'a→b: all ten, in order',
  );
  assert.ok(
    b.frames().every((f) => f.bus === 'can1' && f.origin === 'a1'),
    'a→b on the mapped bus, origin a1',
  );
  assert.equal(b.batches.length, 1, "one turn's UP batches leave as one DOWN batch");
  assert.deepEqual(
    a.frames().map((f) => [f.seq, f.bus, f.origin]),
    [
      [1, 'can0', 'b1'],
      [2, 'can0', 'b1'],
      [3, 'can0', 'b1'],
    ],
    'b→a through the inverse map',
  );
  assert.deepEqual({ ...relay.groupOf('a1'), rev: undefined }, { group: 'g', side: 'a', rev: undefined });
  relay.stop();
});

test('group relay: frames that arrived as tx are never relayed (loop guard), and a dongle outside any group relays nothing', async () => {
  const { relay } = setup([row('g', 'a1', 'b1')]);
  const b = new FakeLink();
  relay.attach('b1', b);
  relay.relay('a1', [...frames(1, 2), ...frames(3, 2, { direction: 'tx' }), ...frames(5, 1)]);
  relay.relay('loner', frames(1, 3));
  await turn();
  assert.deepEqual(
    b.frames().map((f) => f.seq),
    [1, 2, 5],
  );
  assert.equal(relay.loopGuarded, 2);
  relay.stop();
});

test('group relay: an offline side gets its backlog on attach, unacknowledged batches again after a reconnect, and acks above what was sent are refused', async () => {
  const { relay, states } = setup([row('g', 'a1', 'b1')]);
  relay.attach('a1', new FakeLink());
  relay.relay('a1', frames(1, 4));
  await turn();
  const waiting = relay.state('g')!;
  assert.equal(waiting.mode, 'degraded');
  assert.equal(waiting.sides.b.backlog, 4, 'held for the offline side');
  const b1 = new FakeLink();
  relay.attach('b1', b1);
  assert.deepEqual(
    b1.frames().map((f) => f.seq),
    [1, 2, 3, 4],
    'the backlog on attach',
  );
  relay.detach('b1', b1);
  const b2 = new FakeLink();
  relay.attach('b1', b2);
  assert.deepEqual(
    b2.frames().map((f) => f.seq),
    [1, 2, 3, 4],
    'not acknowledged: sent again to the new link',
  );
  assert.equal(relay.downAck('b1', b2.lastBatch() + 1), false, 'an ack of a batch never sent');
  assert.equal(relay.downAck('b1', b2.lastBatch()), true);
  assert.equal(relay.state('g')!.sides.b.backlog, 0, 'acknowledged: nothing owed');
  const b3 = new FakeLink();
  relay.detach('b1', b2);
  relay.attach('b1', b3);
  assert.equal(b3.batches.length, 0, 'nothing resent once acknowledged');
  assert.ok(states.length > 0, 'group_state published on the changes');
  relay.stop();
});

test('group relay: a connected peer that falls behind holds the sender (peerBehind); an offline one does not', async () => {
  const { relay } = setup([row('g', 'a1', 'b1')], { backlogMaxFrames: 100_000 });
  const b = new FakeLink();
  b.open = false; // its socket is full: frames wait
  relay.attach('b1', b);
  relay.relay('a1', frames(1, 5000));
  await turn();
  assert.equal(relay.peerBehind('a1'), true, 'b1 is connected and 5,000 frames behind');
  relay.detach('b1', b);
  assert.equal(relay.peerBehind('a1'), false, 'an offline peer is not behind: its frames go to the bounded backlog');
  relay.stop();
});

test('group relay: over the backlog bound the oldest are dropped and counted; removing the group drops what waits and tells its agents', async () => {
  const { relay } = setup([row('g', 'a1', 'b1')], { backlogMaxFrames: 10 });
  const a = new FakeLink();
  relay.attach('a1', a);
  relay.relay('a1', frames(1, 15));
  await turn();
  const m = relay.metrics()[0]!;
  const sideB = m.sides.find((s) => s.side === 'b')!;
  assert.equal(sideB.backlog, 10);
  assert.equal(sideB.dropped.backlog_full, 5, 'five over the bound, counted');
  relay.remove('g');
  assert.equal(relay.groupOf('a1'), undefined);
  assert.deepEqual(a.groups, [null], 'the connected agent is told it left the group');
  assert.equal(relay.has('g'), false);
  relay.relay('a1', frames(16, 3));
  await turn();
  assert.equal(a.batches.length, 0);
  relay.stop();
});

test('group relay: each side is told when what its group relays under changes (a new revision), and only then; what waited for it is dropped', async () => {
  const { relay } = setup([row('g', 'a1', 'b1', { can0: 'can1' })]);
  const a = new FakeLink();
  const b = new FakeLink();
  const c = new FakeLink();
  relay.attach('a1', a);
  relay.attach('b1', b);
  relay.attach('c1', c);
  const rev0 = relay.groupOf('b1')!.rev;
  assert.equal(relay.groupOf('a1')!.rev, rev0, 'one revision for both sides');
  // The same row again (a PUT of the same group): nobody is told, nothing dropped.
  relay.put(row('g', 'a1', 'b1', { can0: 'can1' }), false);
  assert.deepEqual([a.groups, b.groups], [[], []]);
  // Another bus map: both sides told, under a new revision.
  relay.put(row('g', 'a1', 'b1', { can0: 'can2' }), false);
  const rev1 = relay.groupOf('b1')!.rev;
  assert.notEqual(rev1, rev0);
  assert.deepEqual([a.groups, a.revs, b.groups, b.revs], [['g'], [rev1], ['g'], [rev1]]);
  // b1's socket full, frames waiting for it; then side a changes to c1: b1 stays in the group, is told the
  // new revision, and what waited (from a1) is dropped as group_changed.
  b.open = false;
  relay.relay('a1', frames(1, 4));
  await turn();
  relay.put(row('g', 'c1', 'b1', { can0: 'can2' }), false);
  const rev2 = relay.groupOf('b1')!.rev;
  assert.notEqual(rev2, rev1);
  assert.deepEqual(b.revs.at(-1), rev2, 'the side that stays is told the new revision');
  assert.deepEqual(a.groups.at(-1), null, 'the side that left is told it has no group');
  assert.deepEqual(c.groups, ['g']);
  assert.equal(relay.metrics()[0]!.sides.find((s) => s.side === 'b')!.dropped.group_changed, 4);
  // Swapped sides are another revision too.
  relay.put(row('g', 'b1', 'c1', { can0: 'can2' }), false);
  assert.notEqual(relay.groupOf('b1')!.rev, rev2);
  assert.equal(relay.groupOf('b1')!.side, 'a');
  relay.stop();
});

test('periodic group_state: every group once per interval, spread over the interval in slices, not all at once', (t) => {
  mock.timers.enable({ apis: ['setInterval'] });
  t.after(() => mock.timers.reset());
  const rows = Array.from({ length: 7 }, (_, i) => row(`g${i}`, `a${i}`, `b${i}`));
  const { relay, states } = setup(rows, { groupStateIntervalMs: 1000 });
  t.after(() => relay.stop());
  const perSlice: number[] = [];
  for (let slice = 0; slice < 8; slice++) {
    const before = states.length;
    mock.timers.tick(250);
    perSlice.push(states.length - before);
  }
  // 1 s in slices of 250 ms: 7 groups as 1 + 2 + 2 + 2, twice.
  assert.deepEqual(perSlice, [1, 2, 2, 2, 1, 2, 2, 2]);
  const count = (gid: string): number => states.filter((s) => s.group === gid).length;
  for (const r of rows) assert.equal(count(r.id), 2, `${r.id}: one group_state per interval`);
});

test('group relay: a throw while sending to a side (a bug) never ends the process: from setImmediate, the sweep timer, attach or an ack it is caught, counted, what the side held is dropped as internal_error, and the relay goes on', async () => {
  const { relay } = setup([row('g', 'a1', 'b1')]);
  // A frame encodeBatch refuses (a bus name longer than its length byte): the agent link's decoder never
  // lets one in, so here it stands for any bug that makes a DOWN batch throw.
  const bad = (): SequencedFrame[] => [{ seq: 0, frame: testFrame({ bus: 'x'.repeat(300) }) }];
  const sideB = () => relay.metrics()[0]!.sides.find((s) => s.side === 'b')!;
  const b = new FakeLink();
  relay.attach('b1', b);
  // setImmediate (flushDirty): uncaught, it ended the bridge.
  relay.relay('a1', bad());
  await turn();
  assert.equal(relay.internalErrors, 1);
  assert.equal(sideB().dropped.internal_error, 1, 'counted');
  assert.equal(sideB().backlog, 0);
  relay.relay('a1', frames(1, 3));
  await turn();
  assert.deepEqual(
    b.frames().map((f) => f.seq),
    [1, 2, 3],
    'the relay goes on',
  );
  // The sweep (setInterval): a socket that could not take the batch at first, then can.
  b.open = false;
  relay.relay('a1', [...frames(4, 2), ...bad()]);
  await turn();
  b.open = true;
  const until = Date.now() + 2000;
  while (relay.internalErrors < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  assert.equal(relay.internalErrors, 2, 'the sweep hit it');
  assert.equal(sideB().dropped.internal_error, 1 + 3);
  // attach (inside the agent link's welcome): B is not refused for it at every reconnect.
  relay.detach('b1', b);
  relay.relay('a1', bad());
  await turn();
  const b2 = new FakeLink();
  relay.attach('b1', b2);
  assert.equal(relay.internalErrors, 3);
  assert.equal(relay.state('g')!.sides.b.online, true);
  // An ack that makes the queue send: caught too.
  b2.open = false;
  relay.relay('a1', bad());
  await turn();
  b2.open = true;
  assert.equal(relay.downAck('b1', 0), true);
  assert.equal(relay.internalErrors, 4);
  relay.relay('a1', frames(6, 2));
  await turn();
  assert.deepEqual(
    b2.frames().map((f) => f.seq),
    [6, 7],
  );
  relay.stop();
});

test("frames another node relayed under another revision (dropped by cluster/remote-sides.ts) are counted as group_changed on the side here (metrics; a loss reason, so in the group's dropped too)", () => {
  const { relay } = setup([row('g', 'a1', 'b1')]);
  relay.droppedForGroupChange('b1', 3);
  relay.droppedForGroupChange('nobody', 5); // in no group here: nothing to count it on
  const sides = relay.metrics()[0]!.sides;
  assert.equal(sides.find((s) => s.side === 'b')!.dropped.group_changed, 3);
  assert.equal(sides.find((s) => s.side === 'a')!.dropped.group_changed, 0);
  relay.stop();
});
