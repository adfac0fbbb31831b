/** The bound on command statuses a store holds while its database refuses them (cloud-bridge/pending-statuses.ts). */
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { MAX_PENDING_STATUSES, trimPendingStatuses, type PendingStatus } from '../../../cloud-bridge/pending-statuses.js';

const st = (id: string, status: PendingStatus['status']): PendingStatus => ({ id, status, ts: 't', error: null });

test('past the bound the oldest statuses go, but a sent one last: a command whose sent is lost reads as queued and is sent again', () => {
  const list: PendingStatus[] = [st('a', 'sent'), st('a', 'succeeded'), st('b', 'sent')];
  for (let i = 0; list.length < MAX_PENDING_STATUSES; i++) list.push(st(`q${i}`, 'failed'));
  assert.equal(trimPendingStatuses(list), 0, 'within the bound: nothing dropped');
  list.push(st('c', 'sent'), st('d', 'timed_out'));
  assert.equal(trimPendingStatuses(list), 2);
  assert.equal(list.length, MAX_PENDING_STATUSES);
  assert.deepEqual(
    list.slice(0, 3).map((x) => `${x.id} ${x.status}`),
    ['a sent', 'b sent', 'q1 failed'],
    'the oldest non-sent went (a succeeded, q0 failed); every sent stays',
  );
  assert.deepEqual(
    list.slice(-2).map((x) => x.id),
    ['c', 'd'],
  );
  // Only sent ones: the oldest of them go.
  const sent = Array.from({ length: MAX_PENDING_STATUSES + 3 }, (_, i) => st(`s${i}`, 'sent'));
  assert.equal(trimPendingStatuses(sent), 3);
  assert.equal(sent[0]!.id, 's3');
});
