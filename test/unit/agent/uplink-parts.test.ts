/** The agent's data-plane pieces in isolation: uploader bounds and resend, downlink sequence checks, coalesced DOWN acks, tx retry, outbox. */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mock, test } from 'node:test';
import type { CanFrame } from '../../../core/can/frame.js';
import { MAX_BUSES_PER_DONGLE } from '../../../core/names.js';
import { BRIDGE_CLOCK } from '../../../core/uplink/clock.js';
import { decodeBatch, encodeBatch, KIND_DOWN } from '../../../core/uplink/frame-codec.js';
import { openStateDb } from '../../../core/state/sqlite.js';
import type { SendResult } from '../../../agent/sources/source.js';
import { TxQueue } from '../../../agent/tx-queue.js';
import { DownAcks } from '../../../agent/uplink/down-acks.js';
import { Downlink } from '../../../agent/uplink/downlink.js';
import { FrameUploader } from '../../../agent/uplink/frame-uploader.js';
import { Outbox } from '../../../agent/uplink/outbox.js';
import { tempDir } from '../../helpers/processes.js';
import { until } from '../../helpers/until.js';
import { testFrame } from '../../helpers/can-frames.js';

const frame = (i: number, bus = 'can0'): CanFrame => testFrame({ bus, data: Uint8Array.of(i >>> 24, i >>> 16, i >>> 8, i) });
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

test('uploader: batches with per-bus seq, resend after reconnect, ack frees, bounds drop and count', async () => {
  let now = Date.now(); // frames age from their receive time (tsUs), on the monotonic clock
  let mono = 1000;
  const up = new FrameUploader({ maxBufferedFrames: 3000, maxAgeMs: 2000, now: () => now, monoNow: () => mono });
  const sent: Buffer[] = [];
  up.attach({ send: (b) => sent.push(b), bufferedAmount: () => 0, clock: () => BRIDGE_CLOCK });
  for (let i = 0; i < 10; i++) up.push(frame(i, i % 2 ? 'can1' : 'can0'));
  await tick();
  assert.equal(sent.length, 1);
  const b1 = decodeBatch(sent[0]!);
  assert.deepEqual(
    b1.frames.filter((f) => f.frame.bus === 'can1').map((f) => f.seq),
    [1, 2, 3, 4, 5],
  );
  // Disconnected: frames wait; on reconnect the unacked batch 1 is resent with its number.
  up.detach();
  for (let i = 0; i < 5; i++) up.push(frame(100 + i));
  await tick();
  sent.length = 0;
  up.attach({ send: (b) => sent.push(b), bufferedAmount: () => 0, clock: () => BRIDGE_CLOCK });
  assert.deepEqual(
    sent.map((b) => decodeBatch(b).batch),
    [1, 2],
  );
  up.ack(2);
  assert.equal(up.buffered, 0);
  assert.equal(up.stats.framesAcked, 15);

  // Outage: past the frame bound the oldest batches go; past the age bound nothing stale is sent.
  up.detach();
  for (let i = 0; i < 5000; i++) up.push(frame(i));
  await tick();
  up.flush();
  assert.ok(up.buffered <= 3000);
  assert.equal(up.stats.droppedBufferFull, 5000 - up.buffered);
  now += 2500;
  mono += 2500;
  sent.length = 0;
  up.attach({ send: (b) => sent.push(b), bufferedAmount: () => 0, clock: () => BRIDGE_CLOCK });
  assert.equal(sent.length, 0, 'frames past the age bound are never sent');
  assert.equal(up.stats.droppedTooOld + up.stats.droppedBufferFull, 5000);
});

test('uploader: frames of buses past the 64 a dongle may have stay on the agent, counted (the bridge refuses a batch naming more)', async () => {
  const up = new FrameUploader({ maxBufferedFrames: 10_000, maxAgeMs: 2000 });
  const sent: Buffer[] = [];
  up.attach({ send: (b) => sent.push(b), bufferedAmount: () => 0, clock: () => BRIDGE_CLOCK });
  for (let round = 0; round < 2; round++) for (let i = 0; i < MAX_BUSES_PER_DONGLE + 2; i++) up.push(frame(round * 100 + i, `vcan${i}`));
  await tick();
  const buses = new Set(sent.flatMap((b) => decodeBatch(b).frames.map((f) => f.frame.bus)));
  assert.equal(buses.size, MAX_BUSES_PER_DONGLE, 'the first 64 buses go up');
  assert.ok(!buses.has(`vcan${MAX_BUSES_PER_DONGLE}`) && !buses.has(`vcan${MAX_BUSES_PER_DONGLE + 1}`));
  assert.equal(up.stats.droppedTooManyBuses, 4, 'two frames on each of the two buses past them, counted');
  assert.equal(up.stats.framesQueued, 2 * MAX_BUSES_PER_DONGLE);
});

