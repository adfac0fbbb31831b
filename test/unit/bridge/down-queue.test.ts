/**
 * DownQueue (cloud-bridge/down-queue.ts), the frames owed to one group side, without processes: a fake
 * link records the DOWN batches it is given (decoded with the real codec), hooks count drops. Order, the
 * count and age bounds, resend of unacknowledged batches after a reconnect, backpressure, and clear().
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DownQueue, MAX_BUSES_PER_DOWN_BATCH, WINDOW_FRAMES, type DownLink, type DropReason, type PendingFrame } from '../../../cloud-bridge/down-queue.js';
import { BRIDGE_CLOCK } from '../../../core/uplink/clock.js';
import { decodeBatch, KIND_DOWN, MAX_FRAMES_PER_BATCH, type Batch } from '../../../core/uplink/frame-codec.js';
import { testFrame } from '../../helpers/can-frames.js';

const NOW = 1_800_000_000_000;

function pending(seq: number, over: Partial<PendingFrame> = {}): PendingFrame {
  const frame = testFrame({ data: Uint8Array.of(seq & 0xff, seq >> 8), tsUs: NOW * 1000 });
  return { frame, seq, origin: 'gw-a', originMs: NOW, clock: BRIDGE_CLOCK, ...over };
}

class FakeLink implements DownLink {
  ready = true;
  room = Infinity;
  readonly batches: Batch[] = [];
  canSend(): boolean {
    return this.batches.length < this.room;
  }
  sendBinary(buf: Buffer): void {
    this.batches.push(decodeBatch(buf));
  }
  seqs(): number[] {
    return this.batches.flatMap((b) => b.frames.map((f) => f.seq));
  }
}

function queue(maxFrames = 1000, maxAgeMs = 2000) {
  const drops = new Map<DropReason, number>();
  const sent: number[] = [];
  let batch = 0;
  const q = new DownQueue(
    'gw-b',
    { maxFrames, maxAgeMs },
    {
      nextBatch: () => ++batch,
      dropped: (reason, n) => drops.set(reason, (drops.get(reason) ?? 0) + n),
      sent: (frames) => sent.push(...frames.map((f) => f.seq)),
    },
  );
  return { q, drops, sent };
}

test('down queue: frames leave in arrival order, in DOWN batches of one origin, numbered by the hook', () => {
  const { q, drops, sent } = queue();
  for (let s = 1; s <= 5; s++) q.push(pending(s));
  q.push(pending(1, { origin: 'gw-c' }));
  q.push(pending(6));
  assert.equal(q.waiting, 7);
  const link = new FakeLink();
  q.flush(link, NOW);
  assert.deepEqual(
    link.batches.map((b) => [b.kind, b.batch, b.origin]),
    [
      [KIND_DOWN, 1, 'gw-a'],
      [KIND_DOWN, 2, 'gw-c'],
      [KIND_DOWN, 3, 'gw-a'],
    ],
  );
  assert.deepEqual(link.seqs(), [1, 2, 3, 4, 5, 1, 6]);
  assert.deepEqual(sent, [1, 2, 3, 4, 5, 1, 6]);
  assert.equal(q.waiting, 0);
  assert.equal(q.inFlight, 7, 'sent but not acknowledged');
  assert.equal(q.backlog, 7);
  q.ack(3);
  assert.equal(q.backlog, 0);
  assert.equal(drops.size, 0);
});

test('down queue: a batch holds at most MAX_FRAMES_PER_BATCH frames', () => {
  const { q } = queue(10_000);
  const n = MAX_FRAMES_PER_BATCH * 2 + 3;
  for (let s = 0; s < n; s++) q.push(pending(s));
  const link = new FakeLink();
  q.flush(link, NOW);
  assert.deepEqual(
    link.batches.map((b) => b.frames.length),
    [MAX_FRAMES_PER_BATCH, MAX_FRAMES_PER_BATCH, 3],
  );
  assert.equal(link.seqs().length, n);
});

test('down queue: past maxFrames waiting the OLDEST frames are dropped and counted', () => {
  const { q, drops } = queue(3);
  for (let s = 1; s <= 5; s++) q.push(pending(s));
  assert.equal(q.waiting, 3);
  assert.equal(drops.get('backlog_full'), 2);
  const link = new FakeLink();
  q.flush(link, NOW);
  assert.deepEqual(link.seqs(), [3, 4, 5]);
});

test('down queue: frames older than maxAgeMs are dropped and counted, never sent', () => {
  const { q, drops } = queue(1000, 2000);
  q.push(pending(1, { originMs: NOW - 5000 }));
  q.push(pending(2, { originMs: NOW - 2001 }));
  q.push(pending(3, { originMs: NOW - 1999 }));
  const link = new FakeLink();
  q.flush(link, NOW);
  assert.deepEqual(link.seqs(), [3]);
  assert.equal(drops.get('too_old'), 2);
  // While the side is offline the backlog expires too.
  q.push(pending(4, { originMs: NOW }));
  q.expire(NOW + 2001);
  assert.equal(q.waiting, 0);
  assert.equal(drops.get('too_old'), 3);
});

test('down queue: unacknowledged batches are resent with the same number after a reconnect, before the backlog', () => {
  const { q, drops, sent } = queue();
  q.push(pending(1));
  q.push(pending(2));
  const first = new FakeLink();
  q.flush(first, NOW);
  assert.deepEqual(
    first.batches.map((b) => b.batch),
    [1],
  );
  q.linkDown();
  q.push(pending(3));
  const second = new FakeLink();
  q.linkUp();
  q.flush(second, NOW + 100);
  assert.deepEqual(
    second.batches.map((b) => [b.batch, b.frames.map((f) => f.seq)]),
    [
      [1, [1, 2]],
      [2, [3]],
    ],
  );
  assert.deepEqual(sent, [1, 2, 3], 'the sent hook counts first sends only');
  q.ack(1);
  assert.equal(q.inFlight, 1);
  // A resend due after the frames went stale drops them (counted) instead of sending.
  q.linkDown();
  q.linkUp();
  const third = new FakeLink();
  q.flush(third, NOW + 10_000);
  assert.equal(third.batches.length, 0);
  assert.equal(drops.get('too_old'), 1);
  assert.equal(q.backlog, 0);
});

test('down queue: a resend leaves out exactly the frames of the batch that went stale meanwhile, same number, same bytes otherwise', () => {
  const { q, drops } = queue();
  // One batch whose frames differ in age (order within the batch is not by age).
  const ages = [1500, 100, 1900, 0, 1200];
  ages.forEach((a, i) => q.push(pending(i + 1, { originMs: NOW - a })));
  const first = new FakeLink();
  q.flush(first, NOW);
  assert.deepEqual(
    first.batches.map((b) => [b.batch, b.frames.length]),
    [[1, 5]],
  );
  // Unchanged: the very bytes again.
  q.linkDown();
  q.linkUp();
  const second = new FakeLink();
  q.flush(second, NOW + 50);
  assert.deepEqual(second.batches, first.batches);
  // 600 ms later the frames older than 1400 ms at NOW are too old (maxAgeMs 2000): seqs 1 and 3 go.
  q.linkDown();
  q.linkUp();
  const third = new FakeLink();
  q.flush(third, NOW + 600);
  assert.deepEqual(
    third.batches.map((b) => [b.batch, b.origin, b.frames.map((f) => [f.seq, f.frame.data[0]])]),
    [
      [
        1,
        'gw-a',
        [
          [2, 2],
          [4, 4],
          [5, 5],
        ],
      ],
    ],
  );
  assert.equal(drops.get('too_old'), 2);
  assert.equal(q.inFlight, 3);
  // Later still, only the newest is left; then nothing.
  q.linkDown();
  q.linkUp();
  const fourth = new FakeLink();
  q.flush(fourth, NOW + 1950);
  assert.deepEqual(
    fourth.batches.map((b) => b.frames.map((f) => f.seq)),
    [[4]],
  );
  q.linkDown();
  q.linkUp();
  const fifth = new FakeLink();
  q.flush(fifth, NOW + 2001);
  assert.equal(fifth.batches.length, 0);
  assert.equal(drops.get('too_old'), 5);
  assert.equal(q.backlog, 0);
});

test('down queue: a link that is not ready or cannot send takes nothing; the frames wait', () => {
  const { q } = queue();
  for (let s = 1; s <= 3; s++) q.push(pending(s, { origin: `gw-${s}` }));
  const link = new FakeLink();
  link.ready = false;
  q.flush(link, NOW);
  q.flush(undefined, NOW);
  assert.equal(link.batches.length, 0);
  link.ready = true;
  link.room = 1;
  q.flush(link, NOW);
  assert.deepEqual(link.seqs(), [1], 'one batch, then the link is full');
  assert.equal(q.waiting, 2);
  link.room = Infinity;
  q.flush(link, NOW);
  assert.deepEqual(link.seqs(), [1, 2, 3]);
});

test('down queue: at most WINDOW_FRAMES in flight; the rest waits for acks', () => {
  const { q } = queue(WINDOW_FRAMES * 2);
  for (let s = 0; s < WINDOW_FRAMES + 10; s++) q.push(pending(s));
  const link = new FakeLink();
  q.flush(link, NOW);
  assert.equal(q.inFlight, WINDOW_FRAMES);
  assert.equal(q.waiting, 10);
  q.ack(link.batches.at(-1)!.batch);
  q.flush(link, NOW);
  assert.equal(q.inFlight, 10);
  assert.equal(q.waiting, 0);
});

test('down queue: clear() counts the frames it drops — waiting, and unacknowledged on a lost link — but not those on the wire of the current link', () => {
  // Connected side: batch 1 is on the wire (the agent transmits it: not a drop here), two frames wait.
  const { q, drops } = queue();
  const link = new FakeLink();
  q.push(pending(1));
  q.flush(link, NOW);
  q.push(pending(2));
  q.push(pending(3));
  assert.equal(q.inFlight, 1);
  q.clear('group_changed');
  assert.equal(drops.get('group_changed'), 2, 'the two waiting frames, not the one in flight');
  assert.equal(q.backlog, 0);
  q.ack(1); // the agent's late ack of what it had: harmless
  const next = new FakeLink();
  q.linkUp();
  q.flush(next, NOW);
  assert.equal(next.batches.length, 0, 'nothing of the old group is sent');
  // Offline side: its unacknowledged batch was sent on a link that is gone, and is counted with the waiting one.
  const off = queue();
  off.q.push(pending(1));
  off.q.flush(new FakeLink(), NOW);
  off.q.linkDown();
  off.q.push(pending(2));
  off.q.clear('group_changed');
  assert.equal(off.drops.get('group_changed'), 2);
  assert.equal(off.q.backlog, 0);
});

test('down queue: one DOWN batch names at most MAX_BUSES_PER_DOWN_BATCH buses; one origin on more buses is split, in order, every frame sent', () => {
  // 300 buses of one origin (its links came and went while the side was offline): once merged into one
  // batch of 300 names, whose one-byte count and indexes wrapped into bytes the agent refused.
  const { q, drops } = queue(10_000);
  const n = 300;
  for (let s = 0; s < n; s++) q.push(pending(s, { frame: testFrame({ bus: `vcan${s}`, data: Uint8Array.of(s & 0xff, s >> 8), tsUs: NOW * 1000 }) }));
  const link = new FakeLink(); // decodes what it is sent: a corrupt batch throws here
  q.flush(link, NOW);
  assert.ok(link.batches.length >= Math.ceil(n / MAX_BUSES_PER_DOWN_BATCH));
  for (const b of link.batches) assert.ok(new Set(b.frames.map((f) => f.frame.bus)).size <= MAX_BUSES_PER_DOWN_BATCH);
  assert.deepEqual(
    link.batches.flatMap((b) => b.frames.map((f) => [f.seq, f.frame.bus])),
    Array.from({ length: n }, (_, s) => [s, `vcan${s}`]),
  );
  assert.equal(drops.size, 0);
  // A few buses stay one batch, however many frames.
  const few = queue(10_000);
  for (let s = 0; s < 1000; s++) few.q.push(pending(s, { frame: testFrame({ bus: `can${s % 3}`, tsUs: NOW * 1000 }) }));
  const one = new FakeLink();
  few.q.flush(one, NOW);
  assert.equal(one.batches.length, 1);
});

test('down queue: dropAtStop() counts what would die with the process — all of an offline side, the unsent of a connected one', () => {
  // Offline side: one batch sent before its link went (unacknowledged), two frames waiting.
  const off = queue();
  off.q.push(pending(1));
  off.q.flush(new FakeLink(), NOW);
  off.q.linkDown();
  off.q.push(pending(2));
  off.q.push(pending(3));
  assert.equal(off.q.dropAtStop(false), 3);
  assert.equal(off.drops.get('bridge_stopped'), 3);
  assert.equal(off.q.backlog, 0);
  // Connected side: a batch on the wire (it reaches the agent ahead of the close frame: not counted),
  // two frames the link could not take.
  const on = queue();
  const link = new FakeLink();
  link.room = 1;
  on.q.push(pending(1));
  on.q.flush(link, NOW);
  on.q.push(pending(2));
  on.q.push(pending(3));
  on.q.flush(link, NOW);
  assert.equal(on.q.waiting, 2);
  assert.equal(on.q.dropAtStop(true), 2);
  assert.equal(on.drops.get('bridge_stopped'), 2);
  // Nothing held: nothing counted.
  const none = queue();
  assert.equal(none.q.dropAtStop(false), 0);
  assert.equal(none.drops.get('bridge_stopped'), undefined);
});
