/**
 * The SQLite store's command lookups stay proportional to what they return, on a real file: a dongle's
 * newest commands are read from an index (no sort of all its commands; also in a database made before
 * the index, at its next open), and the statuses waiting for a disk that refuses writes (held here by a
 * second connection's write lock) are looked up by command, never walked per row. Also: a status for a
 * command deleted meanwhile is written behind without breaking the foreign key (it used to throw, and
 * every later write with it). PostgreSQL's view: test/e2e/pg-command-lookups.test.ts.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mock, test } from 'node:test';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { PendingStatuses } from '../../../cloud-bridge/pending-statuses.js';
import { BridgeStore, type CommandRow } from '../../../cloud-bridge/store.js';
import { StoreWrites } from '../../../core/state/state-health.js';
import type { CommandState } from '../../../core/console/events.js';
import { tempDir } from '../../helpers/processes.js';
import { until } from '../../helpers/until.js';

const iso = (ms: number): string => new Date(ms).toISOString();
const T0 = Date.parse('2030-01-01T00:00:00.000Z');

/** A store on a file, with the bridge's write handling (a busy disk is a refused write, not a throw). */
function open(file: string): { store: BridgeStore; db: Database.Database; writes: StoreWrites } {
  // timeout 0: a write lock held elsewhere refuses at once (SQLITE_BUSY), as a full disk would.
  const db = new Database(file, { timeout: 0 });
  const writes = new StoreWrites('bridge', file, pino({ level: 'silent' }));
  return { store: new BridgeStore(db, writes), db, writes };
}

const cmd = (id: string, dongle: string, createdMs: number, status: CommandState = 'queued'): CommandRow => ({
  id,
  dongle,
  type: 'send_frame',
  body: '{}',
  status,
  created_at: iso(createdMs),
  expires_at: iso(createdMs + 60_000),
});

/** The plan SQLite makes for the store's own statement (its text read from the prepared statement). */
function plan(store: BridgeStore, db: Database.Database, statement: string): string {
  const source = (store as unknown as { s: Record<string, { source: string }> }).s[statement]!.source;
  return db
    .prepare(`EXPLAIN QUERY PLAN ${source}`)
    .all('d', 10)
    .map((r) => (r as { detail: string }).detail)
    .join('; ');
}

test("a dongle's newest commands come from the index (no sort), in a new database and in one made before the index", () => {
  const file = join(tempDir('canrelay-lookups-'), 'bridge.sqlite');
  let { store, db } = open(file);
  let p = plan(store, db, 'recentIds');
  assert.match(p, /commands_by_dongle_created/, p);
  assert.doesNotMatch(p, /TEMP B-TREE/, `no sort of the dongle's commands: ${p}`);
  // A database of an earlier release: no index until its next open.
  db.exec('DROP INDEX commands_by_dongle_created');
  db.close();
  ({ store, db } = open(file));
  p = plan(store, db, 'recentIds');
  assert.match(p, /commands_by_dongle_created/, `created at open: ${p}`);
  assert.doesNotMatch(p, /TEMP B-TREE/, p);

  // The order is unchanged: created_at, then insertion (ties and an older one inserted late).
  store.insertCommand(cmd('c1', 'd', T0 + 10));
  store.insertCommand(cmd('c2', 'd', T0 + 20));
  store.insertCommand(cmd('c3', 'd', T0 + 20));
  store.insertCommand(cmd('x1', 'other', T0 + 30));
  store.insertCommand(cmd('c0', 'd', T0 + 5));
  store.insertCommand(cmd('c4', 'd', T0 + 40));
  assert.deepEqual(store.recentCommandIds('d', 10), ['c4', 'c3', 'c2', 'c1', 'c0']);
  assert.deepEqual(store.recentCommandIds('d', 2), ['c4', 'c3']);
  db.close();
});