test('uploader --uplink-batch-ms: frames of several turns wait for the window and leave as one batch; a full batch does not wait; 0 sends every turn', () => {
  mock.timers.enable({ apis: ['setTimeout', 'setImmediate'] });
  try {
    const run = (batchMs: number, turns: number, perTurn: number): number[] => {
      const up = new FrameUploader({ maxBufferedFrames: 100_000, maxAgeMs: 2000, batchMs });
      const sizes: number[] = [];
      up.attach({ send: (b) => sizes.push(decodeBatch(b).frames.length), bufferedAmount: () => 0, clock: () => BRIDGE_CLOCK });
      for (let t = 0; t < turns; t++) {
        for (let i = 0; i < perTurn; i++) up.push(frame(t * perTurn + i));
        mock.timers.tick(1); // the next event-loop turn, a millisecond later
      }
      mock.timers.tick(batchMs);
      return sizes;
    };
    assert.deepEqual(run(0, 5, 2), [2, 2, 2, 2, 2], 'without a window: a batch per turn');
    assert.deepEqual(run(10, 5, 2), [10], 'five turns within 10 ms: one batch');
    assert.deepEqual(run(10, 30, 1), [10, 10, 10], 'a frame a millisecond: a batch every 10 ms');
    // Full batches (1024 frames) do not wait for the window: sent at the end of their turn.
    const up = new FrameUploader({ maxBufferedFrames: 100_000, maxAgeMs: 2000, batchMs: 50 });
    const sizes: number[] = [];
    up.attach({ send: (b) => sizes.push(decodeBatch(b).frames.length), bufferedAmount: () => 0, clock: () => BRIDGE_CLOCK });
    for (let i = 0; i < 2500; i++) up.push(frame(i));
    mock.timers.tick(0);
    assert.deepEqual(sizes, [1024, 1024, 452], 'sent in the turn the batch filled, not 50 ms later');
  } finally {
    mock.timers.reset();
  }
});

test('downlink: duplicates skipped by batch number, seq gaps/duplicates/reordering counted, acks after transmit', () => {
  const txed: CanFrame[] = [];
  const tx = new TxQueue((f): SendResult => (txed.push(f), { ok: true, tsUs: Date.now() * 1000 }), { retryMs: 10, maxQueued: 100 });
  const d = new Downlink(tx, 2000);
  const acks: number[] = [];
  d.onAck = (n) => acks.push(n);
  const batch = (n: number, seqs: number[]) => decodeBatch(encodeBatch({ kind: KIND_DOWN, batch: n, origin: 'gw-a', frames: seqs.map((s) => ({ frame: frame(s), seq: s })) }));
  d.apply(batch(1, [1, 2, 3]), BRIDGE_CLOCK);
  d.apply(batch(1, [1, 2, 3]), BRIDGE_CLOCK); // resent after a reconnect
  d.apply(batch(2, [4, 6, 7]), BRIDGE_CLOCK); // 5 missing
  d.apply(batch(3, [5, 7]), BRIDGE_CLOCK); // 5 late (reordered), 7 again (duplicate)
  assert.deepEqual(acks, [1, 1, 2, 3]);
  assert.equal(txed.length, 8);
  assert.ok(txed.every((f) => f.direction === 'tx'));
  // One rule with the bridge (core/uplink/seq-checker.ts): counts only grow, so 5 is a gap and, late, a reordering.
  assert.deepEqual(d.stats, { batches: 3, duplicateBatches: 1, frames: 8, errorFrames: 0, noGroupFrames: 0, seqGaps: 1, seqDuplicates: 1, seqReordered: 1 });
  d.setEpoch('new-bridge');
  d.apply(batch(1, [1]), BRIDGE_CLOCK);
  assert.equal(d.stats.batches, 4, 'a new bridge epoch restarts batch numbering');
});

