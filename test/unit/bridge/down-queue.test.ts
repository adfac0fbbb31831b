/**
 * DownQueue (cloud-bridge/down-queue.ts), the frames owed to one group side, without processes: a fake
 * link records the DOWN batches it is given (decoded with the real codec), hooks count drops. Order, the
 * count and age bounds, resend of unacknowledged batches after a reconnect, backpressure, and clear().
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DownQueue, MAX_BUSES_PER_DOWN_BATCH, pendingFrame, WINDOW_FRAMES, type DownLink, type DropReason, type PendingFrame } from '../../../cloud-bridge/down-queue.js';
import { BRIDGE_CLOCK } from '../../../core/uplink/clock.js';
import type { RelayTime } from '../../../cloud-bridge/relay-clock.js';
import { decodeBatch, KIND_DOWN, MAX_FRAMES_PER_BATCH, type Batch } from '../../../core/uplink/frame-codec.js';
import type { CanFrame } from '../../../core/can/frame.js';
import type { SendResult } from '../../../agent/sources/source.js';
import { TxQueue } from '../../../agent/tx-queue.js';
import { Downlink } from '../../../agent/uplink/downlink.js';
import { testFrame } from '../../helpers/can-frames.js';

const NOW = 1_800_000_000_000;
/** A moment for the queue: here the monotonic clock reads like the wall clock (domain 0). */
const at = (ms: number): RelayTime => ({ monoMs: ms, wallMinusMonoMs: 0 });

function pending(seq: number, over: Partial<PendingFrame> = {}): PendingFrame {
  const frame = testFrame({ data: Uint8Array.of(seq & 0xff, seq >> 8), tsUs: NOW * 1000 });
  return { frame, seq, origin: 'gw-a', originMs: NOW, clock: BRIDGE_CLOCK, clockDomainMs: 0, ...over };
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
  q.flush(link, at(NOW));
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
  q.flush(link, at(NOW));
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
  q.flush(link, at(NOW));
  assert.deepEqual(link.seqs(), [3, 4, 5]);
});

test('down queue: frames older than maxAgeMs are dropped and counted, never sent', () => {
  const { q, drops } = queue(1000, 2000);
  q.push(pending(1, { originMs: NOW - 5000 }));
  q.push(pending(2, { originMs: NOW - 2001 }));
  q.push(pending(3, { originMs: NOW - 1999 }));
  const link = new FakeLink();
  q.flush(link, at(NOW));
  assert.deepEqual(link.seqs(), [3]);
  assert.equal(drops.get('too_old'), 2);
  // While the side is offline the backlog expires too.
  q.push(pending(4, { originMs: NOW }));
  q.expire(at(NOW + 2001));
  assert.equal(q.waiting, 0);
  assert.equal(drops.get('too_old'), 3);
});

test('down queue: unacknowledged batches are resent with the same number after a reconnect, before the backlog', () => {
  const { q, drops, sent } = queue();
  q.push(pending(1));
  q.push(pending(2));
  const first = new FakeLink();
  q.flush(first, at(NOW));
  assert.deepEqual(
    first.batches.map((b) => b.batch),
    [1],
  );
  q.linkDown();
  q.push(pending(3));
  const second = new FakeLink();
  q.linkUp();
  q.flush(second, at(NOW + 100));
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
  q.flush(third, at(NOW + 10_000));
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
  q.flush(first, at(NOW));
  assert.deepEqual(
    first.batches.map((b) => [b.batch, b.frames.length]),
    [[1, 5]],
  );
  // Unchanged: the very bytes again.
  q.linkDown();
  q.linkUp();
  const second = new FakeLink();
  q.flush(second, at(NOW + 50));
  assert.deepEqual(second.batches, first.batches);
  // 600 ms later the frames older than 1400 ms at NOW are too old (maxAgeMs 2000): seqs 1 and 3 go.
  q.linkDown();
  q.linkUp();
  const third = new FakeLink();
  q.flush(third, at(NOW + 600));
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
  q.flush(fourth, at(NOW + 1950));
  assert.deepEqual(
    fourth.batches.map((b) => b.frames.map((f) => f.seq)),
    [[4]],
  );
  q.linkDown();
  q.linkUp();
  const fifth = new FakeLink();
  q.flush(fifth, at(NOW + 2001));
  assert.equal(fifth.batches.length, 0);
  assert.equal(drops.get('too_old'), 5);
  assert.equal(q.backlog, 0);
});

