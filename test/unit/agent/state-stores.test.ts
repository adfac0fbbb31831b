/**
 * The state stores when SQLite refuses writes, on real SQLite files: `PRAGMA query_only` makes every
 * write fail with SQLITE_READONLY, the same path a full or read-only disk takes (the full-disk case with
 * real processes is test/faults/state.test.ts). The outbox keeps accepted events in its bounded memory
 * buffer, in order, and writes them once it can; event ids stay unique and below the clock floor while
 * nothing can be persisted, and are withheld (counted) rather than reused when the floor cannot vouch.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import { EventIds, ID_BLOCK, idFloor, MAX_EVENT_ID, MemoryIdStore, SqliteIdStore } from '../../../core/console/id-store.js';
import { presenceData, commandStatusData } from '../../../core/console/normalize.js';
import { openStateDb } from '../../../core/state/sqlite.js';
import { StateHealth } from '../../../core/state/state-health.js';
import { Outbox } from '../../../agent/uplink/outbox.js';
import { tempDir } from '../../helpers/processes.js';

const silent = pino({ level: 'silent' });

function refuseWrites(db: ReturnType<typeof openStateDb>, on: boolean): void {
  db.pragma(`query_only = ${on ? 1 : 0}`);
}

test('outbox: refused writes keep events in memory, in order, bounded; written once the disk lets them', () => {
  const file = join(tempDir('canrelay-outbox-'), 'agent.sqlite');
  const db = openStateDb(file);
  const health = new StateHealth(silent);
  const outbox = new Outbox(db, 50_000, () => {}, health.store('outbox', file));
  outbox.append({ type: 'presence', data: presenceData('online', { reason: 'start' }) });
  refuseWrites(db, true);
  const status = commandStatusData('c-1', 'send_frame', 'succeeded');
  outbox.append({ type: 'command_status', data: status });
  for (let i = 0; i < 10_004; i++) outbox.append({ type: 'presence', data: presenceData('seen', {}) });
  assert.equal(health.status().state, 'degraded');
  assert.match(String(health.status().state_reason), /outbox store: cannot write .*agent\.sqlite: read-only/);
  assert.equal(outbox.inMemory, 10_000, 'memory buffer bounded');
  assert.equal(outbox.droppedUnwritable, 5, 'what did not fit is counted');
  const waiting = outbox.pending(0, 20_000);
  assert.equal(waiting[0]!.seq, 1, 'the stored event first');
  assert.equal(waiting[1]!.event, 'command_status', 'a command status is kept over presence events');
  for (let i = 1; i < waiting.length; i++) assert.ok(waiting[i]!.seq > waiting[i - 1]!.seq, 'in seq order');

  refuseWrites(db, false);
  outbox.append({ type: 'presence', data: presenceData('seen', {}) });
  assert.equal(outbox.inMemory, 0, 'memory written out');
  assert.equal(health.status().state, 'ok', 'healed by the first write that works');
  const last = outbox.pending(0, 20_000).at(-1)!.seq;
  db.close();

  // Everything accepted is on disk: a restarted outbox has it all, and numbers on above it.
  const db2 = openStateDb(file);
  const again = new Outbox(db2, 50_000);
  assert.equal(again.size, 10_002);
  assert.equal(again.pending(0, 20_000).at(-1)!.seq, last);
  assert.equal(again.append({ type: 'presence', data: presenceData('seen', {}) }), last + 1);
  db2.close();
});

test('outbox: a read the disk fails (I/O error, corrupt page) is reported, sends nothing yet and throws nothing; the events go once it reads again', () => {
  const file = join(tempDir('canrelay-outbox-'), 'agent.sqlite');
  const db = openStateDb(file);
  const health = new StateHealth(silent);
  const outbox = new Outbox(db, 50_000, () => {}, health.store('outbox', file));
  outbox.append({ type: 'presence', data: presenceData('online', { reason: 'start' }) });
  outbox.append({ type: 'presence', data: presenceData('seen', {}) });
  // The statement as a dying SD card answers it (what better-sqlite3 throws for SQLITE_IOERR_READ).
  const stmt = (outbox as unknown as { after: { all: (...a: unknown[]) => unknown } }).after;
  const realAll = stmt.all.bind(stmt);
  stmt.all = () => {
    throw Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR_READ' });
  };
  assert.deepEqual(outbox.pending(0), [], 'nothing sent out of order (and no throw: it ended the agent from a timer)');
  assert.equal(health.status().state, 'degraded');
  assert.match(String(health.status().state_reason), /outbox store: cannot read .*agent\.sqlite: .*check the disk/);
  // A read that works does not say writes work: with writes refused (a full disk reads fine) it stays degraded.
  stmt.all = realAll;
  refuseWrites(db, true);
  outbox.append({ type: 'presence', data: presenceData('seen', {}) });
  assert.equal(outbox.pending(0).length, 3, 'read: the two stored and the one in memory');
  assert.equal(health.status().state, 'degraded', 'a working read does not heal the store');
  refuseWrites(db, false);
  outbox.append({ type: 'presence', data: presenceData('seen', {}) });
  assert.equal(health.status().state, 'ok', 'a working write does');
  assert.deepEqual(
    outbox.pending(0).map((e) => e.seq),
    [1, 2, 3, 4],
    'every event, in order',
  );
  db.close();
});

test('outbox: a table that stays unreadable is given up after a minute of failed reads; later events (command statuses) go on from memory, the lost ones counted', () => {
  const file = join(tempDir('canrelay-outbox-'), 'agent.sqlite');
  const db = openStateDb(file);
  const health = new StateHealth(silent);
  let now = 1000;
  const outbox = new Outbox(
    db,
    50_000,
    () => {},
    health.store('outbox', file),
    () => now,
  );
  outbox.append({ type: 'presence', data: presenceData('online', { reason: 'start' }) });
  outbox.append({ type: 'presence', data: presenceData('seen', {}) });
  const stmt = (outbox as unknown as { after: { all: (...a: unknown[]) => unknown } }).after;
  stmt.all = () => {
    throw Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR_READ' });
  };
  const status = outbox.append({ type: 'command_status', data: commandStatusData('c1', 'send_frame', 'succeeded') });
  // A passing fault: a few failed reads within the minute send nothing and give nothing up.
  assert.deepEqual(outbox.pending(0), []);
  now += 30_000;
  assert.deepEqual(outbox.pending(0), []);
  assert.equal(outbox.droppedUnreadable, 0, 'not given up within the minute');
  now += 31_000;
  assert.deepEqual(outbox.pending(0), [], 'not given up after two reads, however long');
  // The third failed read, past the minute: the table is given up, its events counted lost.
  const sent = outbox.pending(0);
  assert.equal(outbox.droppedUnreadable, 3, 'the three events the table held');
  assert.deepEqual(sent, [], 'what was in the table is not in memory');
  assert.match(String(health.status().state_reason), /outbox store: the outbox table cannot be read .*up to 3 mirrored events .*lost.*restart the agent/);
  // Later events go on, from memory, in order, and are acknowledged there.
  const next = outbox.append({ type: 'command_status', data: commandStatusData('c2', 'send_frame', 'succeeded') });
  assert.ok(next > status);
  const more = outbox.append({ type: 'presence', data: presenceData('seen', {}) });
  assert.deepEqual(
    outbox.pending(status).map((e) => [e.seq, e.event]),
    [
      [next, 'command_status'],
      [more, 'presence'],
    ],
  );
  outbox.ack(next);
  assert.deepEqual(
    outbox.pending(next).map((e) => e.seq),
    [more],
  );
  assert.equal(outbox.size, 1, 'only the unacknowledged event waits');
  assert.equal(health.status().state, 'degraded', 'degraded until the restart');
  db.close();
});

test('event ids: while no block can be persisted, ids stay unique and below the clock floor; a restart starts above them', () => {
  const file = join(tempDir('canrelay-ids-'), 'agent.sqlite');
  const db = openStateDb(file);
  const health = new StateHealth(silent);
  let now = 1_800_000_000_000;
  const store = new SqliteIdStore(db, health.store('ids', file));
  const ids = new EventIds('dongles/x', store, () => now);
  assert.equal(ids.runStart, idFloor(now), 'a fresh stream starts at the floor');
  refuseWrites(db, true);
  const issued: number[] = [];
  // Two blocks' worth while nothing can be persisted, the clock moving 1 ms per 50 events.
  for (let i = 0; i < 2 * ID_BLOCK; i++) {
    if (i % 50 === 0) now += 1;
    const id = ids.take();
    assert.ok(id !== undefined);
    assert.ok(id < idFloor(now) - 1, 'an unpersisted id is below the floor of now');
    issued.push(id);
  }
  assert.equal(new Set(issued).size, issued.length);
  assert.ok(health.writeErrors().find((s) => s.store === 'ids')!.errors > 0);
  db.close();
  // A restart (with only the first block's ceiling on disk) starts above everything issued.
  const db2 = openStateDb(file);
  now += 1;
  const next = new EventIds('dongles/x', new SqliteIdStore(db2), () => now);
  assert.ok(next.runStart > Math.max(...issued) + 1);
  db2.close();
});

test('event ids: with the clock behind the stored ids and nothing persistable, events are withheld, never given a reused id', () => {
  const file = join(tempDir('canrelay-ids-'), 'agent.sqlite');
  const db = openStateDb(file);
  const store = new SqliteIdStore(db, new StateHealth(silent).store('ids', file));
  const now = 1_800_000_000_000;
  // An earlier run went far above the floor of now (its clock was ahead, or it ran very fast).
  assert.ok(store.save('dongles/x', idFloor(now) + 5 * ID_BLOCK));
  refuseWrites(db, true);
  const ids = new EventIds('dongles/x', store, () => now);
  assert.equal(ids.take(), undefined, 'no id is provably unused');
  assert.equal(ids.withheld, 1);
  refuseWrites(db, false);
  // The retry waits a second; the clock here stands still, so still withheld…
  assert.equal(ids.take(), undefined);
  db.close();
});

test('negative control: without the floor a fresh store would start at 2, below ids a lost state file had handed out', () => {
  // The previous run's state is gone: only the clock floor keeps the next run above its ids.
  const before = new EventIds('s', new MemoryIdStore(), () => 1_800_000_000_000);
  const used = Array.from({ length: 1000 }, () => before.take()!);
  const after = new EventIds('s', new MemoryIdStore(), () => 1_800_000_000_001 + 1000);
  assert.ok(after.runStart > Math.max(...used));
  const noClock = new EventIds('s', new MemoryIdStore(), () => 0);
  assert.equal(noClock.runStart, 2, 'a clock at 0 gives no floor: the assumption is what the floor rests on');
});

test('a clock read past 2250 (a broken RTC) does not give ids a 16th digit: a resume with them stays possible', async () => {
  const { planResume } = await import('../../../core/console/resume.js');
  const store = new MemoryIdStore();
  const future = Date.UTC(2300, 0, 1);
  const ids = new EventIds('dongles/rtc', store, () => future);
  const id = ids.take()!;
  assert.ok(id <= MAX_EVENT_ID, `${id} has at most 15 digits`);
  const plan = planResume({ runStart: ids.runStart, latest: id, oldest: id }, { lastEventId: String(id) });
  assert.equal(plan.reset, undefined, 'its own latest id resumes cleanly');
  // A ceiling such a run left (before the clamp) is not continued: the next run starts below the limit.
  store.save('dongles/old', 1_041_379_200_000_001);
  assert.ok(new EventIds('dongles/old', store, () => Date.UTC(2026, 0, 1)).runStart < MAX_EVENT_ID);
});