test("downlink: after a group change the sequence streams start afresh (a new bus map brings another origin bus's numbers to the same target bus: no gaps)", () => {
  const tx = new TxQueue((): SendResult => ({ ok: true, tsUs: Date.now() * 1000 }), { retryMs: 10, maxQueued: 100 });
  const d = new Downlink(tx, 2000);
  let n = 0;
  // A's can0 numbers (at 40,000) on B's can1, then, mapped {can3: can1}, A's can3 numbers (at 10) on it: newer frames.
  const batch = (seqs: number[]) =>
    decodeBatch(
      encodeBatch({ kind: KIND_DOWN, batch: ++n, origin: 'gw-a', frames: seqs.map((s) => ({ frame: { ...frame(s), bus: 'can1', tsUs: Date.now() * 1000 + n }, seq: s })) }),
    );
  d.apply(batch([40_000, 40_001]), BRIDGE_CLOCK);
  d.groupChanged('the bus map changed');
  d.apply(batch([10, 11, 12]), BRIDGE_CLOCK);
  assert.deepEqual([d.stats.seqGaps, d.stats.seqDuplicates], [0, 0]);
  d.apply(batch([14]), BRIDGE_CLOCK);
  assert.equal(d.stats.seqGaps, 1, 'and checked from there on');
  tx.stop();
});

test("downlink: the peer's error frames (its controller reporting its own bus) are never transmitted here; counted, numbered with their bus, acked", () => {
  const txed: CanFrame[] = [];
  const tx = new TxQueue((f): SendResult => (txed.push(f), { ok: true, tsUs: Date.now() * 1000 }), { retryMs: 10, maxQueued: 100 });
  const d = new Downlink(tx, 2000);
  const acks: number[] = [];
  d.onAck = (n) => acks.push(n);
  const errorFrame = (s: number): CanFrame => ({ ...frame(s), err: true, id: 0x004, dlc: 8, data: new Uint8Array(8) });
  const batch = (n: number, frames: CanFrame[], seq0: number) =>
    decodeBatch(encodeBatch({ kind: KIND_DOWN, batch: n, origin: 'gw-a', frames: frames.map((f, i) => ({ frame: f, seq: seq0 + i })) }));
  d.apply(batch(1, [frame(1), errorFrame(2), frame(3)], 1), BRIDGE_CLOCK);
  d.apply(batch(2, [errorFrame(4)], 4), BRIDGE_CLOCK); // a batch of error frames only is done at once
  assert.deepEqual(
    txed.map((f) => [f.err, f.data[3]]),
    [
      [false, 1],
      [false, 3],
    ],
  );
  assert.deepEqual(acks, [1, 2]);
  assert.deepEqual([d.stats.frames, d.stats.errorFrames, d.stats.seqGaps], [4, 2, 0]);
  tx.stop();
});

test('down acks: batches done within a clock tick give one cumulative ack, the highest done; flushed on a deliberate close; none after the link is gone', async () => {
  const sent: number[] = [];
  const acks = new DownAcks((b) => sent.push(b));
  for (const b of [1, 2, 4, 3]) acks.ack(b); // a resent duplicate (3) may be acknowledged after a higher batch
  assert.deepEqual(sent, [], 'nothing sent per batch: the ack waits for the clock');
  await until(() => sent.length > 0, 2000, 'the coalesced ack');
  assert.deepEqual(sent, [4], 'one message for four batches, cumulative: the highest');
  acks.ack(5);
  acks.flushAck(); // the agent stopping: what is pending goes before the close frame
  assert.deepEqual(sent, [4, 5]);
  acks.ack(6);
  acks.close();
  acks.ack(7);
  await new Promise((r) => setTimeout(r, 400));
  assert.deepEqual(sent, [4, 5], 'a lost link sends nothing more: the bridge resends those batches, the dedupe acks them');
});

