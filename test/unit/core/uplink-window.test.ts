/** The data plane's shared batch pieces (core/uplink/): the sending window, the receiver's dedupe, the sequence checker, the ack clock. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ACK_MAX_PENDING, AckClock, PendingAcks } from '../../../core/uplink/ack-clock.js';
import { BatchDedupe } from '../../../core/uplink/batch-dedupe.js';
import { SendWindow } from '../../../core/uplink/send-window.js';
import { SeqChecker } from '../../../core/uplink/seq-checker.js';

/** Items are their own time in ms. */
const win = (): SendWindow<number> => new SendWindow<number>((t) => t);
const numbers = (w: SendWindow<number>): number[] => [...w.unsent()].map((b) => b.batch);

test('send window: cumulative acks free, a link change makes everything due again with the same numbers', () => {
  const w = win();
  w.add(1, [10, 11]);
  w.add(2, [12]);
  assert.deepEqual(numbers(w), [1, 2]);
  for (const b of w.unsent()) w.markSent(b);
  assert.equal(w.inFlight, 3);
  assert.equal(w.hasUnsent, false);
  w.add(3, [13], true);
  assert.equal(w.ack(1), 2);
  assert.equal(w.size, 2);
  assert.equal(w.resendAll(), 2, 'batches 2 and 3 were on the wire');
  assert.equal(w.inFlight, 0);
  assert.deepEqual(numbers(w), [2, 3], 'resent with their original numbers, in order');
  assert.equal(w.ack(99), 2);
  assert.equal(w.size, 0);
});

test('send window: only batches off the wire expire; an emptied batch is forgotten', () => {
  const w = win();
  w.add(1, [100, 200], true); // on the wire: the receiver checks the age
  w.add(2, [150, 300]);
  w.add(3, [120]);
  assert.equal(w.expire(250), 2, '150 of batch 2 and all of batch 3');
  assert.deepEqual(numbers(w), [2]);
  assert.equal(w.size, 3);
  w.resendAll();
  assert.equal(w.expire(250), 2, 'after a link change batch 1 ages too');
  assert.deepEqual(numbers(w), [2]);
  assert.equal(w.size, 1);
});

test('send window: an item past the age behind a fresh first one expires too (frames of several buses are not in time order)', () => {
  const w = win();
  w.add(1, [300, 120, 280]); // can1's frame stamped before can0's, delivered after it
  assert.equal(w.expire(250), 1, 'the 120 ms frame');
  assert.deepEqual([...w.unsent()][0]!.items, [300, 280]);
  assert.equal(w.expire(290), 1, 'and later the 280 ms one, by the earliest left');
});

test('send window: over the bound the oldest unsent batches go first, sent ones only past the hard bound', () => {
  const w = win();
  w.add(1, [1, 1, 1], true);
  w.add(2, [2, 2, 2]);
  w.add(3, [3, 3, 3]);
  assert.equal(w.trim(6, 12), 3, 'batch 2 (the oldest unsent) goes, batch 1 was sent');
  assert.deepEqual(numbers(w), [3]);
  assert.equal(w.size, 6);
  w.add(4, [4, 4, 4], true);
  w.add(5, [5, 5, 5], true);
  assert.equal(w.trim(3, 6), 6, 'batch 3 (unsent), then batch 1 (sent) past the hard bound');
  assert.equal(w.size, 6);
  assert.equal(w.inFlight, 6);
  assert.equal(w.clear(), 6);
});

test('batch dedupe: numbers at or below the position are duplicates; a new stream starts afresh; the position is shared', () => {
  const pos = { stream: 'run-1', batch: -1 };
  const d = new BatchDedupe(pos);
  assert.equal(d.accept(1), true);
  assert.equal(d.accept(3), true, 'gaps are normal');
  assert.equal(d.accept(3), false);
  assert.equal(d.accept(2), false);
  assert.deepEqual(pos, { stream: 'run-1', batch: 3 }, 'the owner sees (and may persist) the position');
  assert.equal(new BatchDedupe(pos).accept(3), false, 'a reconnect that shares the position keeps deduplicating');
  d.setStream('run-1');
  assert.equal(d.accept(3), false, 'the same stream keeps its position');
  d.setStream('run-2');
  assert.equal(d.accept(1), true, 'a new stream numbers afresh');
});

