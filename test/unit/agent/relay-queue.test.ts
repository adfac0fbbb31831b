/**
 * Agent B's relay path with its real pieces (Downlink → TxQueue → DownAcks): what a cumulative DOWN ack
 * covers while the buses drain at their own pace, the per-bus bound of the transmit queue, relayed frames
 * dropped when what they were relayed under ends, a stopped queue, and a transmit that throws.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CanFrame } from '../../../core/can/frame.js';
import { decodeBatch, encodeBatch, KIND_DOWN, type Batch } from '../../../core/uplink/frame-codec.js';
import type { SendResult } from '../../../agent/sources/source.js';
import { TxQueue } from '../../../agent/tx-queue.js';
import { DownAcks } from '../../../agent/uplink/down-acks.js';
import { Downlink } from '../../../agent/uplink/downlink.js';
import { testFrame } from '../../helpers/can-frames.js';
import { until } from '../../helpers/until.js';

const LOCAL = { offsetMs: 0, errorMs: 2 };
const frame = (bus: string, n: number): CanFrame => testFrame({ bus, data: Uint8Array.of(n) });
/** A DOWN batch as agent B decodes it: frames for the given buses, numbered from `seq0` per batch. */
const down = (batch: number, buses: string[], seq0 = 1): Batch =>
  decodeBatch(encodeBatch({ kind: KIND_DOWN, batch, origin: 'gw-a', clock: LOCAL, frames: buses.map((bus, i) => ({ frame: frame(bus, batch), seq: seq0 + i })) }));

/** A transmit path whose buses can be made busy (the kernel's queue full: no ACK on that bus). */
function bus(): { busy: Set<string>; sent: string[]; transmit: (f: CanFrame) => SendResult } {
  const busy = new Set<string>();
  const sent: string[] = [];
  return {
    busy,
    sent,
    transmit: (f) => (busy.has(f.bus) ? { ok: false, busy: true, error: 'ENOBUFS' } : (sent.push(`${f.bus}:${f.data[0]}`), { ok: true, tsUs: Date.now() * 1000 })),
  };
}

test('the cumulative DOWN ack covers only batches done without a gap: a later batch done first on another bus does not ack an earlier one still waiting', async (t) => {
  const b = bus();
  const tx = new TxQueue(b.transmit, { retryMs: 60_000, maxQueued: 1000 });
  t.after(() => tx.stop());
  const d = new Downlink(tx, 60_000);
  let sent: number[] = [];
  let acks = new DownAcks((n) => sent.push(n));
  d.onAck = (n) => acks.ack(n);
  b.busy.add('can0'); // can0 retrying, can1 keeps up
  d.apply(down(10, ['can0']), LOCAL);
  d.apply(down(11, ['can1']), LOCAL);
  d.apply(down(12, ['can1']), LOCAL);
  assert.deepEqual(b.sent, ['can1:11', 'can1:12'], 'the later batches are transmitted first');
  await new Promise((r) => setTimeout(r, 400)); // past an ack tick (250 ms)
  assert.deepEqual(sent, [], 'no ack: batch 10 still waits for can0, and an ack of 11 or 12 would make the bridge forget it');

  // The link is lost and comes back (the same bridge): the bridge resends 10, 11, 12. 10 is still queued.
  acks.close();
  sent = [];
  acks = new DownAcks((n) => sent.push(n));
  for (const n of [10, 11, 12]) d.apply(down(n, [n === 10 ? 'can0' : 'can1']), LOCAL);
  assert.equal(d.stats.duplicateBatches, 3, 'the resends are skipped by the dedupe');
  await new Promise((r) => setTimeout(r, 400));
  assert.deepEqual(sent, [], 'a resend of a batch whose frames still wait is not acknowledged');
  assert.deepEqual(b.sent, ['can1:11', 'can1:12'], 'nor transmitted twice');

  b.busy.delete('can0'); // can0 takes frames again: 10 is done, and with it everything up to 12
  await until(() => sent.length > 0, 5000, 'the ack once batch 10 is done');
  assert.deepEqual(sent, [12], 'one ack on the current link, covering 10 to 12');
  assert.deepEqual(b.sent, ['can1:11', 'can1:12', 'can0:10']);
});

test('a batch dropped whole on a busy bus (counted) is done, and the ack moves over it', async (t) => {
  const b = bus();
  const tx = new TxQueue(b.transmit, { retryMs: 50, maxQueued: 1000 });
  t.after(() => tx.stop());
  const d = new Downlink(tx, 60_000);
  const acks: number[] = [];
  d.onAck = (n) => acks.push(n);
  b.busy.add('can0');
  d.apply(down(1, ['can0', 'can1']), LOCAL);
  d.apply(down(2, ['can1']), LOCAL);
  assert.deepEqual(acks, []);
  await until(() => acks.length > 0, 5000, 'the busy frame given up after --tx-retry-ms');
  assert.deepEqual(acks, [2]);
  assert.equal(tx.stats.droppedBusy, 1);
});