test('tx queue: a full transmit queue is retried in order, then dropped and counted, never thrown', async () => {
  let busyFor = 3;
  const out: number[] = [];
  const failures: string[] = [];
  const q = new TxQueue(
    (f): SendResult => {
      if (busyFor > 0) {
        busyFor--;
        return { ok: false, busy: true, error: 'ENOBUFS' };
      }
      out.push(f.data[3]!);
      return { ok: true, tsUs: 0 };
    },
    { retryMs: 50, maxQueued: 10, onFailure: (_f, e) => failures.push(e) },
  );
  for (let i = 0; i < 5; i++) q.enqueue(frame(i));
  await until(() => out.length === 5, 30_000, 'the five frames transmitted');
  assert.deepEqual(out, [0, 1, 2, 3, 4], 'order kept across retries');
  busyFor = 1_000_000;
  const results: SendResult[] = [];
  q.enqueue(frame(9), (r) => results.push(r));
  await until(() => results.length === 1, 30_000, 'the busy frame given up');
  assert.equal(results[0]?.ok, false);
  assert.equal(q.stats.droppedBusy, 1);
  assert.match(failures[0]!, /stayed full/);
  q.stop();
});

test('tx queue: a bus that stays busy holds back its own frames only; the others go out at once', async (t) => {
  const out: string[] = [];
  const q = new TxQueue(
    (f): SendResult => {
      if (f.bus === 'can1') return { ok: false, busy: true, error: 'ENOBUFS' }; // no ACK on can1, say
      out.push(`${f.bus}:${f.data[3]}`);
      return { ok: true, tsUs: 0 };
    },
    { retryMs: 60_000, maxQueued: 100 },
  );
  t.after(() => q.stop());
  for (let i = 0; i < 5; i++) {
    q.enqueue({ ...frame(i), bus: 'can1' });
    q.enqueue({ ...frame(i), bus: 'can0' });
  }
  assert.deepEqual(out, ['can0:0', 'can0:1', 'can0:2', 'can0:3', 'can0:4'], 'can0 did not wait for can1');
  assert.equal(q.length, 5, "can1's five wait, in their own line");
  assert.ok(q.stats.retries > 0);
});

test('tx queue: the busy retry window is on the monotonic clock: the wall clock stepped back does not stretch it', async (t) => {
  const results: SendResult[] = [];
  const q = new TxQueue((): SendResult => ({ ok: false, busy: true, error: 'ENOBUFS' }), { retryMs: 200, maxQueued: 10 });
  t.after(() => q.stop());
  const realNow = Date.now;
  t.after(() => (Date.now = realNow));
  q.enqueue(frame(1), (r) => results.push(r));
  await new Promise((r) => setTimeout(r, 20));
  const stepped = realNow() - 3_600_000;
  Date.now = () => stepped; // an hour back (NTP, an RTC-less boot): the wall clock stands still there
  await until(() => results.length === 1, 10_000, 'the busy frame given up after its 200 ms');
  assert.equal(q.stats.droppedBusy, 1);
});

test('tx queue: a bus that stays busy keeps the queue from emptying, and its memory stays bounded by what waits', async (t) => {
  // Each round 100 frames come in and the kernel takes 90 before it is full again: the queue never
  // empties (the case where every handled frame used to be kept for ever), 10 more wait each round.
  let budget = 0;
  let sent = 0;
  const q = new TxQueue(
    (): SendResult => {
      if (budget <= 0) return { ok: false, busy: true, error: 'ENOBUFS' };
      budget--;
      sent++;
      return { ok: true, tsUs: 0 };
    },
    { retryMs: 60_000, maxQueued: 10_000 },
  );
  t.after(() => q.stop()); // a failed assertion must not leave its retry timer running
  let enqueued = 0;
  for (let round = 0; round < 200; round++) {
    for (let i = 0; i < 100; i++) q.enqueue(frame(enqueued++ & 0xff));
    budget += 90;
    // The queue's own 1 ms retry timer sends them; polled as often (until() polls every 100 ms).
    for (const deadline = Date.now() + 10_000; budget > 0; ) {
      assert.ok(Date.now() < deadline, `round ${round}: 90 frames transmitted within 10 s`);
      await new Promise((r) => setTimeout(r, 1));
    }
    assert.equal(q.length, 10 * (round + 1), 'control: the queue never empties, or this test checks nothing');
    assert.ok(q.heldItems <= 2 * q.length + 1025, `round ${round}: ${q.heldItems} items held for ${q.length} waiting`);
  }
  assert.equal(sent, 18_000);
  assert.ok(q.heldItems < 6_000, `${q.heldItems} of ${enqueued} frames still held`);
  assert.equal(q.stats.droppedBusy + q.stats.droppedFull, 0);
  assert.equal(q.stop(), 2000, 'stopping says how many frames were never transmitted');
});

