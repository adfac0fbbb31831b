/** The clock pieces of the data plane (core/uplink/clock.ts) and agent B's age check, without processes. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CanFrame } from '../../../core/can/frame.js';
import { ClockEstimator, CLOCK_RESOLUTION_MS, type ClockFix, earliestOnBridgeMs, frameTimesProblem, noLaterThanArrival, transmitDeadlineMs } from '../../../core/uplink/clock.js';
import { decodeBatch, encodeBatch, KIND_DOWN } from '../../../core/uplink/frame-codec.js';
import type { SendResult } from '../../../agent/sources/source.js';
import { TxQueue } from '../../../agent/tx-queue.js';
import { Downlink } from '../../../agent/uplink/downlink.js';
import { FrameUploader } from '../../../agent/uplink/frame-uploader.js';
import { testFrame } from '../../helpers/can-frames.js';

const frame = (tsMs: number, n = 0): CanFrame => testFrame({ data: Uint8Array.of(n), tsUs: tsMs * 1000 });

test('clock estimator: offset from the midpoint, error half the round trip; the best sample wins; a stepped clock starts over', () => {
  const e = new ClockEstimator();
  const fix = (): ClockFix | undefined => e.fix; // read afresh each time (no narrowing across adds)
  assert.equal(fix(), undefined);
  // Local clock 3,000 ms behind the bridge; a 40 ms round trip, then a 10 ms one.
  assert.equal(e.add(1000, 4020, 1040), true);
  assert.deepEqual(e.fix, { offsetMs: 3000, errorMs: 20 + CLOCK_RESOLUTION_MS });
  assert.equal(e.add(2000, 5006, 2010), true);
  assert.deepEqual(e.fix, { offsetMs: 3001, errorMs: 5 + CLOCK_RESOLUTION_MS });
  assert.equal(e.add(3000, 6000, 3100), true, 'a worse sample is kept but not used');
  assert.equal(fix()?.errorMs, 5 + CLOCK_RESOLUTION_MS);
  assert.equal(e.add(4000, 4000, 3990), false, 'a negative round trip is unusable');
  // The local clock is stepped 10 s: the new sample contradicts the old ones, which are dropped.
  assert.equal(e.add(15_000, 8000, 15_020), true);
  assert.deepEqual(e.fix, { offsetMs: -7010, errorMs: 10 + CLOCK_RESOLUTION_MS });
});

test('deadlines count every uncertainty against the frame; absurd times are refused', () => {
  const origin = { offsetMs: 500, errorMs: 10 }; // A's clock is 500 ms behind the bridge
  const local = { offsetMs: -200, errorMs: 5 }; // B's clock is 200 ms ahead of it
  assert.equal(earliestOnBridgeMs(1_000_000, origin), 1000 + 500 - 10);
  // On B's clock the frame was received at 1000 + 500 + 200 = 1700 at the earliest (minus both errors).
  assert.equal(transmitDeadlineMs(1_000_000, origin, local, 2000), 1700 - 15 + 2000);
  const now = 1_800_000_000_000;
  assert.equal(frameTimesProblem([{ frame: frame(now), seq: 1 }], { offsetMs: 0, errorMs: 0 }, now, { offsetMs: 0, errorMs: 0 }), null);
  assert.match(
    frameTimesProblem([{ frame: { ...frame(now), tsUs: 1e300 }, seq: 1 }], { offsetMs: 0, errorMs: 0 }, now, { offsetMs: 0, errorMs: 0 }) ?? '',
    /frame 0 has timestamp/,
  );
  assert.match(frameTimesProblem([{ frame: frame(now + 120_000), seq: 1 }], { offsetMs: 0, errorMs: 0 }, now, { offsetMs: 0, errorMs: 0 }) ?? '', /from now/);
  assert.equal(
    frameTimesProblem([{ frame: frame(now + 3000), seq: 1 }], { offsetMs: -3000, errorMs: 2 }, now, { offsetMs: 0, errorMs: 0 }),
    null,
    'a clock 3 s ahead is converted first',
  );
});

test('agent B: a relayed frame past its age is dropped and counted at the transmit, a fresh one goes out; a bad batch is refused whole', () => {
  const sent: CanFrame[] = [];
  const tx = new TxQueue((f): SendResult => (sent.push(f), { ok: true, tsUs: Date.now() * 1000 }), { retryMs: 10, maxQueued: 100 });
  const d = new Downlink(tx, 2000);
  const local = { offsetMs: 0, errorMs: 3 };
  const acks: number[] = [];
  d.onAck = (n) => acks.push(n);
  const now = Date.now();
  const batch = (n: number, frames: CanFrame[]) =>
    decodeBatch(encodeBatch({ kind: KIND_DOWN, batch: n, origin: 'gw-a', clock: { offsetMs: 0, errorMs: 2 }, frames: frames.map((frame, i) => ({ frame, seq: i + 1 })) }));
  assert.equal(d.apply(batch(1, [frame(now - 1996, 1), frame(now - 100, 2)]), local), undefined);
  assert.deepEqual(
    sent.map((f) => f.data[0]),
    [2],
    '1,996 ms plus 5 ms of uncertainty is too old for 2,000 ms',
  );
  assert.equal(tx.stats.droppedTooOld, 1);
  assert.deepEqual(acks, [1], 'acknowledged once every frame was transmitted or counted');
  const bad = { ...frame(now, 3), tsUs: 1e300 };
  assert.match(d.apply(batch(2, [frame(now, 4), bad]), local) ?? '', /timestamp/);
  assert.equal(sent.length, 1, 'none of the bad batch was transmitted');
  assert.deepEqual(acks, [1]);
  assert.equal(d.apply(batch(3, [frame(now, 5)]), undefined), undefined);
  assert.equal(tx.stats.droppedTooOld, 2, 'without a clock fix nothing can be proven fresh');
  tx.stop();
});

test('agent A: a frame whose time a receiver would refuse is left out and counted, the rest of its batch goes', async () => {
  const up = new FrameUploader({ maxBufferedFrames: 10_000, maxAgeMs: 2000 });
  const sent: Buffer[] = [];
  up.attach({ send: (b) => sent.push(b), bufferedAmount: () => 0, clock: () => ({ offsetMs: 0, errorMs: 2 }) });
  up.push(frame(Date.now(), 1));
  up.push({ ...frame(Date.now(), 2), tsUs: 1e300 });
  up.push(frame(Date.now(), 3));
  await new Promise((r) => setImmediate(r));
  assert.equal(sent.length, 1);
  assert.deepEqual(
    decodeBatch(sent[0]!).frames.map((f) => f.frame.data[0]),
    [1, 3],
  );
  assert.equal(up.stats.droppedBadTime, 1);
  up.ack(1);
  assert.equal(up.buffered, 0);
});

test('a batch whose frames would have been received after it arrived is moved back to its arrival; one that is not keeps its fix', () => {
  const arrival = 1_800_000_000_000;
  const origin = { offsetMs: 1000, errorMs: 5 }; // a stale offset: the origin's clock has since been stepped forward
  const sf = (tsMs: number) => ({ frame: frame(tsMs), seq: 1 });
  // Newest frame 30 s ahead of its arrival on the bridge's clock (earliest: ts + 1000 - 5).
  const moved = noLaterThanArrival([sf(arrival - 1000 + 30_000), sf(arrival - 1000 + 29_000)], origin, arrival);
  assert.equal(earliestOnBridgeMs((arrival - 1000 + 30_000) * 1000, moved), arrival, 'the newest frame ages from its arrival');
  assert.equal(moved.errorMs, 5);
  assert.equal(earliestOnBridgeMs((arrival - 1000 + 29_000) * 1000, moved), arrival - 1000, 'the others keep their spacing');
  const fine = { offsetMs: 0, errorMs: 2 };
  assert.equal(noLaterThanArrival([sf(arrival - 50)], fine, arrival), fine, 'a batch from the past is unchanged');
  assert.equal(noLaterThanArrival([sf(arrival + 1)], fine, arrival), fine, 'within its error bound: possible, unchanged');
});

test('agent B: a frame stamped in the future is transmitted no later than the age limit after it arrived, whatever its stamp says', async () => {
  // The origin's clock jumped 30 s ahead and no bridge moved it back: its frames look 30 s younger.
  let busy = true;
  const sent: CanFrame[] = [];
  const tx = new TxQueue((f): SendResult => (busy ? { ok: false, busy: true, error: 'ENOBUFS' } : (sent.push(f), { ok: true, tsUs: Date.now() * 1000 })), {
    retryMs: 60_000,
    maxQueued: 100,
  });
  const d = new Downlink(tx, 200);
  const acks: number[] = [];
  d.onAck = (n) => acks.push(n);
  const b = decodeBatch(encodeBatch({ kind: KIND_DOWN, batch: 1, origin: 'gw-a', clock: { offsetMs: 0, errorMs: 2 }, frames: [{ frame: frame(Date.now() + 30_000), seq: 1 }] }));
  assert.equal(d.apply(b, { offsetMs: 0, errorMs: 2 }), undefined);
  await new Promise((r) => setTimeout(r, 400)); // the bus stays busy past the 200 ms limit
  busy = false;
  for (const deadline = Date.now() + 5000; acks.length === 0; ) {
    assert.ok(Date.now() < deadline, 'the batch was handled');
    await new Promise((r) => setTimeout(r, 5));
  }
  tx.stop();
  assert.equal(sent.length, 0, 'never transmitted');
  assert.equal(tx.stats.droppedTooOld, 1, 'dropped and counted');
});

test('tx queue: a deadline is kept on a monotonic clock; the wall clock stepped back does not extend it', async (t) => {
  let busy = true;
  const results: SendResult[] = [];
  const tx = new TxQueue((): SendResult => (busy ? { ok: false, busy: true, error: 'ENOBUFS' } : { ok: true, tsUs: 0 }), { retryMs: 60_000, maxQueued: 10 });
  t.after(() => tx.stop());
  const realNow = Date.now;
  t.after(() => (Date.now = realNow));
  tx.enqueue(frame(0), (r) => results.push(r), Date.now() + 100);
  Date.now = () => realNow() - 3_600_000; // NTP steps the wall clock an hour back
  await new Promise((r) => setTimeout(r, 250));
  busy = false;
  for (const deadline = realNow() + 5000; results.length === 0; ) {
    assert.ok(realNow() < deadline, 'the frame was handled');
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.equal(results[0]!.ok, false, 'past its deadline: not transmitted');
  assert.equal(tx.stats.droppedTooOld, 1);
});