test("tx queue: one bus that stays busy fills only its own share; the other buses' frames are still taken", (t) => {
  const b = bus();
  b.busy.add('can0');
  const tx = new TxQueue(b.transmit, { retryMs: 60_000, maxQueued: 1000, maxQueuedPerBus: 500 });
  t.after(() => tx.stop());
  const results: SendResult[] = [];
  for (let i = 0; i < 2000; i++) tx.enqueue(frame('can0', i & 0xff), (r) => results.push(r));
  // At a few thousand relayed frames a second can1 keeps up: every one of its frames is taken and sent.
  for (let i = 0; i < 2000; i++) tx.enqueue(frame('can1', i & 0xff));
  assert.equal(b.sent.length, 2000, "can1's frames all transmitted, none refused for can0's sake");
  assert.equal(tx.length, 500, "can0's frames stop at its share");
  assert.equal(tx.stats.droppedFull, 1500, "can0's others refused and counted");
  assert.match((results[0] as { error: string }).error, /transmit queue of can0 full \(500 frames waiting for it\)/);
  // And a second busy bus: can2 takes up to its share, then the shared bound (1000) holds for all.
  b.busy.add('can2');
  for (let i = 0; i < 2000; i++) tx.enqueue(frame('can2', i & 0xff));
  assert.equal(tx.length, 1000, 'the shared bound still holds');
  assert.equal(tx.stats.droppedFull, 1500 + 1500);
  assert.ok(tx.heldItems <= 1000);
});

test('tx queue: a bus whose kernel holds as many frames of this agent as it may (--tx-kernel-frames) holds its frames back, not counted as ENOBUFS retries; each frame handed over with its deadline', async (t) => {
  let held = true;
  const sent: number[] = [];
  const deadlines: number[] = [];
  const tx = new TxQueue(
    (f, _origin, notAfter): SendResult => {
      if (held) return { ok: false, busy: true, kernelHeld: true, error: 'the kernel still holds 8 frames' };
      deadlines.push(notAfter);
      sent.push(f.data[0]!);
      return { ok: true, tsUs: 0 };
    },
    { retryMs: 5000, maxQueued: 100 },
  );
  t.after(() => tx.stop());
  const results: SendResult[] = [];
  const before = performance.now();
  tx.enqueue(frame('can0', 1), (r) => results.push(r), Date.now() + 10_000);
  tx.enqueue(frame('can0', 2), (r) => results.push(r));
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(sent, []);
  assert.equal(tx.stats.retries, 0, 'waiting for the kernel to send what it holds is not an ENOBUFS retry');
  held = false;
  await until(() => results.length === 2, 2000, 'both sent once the kernel took its frames');
  assert.deepEqual(sent, [1, 2]);
  assert.ok(Math.abs(deadlines[0]! - (before + 10_000)) < 100, `the deadline handed over on the monotonic clock (${deadlines[0]! - before} ms ahead)`);
  assert.equal(deadlines[1], Infinity, 'none given: none handed over');
});

test("tx queue: a bus whose answer is to wait (its controller's mode not read yet) holds its frames past --tx-retry-ms, up to the wait it names; not counted as ENOBUFS retries; then failed, not dropped as busy", async (t) => {
  // The answer: wait (for up to `waitMs`), then ENOBUFS (`busy`), then sent.
  let answer: 'wait' | 'busy' | 'send' = 'wait';
  let waitMs = 60_000;
  const sent: number[] = [];
  const tx = new TxQueue(
    (f): SendResult =>
      answer === 'wait'
        ? { ok: false, busy: true, error: 'mode not read yet', waitMs }
        : answer === 'busy'
          ? { ok: false, busy: true, error: 'ENOBUFS' }
          : (sent.push(f.data[0]!), { ok: true, tsUs: 0 }),
    { retryMs: 200, maxQueued: 100 },
  );
  t.after(() => tx.stop());
  const results: SendResult[] = [];
  tx.enqueue(frame('can0', 1), (r) => results.push(r));
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(results.length, 0, 'still waiting past --tx-retry-ms (200)');
  assert.equal(tx.stats.retries, 0, 'waiting for the mode is not an ENOBUFS retry');
  // The mode known, the kernel's queue full: the ENOBUFS window starts now, not at the first wait.
  answer = 'busy';
  await new Promise((r) => setTimeout(r, 20));
  answer = 'send';
  await until(() => results.length === 1, 2000, 'the frame sent once the queue has room');
  assert.deepEqual(sent, [1], 'not dropped as busy for the time spent waiting for the mode');
  assert.equal(tx.stats.droppedBusy, 0);
  answer = 'wait';
  waitMs = 300;
  tx.enqueue(frame('can0', 2), (r) => results.push(r));
  await until(() => results.length === 2, 2000, 'the second frame given up');
  assert.match(results[1]!.ok ? '' : results[1]!.error, /mode not read yet/);
  assert.deepEqual(sent, [1]);
  assert.ok(tx.stats.retries > 0, 'the ENOBUFS answers counted as retries');
  assert.equal(tx.stats.droppedBusy, 0);
  assert.equal(tx.stats.failed, 1);
});