test('outbox: survives reopening, acks delete, bounded with pruning counted', () => {
  const file = join(tempDir('canrelay-outbox-'), 'a.sqlite');
  let db = openStateDb(file);
  let ob = new Outbox(db, 5);
  for (let i = 0; i < 3; i++) ob.append({ type: 'log', data: { ts: 't', level: 'info', message: `m${i}` } });
  db.close();
  db = openStateDb(file);
  ob = new Outbox(db, 5);
  assert.equal(ob.size, 3);
  const p = ob.pending(0);
  assert.deepEqual(
    p.map((e) => e.data.message),
    ['m0', 'm1', 'm2'],
  );
  ob.ack(p[1]!.seq);
  assert.deepEqual(
    ob.pending(0).map((e) => e.data.message),
    ['m2'],
  );
  for (let i = 3; i < 10; i++) ob.append({ type: 'log', data: { ts: 't', level: 'info', message: `m${i}` } });
  assert.equal(ob.size, 5);
  assert.equal(ob.pruned, 3);
  assert.deepEqual(
    ob.pending(0).map((e) => e.data.message),
    ['m5', 'm6', 'm7', 'm8', 'm9'],
  );
  db.close();
});

test('outbox: an event pruned after it was written to a lost link counts as pruned only if the next welcome says the bridge lacks it', () => {
  const db = openStateDb(join(tempDir('canrelay-outbox-'), 'a.sqlite'));
  const ob = new Outbox(db, 2);
  const seqs = [0, 1].map((i) => ob.append({ type: 'log', data: { ts: 't', level: 'info', message: `m${i}` } }));
  ob.linkLost(seqs[1]!); // both written to a link that went away before their acks
  for (let i = 2; i < 5; i++) ob.append({ type: 'log', data: { ts: 't', level: 'info', message: `m${i}` } });
  assert.equal(ob.size, 2);
  assert.equal(ob.pruned, 1, 'm2 surely never reached the bridge; m0 and m1 may have');
  ob.settle(seqs[0]!); // the welcome: the bridge has m0, not m1
  assert.equal(ob.pruned, 2, 'm1 counted now; m0 was delivered, not lost');
  ob.settle(0);
  assert.equal(ob.pruned, 2, 'settled once');
  db.close();
});

test('outbox: at the first welcome, events numbered below what the bridge has from the previous run are numbered again above it, in order, and the numbering goes on from there after a restart', () => {
  const file = join(tempDir('canrelay-outbox-'), 'a.sqlite');
  const log = (m: string) => ({ type: 'log' as const, data: { ts: 't', level: 'info' as const, message: m } });
  let db = openStateDb(file);
  let ob = new Outbox(db, 100);
  ob.append(log('old0'));
  ob.ack(ob.append(log('old1'))); // written and acknowledged: the file's numbering stands at 2
  db.close();
  // The previous run then handed out 3 and never wrote it (the disk refused); the bridge has it.
  db = openStateDb(file);
  ob = new Outbox(db, 100);
  const made = ['n0', 'n1', 'n2'].map((m) => ob.append(log(m)));
  assert.deepEqual(made, [3, 4, 5], 'this run numbers from the file');
  ob.welcome(3); // moved by one: each row onto its neighbour's number (no primary-key collision)
  assert.deepEqual(
    ob.pending(3).map((e) => [e.seq, e.data.message]),
    [
      [4, 'n0'],
      [5, 'n1'],
      [6, 'n2'],
    ],
  );
  assert.equal(ob.renumbered, 3);
  assert.equal(ob.append(log('n3')), 7);
  ob.welcome(3); // a later welcome of the same run changes nothing
  assert.equal(ob.pending(3).length, 4);
  db.close();
  db = openStateDb(file);
  ob = new Outbox(db, 100);
  assert.equal(ob.append(log('next run')), 8, 'the file remembers the numbers given');
  ob.welcome(7); // the bridge has up to n3: nothing to renumber, and the rest is acknowledged
  assert.deepEqual(
    ob.pending(0).map((e) => e.data.message),
    ['next run'],
  );
  db.close();
});