test('down queue: a link that is not ready or cannot send takes nothing; the frames wait', () => {
  const { q } = queue();
  for (let s = 1; s <= 3; s++) q.push(pending(s, { origin: `gw-${s}` }));
  const link = new FakeLink();
  link.ready = false;
  q.flush(link, at(NOW));
  q.flush(undefined, at(NOW));
  assert.equal(link.batches.length, 0);
  link.ready = true;
  link.room = 1;
  q.flush(link, at(NOW));
  assert.deepEqual(link.seqs(), [1], 'one batch, then the link is full');
  assert.equal(q.waiting, 2);
  link.room = Infinity;
  q.flush(link, at(NOW));
  assert.deepEqual(link.seqs(), [1, 2, 3]);
});

test('down queue: at most WINDOW_FRAMES in flight; the rest waits for acks', () => {
  const { q } = queue(WINDOW_FRAMES * 2);
  for (let s = 0; s < WINDOW_FRAMES + 10; s++) q.push(pending(s));
  const link = new FakeLink();
  q.flush(link, at(NOW));
  assert.equal(q.inFlight, WINDOW_FRAMES);
  assert.equal(q.waiting, 10);
  q.ack(link.batches.at(-1)!.batch);
  q.flush(link, at(NOW));
  assert.equal(q.inFlight, 10);
  assert.equal(q.waiting, 0);
});

test('down queue: clear() counts the frames it drops — waiting, and unacknowledged on a lost link — but not those on the wire of the current link', () => {
  // Connected side: batch 1 is on the wire (the agent transmits it: not a drop here), two frames wait.
  const { q, drops } = queue();
  const link = new FakeLink();
  q.push(pending(1));
  q.flush(link, at(NOW));
  q.push(pending(2));
  q.push(pending(3));
  assert.equal(q.inFlight, 1);
  q.clear('group_changed');
  assert.equal(drops.get('group_changed'), 2, 'the two waiting frames, not the one in flight');
  assert.equal(q.backlog, 0);
  q.ack(1); // the agent's late ack of what it had: harmless
  const next = new FakeLink();
  q.linkUp();
  q.flush(next, at(NOW));
  assert.equal(next.batches.length, 0, 'nothing of the old group is sent');
  // Offline side: its unacknowledged batch was sent on a link that is gone, and is counted with the waiting one.
  const off = queue();
  off.q.push(pending(1));
  off.q.flush(new FakeLink(), at(NOW));
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
  q.flush(link, at(NOW));
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
  few.q.flush(one, at(NOW));
  assert.equal(one.batches.length, 1);
});

test('down queue: dropAtStop() counts what would die with the process — all of an offline side, the unsent of a connected one', () => {
  // Offline side: one batch sent before its link went (unacknowledged), two frames waiting.
  const off = queue();
  off.q.push(pending(1));
  off.q.flush(new FakeLink(), at(NOW));
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
  on.q.flush(link, at(NOW));
  on.q.push(pending(2));
  on.q.push(pending(3));
  on.q.flush(link, at(NOW));
  assert.equal(on.q.waiting, 2);
  assert.equal(on.q.dropAtStop(true), 2);
  assert.equal(on.drops.get('bridge_stopped'), 2);
  // Nothing held: nothing counted.
  const none = queue();
  assert.equal(none.q.dropAtStop(false), 0);
  assert.equal(none.drops.get('bridge_stopped'), undefined);
});

/**
 * The bridge's wall clock stepped while frames wait for an offline side: they age on the monotonic clock,
 * and leave with their origin's fix restated for the wall clock their receiver measured against, so the
 * real agent-side Downlink (agent/uplink/downlink.ts, read-only here) computes their true age. B's own clock
 * is the real Date.now() (its TxQueue checks deadlines against it); the bridge's clocks are simulated.
 */
function stepHarness(bridgeMaxAgeMs: number) {
  const sent: CanFrame[] = [];
  const tx = new TxQueue((f): SendResult => (sent.push(f), { ok: true, tsUs: Date.now() * 1000 }), { retryMs: 10, maxQueued: 100 });
  const downlink = new Downlink(tx, 2000); // B's --relay-max-age-ms
  const { q, drops } = queue(1000, bridgeMaxAgeMs);
  // The bridge's monotonic clock reads 1,000 ms; its wall clock agrees with B's (domain w0).
  const tB = Date.now();
  const w0 = tB - 1000;
  /** B reconnects when the bridge's monotonic clock reads `mono`, its wall clock then in domain `domain`, and measures its offset to it. */
  const deliver = (mono: number, domain: number): void => {
    const link = new (class extends FakeLink {
      readonly clockDomainMs = domain;
      override sendBinary(buf: Buffer): void {
        super.sendBinary(buf);
        // B's fix, measured on its new link: the bridge's wall clock now, minus B's clock now.
        const local = { offsetMs: mono + domain - Date.now(), errorMs: 2 };
        assert.equal(downlink.apply(this.batches.at(-1)!, local), undefined, 'the batch is accepted');
      }
    })();
    q.linkUp();
    q.flush(link, { monoMs: mono, wallMinusMonoMs: domain });
  };
  return { tx, sent, drops, q, tB, w0, deliver };
}