test('tx queue: the default share of one bus is half the queue', (t) => {
  const b = bus();
  b.busy.add('can0');
  const tx = new TxQueue(b.transmit, { retryMs: 60_000, maxQueued: 10_000 });
  t.after(() => tx.stop());
  for (let i = 0; i < 10_000; i++) tx.enqueue(frame('can0', 0));
  assert.equal(tx.length, 5000);
});

test('tx queue: a transmit or a callback that throws fails that frame (counted, not retried) and the queue goes on; nothing escapes to the caller', () => {
  const sent: number[] = [];
  let throwOn = 2;
  const failures: string[] = [];
  const tx = new TxQueue(
    (f) => {
      if (f.data[0] === throwOn) throw new Error('addon fault');
      sent.push(f.data[0]!);
      return { ok: true, tsUs: 0 };
    },
    { retryMs: 100, maxQueued: 100, onFailure: (_f, e) => void failures.push(e) },
  );
  const results: string[] = [];
  for (const n of [1, 2, 3]) tx.enqueue(frame('can0', n), (r) => void results.push(r.ok ? 'ok' : r.error));
  assert.deepEqual(sent, [1, 3], 'the frame after the throw is transmitted, the thrown one not retried');
  assert.deepEqual(results, ['ok', 'internal error while transmitting: addon fault', 'ok']);
  throwOn = -1;
  tx.enqueue(frame('can0', 4), () => {
    throw new Error('callback fault');
  });
  tx.enqueue(frame('can0', 5));
  assert.deepEqual(sent, [1, 3, 4, 5], 'a throwing callback stops nothing');
  assert.equal(tx.stats.internalErrors, 2);
  assert.equal(tx.stats.failed, 1);
  assert.match(failures.join('\n'), /callback fault/);
});

test('relayed frames still waiting are dropped (counted) when their group ends; commands and socketcand sends stay; the batches are done and acked', async (t) => {
  const b = bus();
  const tx = new TxQueue(b.transmit, { retryMs: 60_000, maxQueued: 1000 });
  t.after(() => tx.stop());
  const d = new Downlink(tx, 60_000);
  const acks: number[] = [];
  d.onAck = (n) => acks.push(n);
  b.busy.add('can0');
  b.busy.add('can1');
  d.apply(down(1, ['can0', 'can0', 'can1']), LOCAL);
  const command: SendResult[] = [];
  tx.enqueue(frame('can0', 200), (r) => command.push(r)); // a send_frame command, behind the relayed frames
  d.apply(down(2, ['can0']), LOCAL);
  assert.equal(tx.length, 5);
  assert.equal(d.dropQueued('droppedGroupChanged', 'the group changed'), 4);
  assert.equal(tx.stats.droppedGroupChanged, 4);
  assert.equal(tx.length, 1, 'the command still waits');
  assert.deepEqual(acks, [2], 'the relayed batches are done (every frame counted)');
  b.busy.clear();
  await until(() => command.length === 1, 5000, 'the command transmitted');
  assert.deepEqual(b.sent, ['can0:200'], 'no relayed frame reached a bus after the drop');
  assert.equal(d.dropQueued('droppedUnauthorized', 'refused'), 0);
});

test('the agent stopping while a batch waits on a busy bus: the waiting frames are dropped (counted), so the last ack covers the later batches already transmitted and the next run does not transmit them again', () => {
  const b = bus();
  const tx = new TxQueue(b.transmit, { retryMs: 60_000, maxQueued: 1000 });
  const d = new Downlink(tx, 60_000);
  const sent: number[] = [];
  const acks = new DownAcks((n) => sent.push(n));
  d.onAck = (n) => acks.ack(n);
  b.busy.add('can1'); // no ACK on can1
  d.apply(down(101, ['can1']), LOCAL);
  d.apply(down(102, ['can0']), LOCAL);
  assert.deepEqual(b.sent, ['can0:102'], '102 transmitted; 101 waits for can1');
  const command: SendResult[] = [];
  tx.enqueue(frame('can1', 7), (r) => command.push(r));
  // systemctl restart: the queue stops, then the uplink sends its last ack as it closes the link.
  assert.equal(tx.stop(), 2, 'two frames were waiting');
  acks.flushAck();
  assert.deepEqual(sent, [102], 'the bridge forgets 101 and 102: nothing of them is resent to the next run');
  assert.equal(tx.stats.droppedStopping, 2);
  assert.deepEqual(command, [{ ok: false, busy: false, error: 'the agent is stopping: not transmitted' }], 'a waiting command is told');
  assert.deepEqual(b.sent, ['can0:102']);
});

