/**
 * The bound on command statuses a store holds while its database refuses them (cloud-bridge/pending-statuses.ts),
 * and PendingStatuses' index by command: after pushes and trims past the bound, each command's entries are
 * exactly those of the list (the stores' lookups read them instead of the list).
 */
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { MAX_PENDING_STATUSES, PendingStatuses, type PendingStatus } from '../../../cloud-bridge/pending-statuses.js';

const st = (id: string, status: PendingStatus['status']): PendingStatus => ({ id, status, ts: 't', error: null });

/** The statuses of `list` pushed in order, then trimmed: how many were dropped, and what is left. */
function trimmed(list: PendingStatus[]): { dropped: number; left: readonly PendingStatus[] } {
  const p = new PendingStatuses();
  for (const x of list) p.push(x);
  return { dropped: p.trim().length, left: p.entries() };
}

test('past the bound, first the changes a later one of the same command supersedes: every command keeps its latest status (a finished one stays finished)', () => {
  const list: PendingStatus[] = [st('a', 'sent'), st('a', 'delivered'), st('a', 'succeeded'), st('b', 'sent')];
  for (let i = 0; list.length < MAX_PENDING_STATUSES; i++) list.push(st(`q${i}`, 'failed'));
  assert.equal(trimmed(list).dropped, 0, 'within the bound: nothing dropped');
  list.push(st('b', 'delivered'), st('c', 'sent'), st('b', 'succeeded'));
  const { dropped, left } = trimmed(list);
  assert.equal(dropped, 3);
  assert.equal(left.length, MAX_PENDING_STATUSES);
  assert.deepEqual(
    left.slice(0, 2).map((x) => `${x.id} ${x.status}`),
    ['a succeeded', 'q0 failed'],
    "a's sent and delivered went (superseded), and b's first sent: none of them is a command's last word",
  );
  assert.deepEqual(
    left.slice(-3).map((x) => `${x.id} ${x.status}`),
    ['b delivered', 'c sent', 'b succeeded'],
  );
  const latest = new Map(left.map((x) => [x.id, x.status]));
  assert.deepEqual([latest.get('a'), latest.get('b'), latest.get('c')], ['succeeded', 'succeeded', 'sent']);
});

test('past the bound with one change per command: the oldest statuses go, but a sent one last: a command whose sent is lost reads as queued and is sent again', () => {
  const list: PendingStatus[] = [st('a', 'sent'), st('a2', 'succeeded'), st('b', 'sent')];
  for (let i = 0; list.length < MAX_PENDING_STATUSES; i++) list.push(st(`q${i}`, 'failed'));
  assert.equal(trimmed(list).dropped, 0, 'within the bound: nothing dropped');
  list.push(st('c', 'sent'), st('d', 'timed_out'));
  const { dropped, left } = trimmed(list);
  assert.equal(dropped, 2);
  assert.equal(left.length, MAX_PENDING_STATUSES);
  assert.deepEqual(
    left.slice(0, 3).map((x) => `${x.id} ${x.status}`),
    ['a sent', 'b sent', 'q1 failed'],
    'the oldest non-sent went (a2 succeeded, q0 failed); every sent stays',
  );
  assert.deepEqual(
    left.slice(-2).map((x) => x.id),
    ['c', 'd'],
  );
  // Only sent ones: the oldest of them go.
  const sent = trimmed(Array.from({ length: MAX_PENDING_STATUSES + 3 }, (_, i) => st(`s${i}`, 'sent')));
  assert.equal(sent.dropped, 3);
  assert.equal(sent.left[0]!.id, 's3');
});

test("PendingStatuses: each command's waiting statuses (and its latest) match the list, through trims past the bound", () => {
  const p = new PendingStatuses();
  const states: PendingStatus['status'][] = ['sent', 'delivered', 'succeeded', 'failed'];
  let dropped = 0;
  // A deterministic mix: many commands, several statuses each, past the bound twice over.
  for (let i = 0; i < 2 * MAX_PENDING_STATUSES + 500; i++) {
    p.push({ id: `c${(i * 7919) % 3001}`, status: states[(i * 31) % 4]!, ts: String(i), error: null });
    dropped += p.trim().length;
  }
  assert.equal(p.length, MAX_PENDING_STATUSES);
  assert.equal(dropped, MAX_PENDING_STATUSES + 500);
  const list = p.entries();
  const ids = new Set(list.map((s) => s.id));
  assert.deepEqual(new Set(p.ids()), ids, 'the index names exactly the commands of the list');
  for (const id of ids) {
    const mine = list.filter((s) => s.id === id);
    assert.deepEqual(p.of(id), mine, id);
    assert.equal(p.latest(id), mine.at(-1));
  }
  assert.equal(p.latest('c-none'), undefined);
  assert.deepEqual(p.of('c-none'), []);
});