test('down queue: the bridge clock stepped back 10 s while B is offline lets nothing older than the age limit be transmitted; a fresh frame still goes', () => {
  // The bridge holds a 10 s backlog; B's 2 s limit decides.
  const h = stepHarness(10_000);
  // A's frame, received 500 ms before it reached the bridge (A's fix {0, 2} measured in domain w0).
  const old = testFrame({ data: Uint8Array.of(1), tsUs: (h.tB - 500) * 1000 });
  h.q.push(pendingFrame(old, 1, 'gw-a', { offsetMs: 0, errorMs: 2 }, h.w0));
  // The bridge's wall clock is stepped back 10 s; 2.5 s pass: the frame is 3 s old.
  const w1 = h.w0 - 10_000;
  h.q.expire({ monoMs: 3400, wallMinusMonoMs: w1 });
  assert.equal(h.q.waiting, 1, 'within the bridge’s 10 s');
  // A frame A sent after the step, its fix measured after it too (A's clock reads like B's): 100 ms old.
  const fresh = testFrame({ data: Uint8Array.of(2), tsUs: (h.tB - 100) * 1000 });
  h.q.push(pendingFrame(fresh, 2, 'gw-a', { offsetMs: 3400 + w1 - h.tB, errorMs: 2 }, w1));
  // B comes back and measures its offset against the stepped-back clock.
  h.deliver(3500, w1);
  assert.deepEqual(
    h.sent.map((f) => f.data[0]),
    [2],
    'the 3 s old frame is not transmitted (its deadline was 10 s late); the fresh one is',
  );
  assert.equal(h.tx.stats.droppedTooOld, 1);
  h.tx.stop();
});

test('down queue: the bridge clock stepped forward 10 s drops nothing fresh; the age limit still holds', () => {
  const h = stepHarness(2000);
  const older = testFrame({ data: Uint8Array.of(2), tsUs: (h.tB - 1700) * 1000 });
  const a = testFrame({ data: Uint8Array.of(1), tsUs: (h.tB - 500) * 1000 });
  h.q.push(pendingFrame(older, 1, 'gw-a', { offsetMs: 0, errorMs: 2 }, h.w0));
  h.q.push(pendingFrame(a, 2, 'gw-a', { offsetMs: 0, errorMs: 2 }, h.w0));
  // Stepped forward 10 s; 500 ms pass: one frame is 1 s old, the other 2.2 s (too old: dropped at the bridge).
  const w2 = h.w0 + 10_000;
  h.q.expire({ monoMs: 1500, wallMinusMonoMs: w2 });
  assert.equal(h.drops.get('too_old'), 1, 'only the frame past 2 s');
  h.deliver(1500, w2);
  assert.deepEqual(
    h.sent.map((f) => f.data[0]),
    [1],
    'the fresh frame is transmitted',
  );
  assert.equal(h.tx.stats.droppedTooOld, 0);
  h.tx.stop();
});

test('down queue: an unacknowledged batch resent after a step carries its fix restated for the receiver’s new clock', () => {
  const h = stepHarness(10_000);
  const f = testFrame({ data: Uint8Array.of(1), tsUs: (h.tB - 500) * 1000 });
  h.q.push(pendingFrame(f, 1, 'gw-a', { offsetMs: 0, errorMs: 2 }, h.w0));
  // Sent to B before the step, not acknowledged; B's link goes.
  const first = new FakeLink();
  h.q.flush(first, { monoMs: 1000, wallMinusMonoMs: h.w0 });
  assert.deepEqual(first.batches[0]!.clock, { offsetMs: 0, errorMs: 2 }, 'no step: the fix as it came');
  h.q.linkDown();
  // Stepped back 10 s; 2.5 s later B is back: the resend must not look 10 s younger.
  h.deliver(3500, h.w0 - 10_000);
  assert.equal(h.sent.length, 0, 'not transmitted: 3 s old');
  assert.equal(h.tx.stats.droppedTooOld, 1);
  h.tx.stop();
});