test('a stopped transmit queue takes nothing more: a DOWN batch arriving during the stop is neither transmitted nor acknowledged; a command is refused', async () => {
  const b = bus();
  const tx = new TxQueue(b.transmit, { retryMs: 60_000, maxQueued: 1000 });
  const d = new Downlink(tx, 60_000);
  const acks: number[] = [];
  d.onAck = (n) => acks.push(n);
  d.apply(down(1, ['can0']), LOCAL);
  assert.deepEqual(acks, [1]);
  assert.equal(tx.stop(), 0);
  assert.equal(d.apply(down(2, ['can0']), LOCAL), undefined);
  const command: SendResult[] = [];
  tx.enqueue(frame('can0', 9), (r) => command.push(r));
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(b.sent, ['can0:1'], 'nothing transmitted after the stop');
  assert.deepEqual(acks, [1], 'batch 2 not acknowledged: the bridge resends it to the next run');
  assert.equal(d.stats.batches, 1, 'not taken (the next run of this agent gets it again)');
  assert.equal(command[0]?.ok, false);
  assert.equal(tx.stats.refusedStopped, 1);
});

test("agent B learns of a new run of its peer from the frames: the run's first 500 frames lost show as 500 gaps, not thousands of duplicates", (t) => {
  const tx = new TxQueue(() => ({ ok: true, tsUs: Date.now() * 1000 }), { retryMs: 60_000, maxQueued: 100_000 });
  t.after(() => tx.stop());
  const d = new Downlink(tx, 60_000);
  const now = Date.now();
  const batch = (n: number, seqs: number[], tsMs: (seq: number) => number): Batch =>
    decodeBatch(
      encodeBatch({ kind: KIND_DOWN, batch: n, origin: 'gw-a', clock: LOCAL, frames: seqs.map((seq) => ({ frame: testFrame({ bus: 'can0', tsUs: tsMs(seq) * 1000 }), seq })) }),
    );
  const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i);
  // Run 1 of gw-a: 10,000 frames received over the last 20 s.
  for (let i = 0; i < 10; i++)
    d.apply(
      batch(i + 1, range(1 + i * 1000, 1000), (s) => now - 20_000 + s),
      LOCAL,
    );
  // gw-a restarts; B is offline meanwhile and the first 500 frames of the new run are lost on the way.
  for (let i = 0; i < 10; i++)
    d.apply(
      batch(100 + i, range(501 + i * 1000, 1000), (s) => now - 10_000 + s / 2),
      LOCAL,
    );
  assert.equal(d.stats.seqDuplicates, 0);
  assert.equal(d.stats.seqGaps, 500);
});

test('agent B checks the sequence of a new origin after 256 others were seen: the least recently used stream is forgotten, not the new one', (t) => {
  const tx = new TxQueue(() => ({ ok: true, tsUs: Date.now() * 1000 }), { retryMs: 60_000, maxQueued: 100_000 });
  t.after(() => tx.stop());
  const d = new Downlink(tx, 60_000);
  let n = 0;
  const one = (origin: string, seq: number): void => {
    d.apply(decodeBatch(encodeBatch({ kind: KIND_DOWN, batch: ++n, origin, clock: LOCAL, frames: [{ frame: testFrame({ bus: 'can0' }), seq }] })), LOCAL);
  };
  for (let i = 0; i < 256; i++) one(`old-${i}`, 1); // peers of earlier groups
  one('gw-new', 1);
  one('gw-new', 5);
  assert.equal(d.stats.seqGaps, 3, "the new origin's gap is seen");
});

test('a deadline that is not a number fails closed: the frame is refused as too old, never transmitted', () => {
  const b = bus();
  const tx = new TxQueue(b.transmit, { retryMs: 60_000, maxQueued: 1000 });
  const results: SendResult[] = [];
  tx.enqueueRelayed(frame('can0', 1), (r) => results.push(r), Number.NaN);
  tx.enqueue(frame('can0', 2), (r) => results.push(r), Number.NaN, 'command expired');
  tx.enqueue(frame('can0', 3), (r) => results.push(r)); // no deadline: goes out
  tx.stop();
  assert.deepEqual(b.sent, ['can0:3']);
  const said = results.map((r) => (r.ok ? 'sent' : r.error));
  assert.equal(said.length, 3);
  assert.match(said[0]!, /relay age limit/);
  assert.deepEqual(said.slice(1), ['command expired', 'sent']);
  assert.equal(tx.stats.droppedTooOld, 2);
});