test('statuses waiting for a refusing disk are looked up by command (never walked per row) and overlay every lookup as before', async () => {
  const file = join(tempDir('canrelay-lookups-'), 'bridge.sqlite');
  const { store, db, writes } = open(file);
  const N = 3000;
  for (let i = 0; i < N; i++) store.insertCommand(cmd(`c${i}`, i % 3 === 0 ? 'other' : 'd', T0 + i));
  // Another connection holds the write lock: every status from now on waits in memory.
  const other = new Database(file);
  other.exec('BEGIN IMMEDIATE');
  const expected = new Map<string, CommandState>();
  const extra = new Map<string, CommandState[]>();
  for (let i = 0; i < N; i++) expected.set(`c${i}`, 'queued');
  for (let i = 0; i < 2000; i++) {
    const id = `c${(i * 7) % N}`;
    const next: CommandState = expected.get(id) === 'queued' ? 'sent' : expected.get(id) === 'sent' ? 'delivered' : 'succeeded';
    store.setCommandStatus(id, next, iso(T0 + N + i));
    expected.set(id, next);
    extra.set(id, [...(extra.get(id) ?? []), next]);
  }
  assert.ok(writes.reason !== undefined, 'the writes were refused');
  assert.equal(store.pendingWrites, 2000);

  const walks = mock.method(PendingStatuses.prototype, 'entries');
  try {
    const ids = [...expected.keys()].filter((id) => Number(id.slice(1)) % 3 !== 0);
    const queued = ids.filter((id) => expected.get(id) === 'queued');
    assert.deepEqual(
      store.queuedCommands('d', 25).map((c) => c.id),
      queued.slice(0, 25),
      'the oldest queued, those moved on in memory skipped',
    );
    for (const id of ['c7', 'c14', 'c1', 'c2999']) {
      assert.equal(store.command(id)?.status, expected.get(id), id);
      assert.deepEqual(
        store.commandHistory(id).map((h) => h.status),
        ['queued', ...(extra.get(id) ?? [])],
        `${id}'s history: stored, then waiting`,
      );
    }
    assert.deepEqual(
      store.unfinishedCommands('d').map((c) => c.id),
      ids.filter((id) => expected.get(id) !== 'succeeded'),
    );
    assert.equal(walks.mock.callCount(), 0, 'no lookup walked the waiting statuses');
  } finally {
    walks.mock.restore();
  }

  // The lock goes: everything waiting is written, and the stored rows say the same.
  other.exec('ROLLBACK');
  other.close();
  await until(() => store.pendingWrites === 0, 5000, 'the waiting statuses written at the next retry');
  for (const id of ['c7', 'c14', 'c1']) assert.equal((db.prepare('SELECT status FROM commands WHERE id = ?').get(id) as { status: string }).status, expected.get(id));
  db.close();
});

test('a status for a command deleted meanwhile is written without breaking the foreign key; later writes go on', () => {
  const file = join(tempDir('canrelay-lookups-'), 'bridge.sqlite');
  const { store, db, writes } = open(file);
  store.createDongle('d', 'h'.repeat(64), iso(T0));
  store.insertCommand(cmd('gone', 'd', T0));
  store.setCommandStatus('gone', 'succeeded', iso(T0 + 1));
  assert.equal(store.pruneFinishedCommands(iso(T0 + 120_000), 100), 1, 'pruned past its retention');
  // A status for it after all (a report or a sweep that held the row from before the prune).
  assert.doesNotThrow(() => store.setCommandStatus('gone', 'timed_out', iso(T0 + 130_000)));
  assert.equal(store.pendingWrites, 0, 'nothing left waiting');
  assert.equal(writes.errors, 0);
  store.setLastSeen('d', iso(T0 + 140_000));
  assert.equal((db.prepare('SELECT last_seen FROM dongles WHERE id = ?').get('d') as { last_seen: string }).last_seen, iso(T0 + 140_000), 'a later write is stored');
  assert.equal((db.prepare("SELECT count(*) AS n FROM command_history WHERE command_id = 'gone'").get() as { n: number }).n, 0, 'no orphan history');
  db.close();
});
