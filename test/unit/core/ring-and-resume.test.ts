import assert from 'node:assert/strict';
import { test } from 'node:test';
import { planResume } from '../../../core/console/resume.js';
import { HistoryStore } from '../../../core/console/history-store.js';
import { EventRing } from '../../../core/console/ring-buffer.js';

/** A ring over a store, fed with log entries; returns what its index says. */
function ringOf(capacity: number, maxAgeMs: number): { r: EventRing; push: (id: number, atMs?: number) => void; has: (id: number) => boolean } {
  const store = new HistoryStore(1 << 20);
  const r = new EventRing(store, capacity, maxAgeMs);
  return {
    r,
    push: (id, atMs = 0) => {
      r.prepare();
      r.push(id, store.appendText(r, 'log', `{"n":${id}}`, {}), atMs, id * 8);
    },
    has: (id) => r.slot(id) >= 0,
  };
}

test('ring keeps the newest `capacity` events and finds any by id', () => {
  const { r, push, has } = ringOf(5, 60_000);
  for (let id = 100; id < 112; id++) push(id);
  assert.equal(r.size, 5);
  assert.equal(r.oldestId, 107);
  for (let id = 107; id < 112; id++) assert.equal(r.offset(r.slot(id)), id * 8);
  assert.equal(has(106), false);
  assert.equal(has(112), false);
});

test('ring evicts by age, also when nothing new arrives', () => {
  const { r, push, has } = ringOf(100, 1000);
  push(1, 0);
  push(2, 500);
  push(3, 900);
  r.evictOlderThan(1400);
  assert.equal(r.oldestId, 2);
  r.evictOlderThan(5000);
  assert.equal(r.size, 0);
  assert.equal(has(3), false);
});

test('a ring that grew to 10,000 events, shrank while the bus was quiet, and filled again finds every event by its id', () => {
  const { r, push } = ringOf(10_000, 1_000_000);
  let id = 1;
  for (; id <= 10_000; id++) push(id, id);
  // Quiet: the age bound leaves a handful, and the ring gives back its index memory, halving each time
  // (10,000 → 5,000 → 2,500 → 1,250 → 625 → … : a ring of 312.5 slots found the wrong events).
  r.evictOlderThan(1_000_000 + 9_991);
  for (let i = 0; i < 10; i++) r.compact();
  assert.equal(r.size, 10);
  for (; id <= 12_000; id++) push(id, id);
  for (let k = r.oldestId!; k < id; k++) assert.equal(r.offset(r.slot(k)), k * 8, `event ${k}`);
  assert.equal(r.size, 2010);
});

const pos = { runStart: 1000, latest: 1200, oldest: 1100 };

test('resume: an id in the buffer resumes right after it', () => {
  assert.deepEqual(planResume(pos, { lastEventId: '1150' }), { cursor: 1150 });
  assert.deepEqual(planResume(pos, { lastEventId: '1099' }), { cursor: 1099 }, 'the id just before the oldest is still gap-free');
});

test('resume: the latest id is a clean resume even with an empty buffer', () => {
  assert.deepEqual(planResume({ ...pos, oldest: null }, { lastEventId: '1200' }), { cursor: 1200 });
});

test('resume: too old, previous run, future and garbage ids all reset', () => {
  const cases: [string, string][] = [
    ['1050', 'too_old'],
    ['5', 'previous_run'],
    ['1201', 'future'],
    ['abc', 'invalid'],
    ['-3', 'invalid'],
    ['', 'invalid'],
    ['1e3', 'invalid'],
  ];
  for (const [id, reason] of cases) {
    const p = planResume(pos, { lastEventId: id });
    assert.equal(p.reset?.reason, reason, `id ${JSON.stringify(id)}`);
    assert.equal(p.cursor, 1200, 'after a reset the client goes live');
    assert.equal(p.reset?.latest, 1200);
    assert.equal(p.reset?.oldest_available, 1100);
  }
});

test('no resume id: live, or the last n events with ?backlog', () => {
  assert.deepEqual(planResume(pos, {}), { cursor: 1200 });
  assert.deepEqual(planResume(pos, { backlog: 10 }), { cursor: 1190 });
  assert.deepEqual(planResume(pos, { backlog: 10_000 }), { cursor: 1099 });
});