test('seq checker: gaps, duplicates and late arrivals with one rule; wrap-around; restart; bounded streams', () => {
  const s = new SeqChecker(2);
  for (const n of [1, 2, 3, 7, 7, 5, 8]) s.check('a', n);
  assert.deepEqual(s.totals, { gaps: 3, duplicates: 1, reordered: 1 }, '4-6 skipped, 7 twice, 5 late (gaps only grow)');
  s.check('a', 5);
  assert.equal(s.totals.duplicates, 2, 'a late number seen twice is a duplicate the second time');
  s.check('b', 0xffffffff);
  s.check('b', 0);
  s.check('b', 1);
  assert.equal(s.totals.gaps, 3, 'wrap-around is a normal step');
  s.check('a', 1);
  s.check('a', 2);
  assert.equal(s.totals.gaps, 3, 'sequence 1 starts a new run of the origin');
  s.restart();
  s.check('a', 50);
  s.check('a', 51);
  assert.equal(s.totals.gaps, 3, 'after restart() the next number is taken as the start');
  s.check('c', 1);
  s.check('c', 9);
  assert.equal(s.totals.gaps, 10, 'a stream past the bound is tracked: 2-8 skipped');
  assert.deepEqual(
    [...s.entries()].map(([k]) => k),
    ['a', 'c'],
    'in the place of the least recently used (b); the map never grows past the bound',
  );
  assert.equal(s.totals.duplicates, 2, "b's counts stay in the totals");
});

test('seq checker: a number behind the position whose frame is newer than any seen is a new run of the origin (its first frames lost), not a duplicate', () => {
  const s = new SeqChecker();
  const t0 = 1_800_000_000_000_000;
  for (let n = 1; n <= 10_000; n++) s.check('gw-a/can0', n, t0 + n * 1000); // run 1
  // The origin restarts; its first 500 frames are lost on the way (B offline, the backlog too old).
  for (let n = 501; n <= 10_500; n++) s.check('gw-a/can0', n, t0 + 20_000_000 + n * 1000);
  assert.deepEqual(s.totals, { gaps: 500, duplicates: 0, reordered: 0 }, 'the 500 lost frames are gaps; nothing is a duplicate');
  // A real duplicate (a frame seen before, resent) is still one: it is not newer.
  s.check('gw-a/can0', 10_400, t0 + 20_000_000 + 10_400 * 1000);
  assert.equal(s.totals.duplicates, 1);
  s.check('gw-a/can0', 10_501, t0 + 20_000_000 + 10_501 * 1000);
  assert.equal(s.totals.gaps, 500, 'and the new run goes on from where it is');
  // Without times (the bridge, which learns of a new run from hello and calls restart()), as before.
  const b = new SeqChecker();
  for (const n of [1, 2, 3, 1_000, 2]) b.check('k', n);
  assert.deepEqual(b.totals, { gaps: 996, duplicates: 1, reordered: 0 });
});

test('send window: batches written to a lost link are neither aged nor trimmed until the receiver has said what it has', () => {
  const w = win();
  w.add(1, [100], true);
  w.add(2, [110], true);
  w.add(3, [120]); // never written
  w.resendAll(true);
  assert.equal(w.expire(1000), 1, 'only the batch that never left ages out');
  assert.equal(w.trim(0, 10), 0, 'nor are the unsure ones trimmed below the hard bound');
  assert.equal(w.size, 2);
  // The receiver says it has batch 1 (acked before the settle): batch 2 surely never arrived.
  assert.equal(w.ack(1), 1);
  w.settle();
  assert.equal(w.expire(1000), 1, 'after the settle what is left ages out (counted as really dropped)');
  assert.equal(w.size, 0);
});

test('ack clock: many batches of many links give one ack per link per tick; a full count acks at once; held acks are asked again', async () => {
  const clock = new AckClock(30);
  const sent: string[] = [];
  const link = (name: string, hold = () => false): { acks: PendingAcks; flushAck: () => void } => {
    const l = {
      acks: undefined as unknown as PendingAcks,
      flushAck(): void {
        if (!l.acks.due) return;
        if (hold()) return l.acks.later();
        l.acks.done();
        sent.push(name);
      },
    };
    l.acks = new PendingAcks(l, clock);
    return l;
  };
  const a = link('a');
  const b = link('b');
  for (let i = 0; i < 5; i++) {
    a.acks.add();
    b.acks.add();
  }
  assert.deepEqual(sent, [], 'nothing before the tick');
  await new Promise((r) => setTimeout(r, 80));
  assert.deepEqual(sent.sort(), ['a', 'b'], 'one ack per link for its five batches');

  sent.length = 0;
  for (let i = 0; i < ACK_MAX_PENDING; i++) a.acks.add();
  assert.deepEqual(sent, ['a'], `the ${ACK_MAX_PENDING}th batch acks at once, without the timer`);
  await new Promise((r) => setTimeout(r, 80));
  assert.deepEqual(sent, ['a'], 'and the tick finds nothing more to send');

  let holding = true;
  const c = link('c', () => holding);
  c.acks.add();
  await new Promise((r) => setTimeout(r, 80));
  assert.deepEqual(sent, ['a'], 'held: not sent');
  holding = false;
  await new Promise((r) => setTimeout(r, 80));
  assert.deepEqual(sent, ['a', 'c'], 'asked again at a later tick, sent once no longer held');
});
