/**
 * PostgreSQL store (real server): a dongle's command lookups — unfinishedCount (every POST …/commands),
 * queuedCommands (after every finished command), recentCommandIds (the fleet page), unfinishedCommands —
 * touch only the rows they return, counted by a spy on the view's rows, and never walk the statuses
 * waiting to be written (they stalled the event loop for seconds with 600k retained commands and 1,000
 * statuses waiting). Their results are checked against a model on thousands of rows: order created_at
 * then insertion (ties, rows stored out of order, one queued later with an older created_at), statuses
 * waiting overlaid, after the write, on a second node fed by notifications, and after a prune.
 */
import assert from 'node:assert/strict';
import { after, before, mock, test } from 'node:test';
import { pino } from 'pino';
import { PendingStatuses } from '../../cloud-bridge/pending-statuses.js';
import { PgStore } from '../../cloud-bridge/pg-store.js';
import { isTerminal } from '../../cloud-bridge/store.js';
import type { CommandState } from '../../core/console/events.js';
import { PostgresServer } from '../helpers/postgres.js';
import { until } from '../helpers/until.js';

const iso = (ms: number): string => new Date(ms).toISOString();
const T0 = Date.parse('2030-01-01T00:00:00.000Z');
const N = 6000;

let pgServer: PostgresServer;
before(async () => {
  pgServer = await PostgresServer.start();
});
after(async () => {
  await pgServer?.stop();
});

interface Model {
  id: string;
  dongle: string;
  created_at: string;
  n: number;
  status: CommandState;
}

/** What the stores answered before: sorted by created_at then n, the latest status of each. */
function expect(rows: Model[], dongle: string) {
  const mine = rows.filter((r) => r.dongle === dongle).sort((a, b) => (a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : a.n - b.n));
  return {
    queued: (limit: number) =>
      mine
        .filter((r) => r.status === 'queued')
        .slice(0, limit)
        .map((r) => r.id),
    unfinished: mine.filter((r) => !isTerminal(r.status)).map((r) => r.id),
    recent: (limit: number) =>
      mine
        .slice()
        .reverse()
        .slice(0, limit)
        .map((r) => r.id),
  };
}

function check(store: PgStore, rows: Model[], what: string): void {
  for (const d of ['d', 'other']) {
    const e = expect(rows, d);
    assert.deepEqual(
      store.queuedCommands(d, 30).map((c) => c.id),
      e.queued(30),
      `${what}: ${d} queued`,
    );
    assert.equal(store.unfinishedCount(d), e.unfinished.length, `${what}: ${d} unfinished count`);
    assert.deepEqual(
      store.unfinishedCommands(d).map((c) => c.id),
      e.unfinished,
      `${what}: ${d} unfinished`,
    );
    assert.deepEqual(store.recentCommandIds(d, 40), e.recent(40), `${what}: ${d} recent`);
  }
  const all = rows.filter((r) => !isTerminal(r.status)).sort((a, b) => (a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : a.n - b.n));
  assert.deepEqual(
    store.unfinishedCommands().map((c) => c.id),
    all.map((r) => r.id),
    `${what}: every unfinished command`,
  );
  for (const r of rows.filter((_, i) => i % 97 === 0)) assert.equal(store.command(r.id)?.status, r.status, `${what}: ${r.id}`);
}

/** Counts the view's command rows a call reads (PgStore.commandRows, private). */
function rowSpy(store: PgStore): { count: <T>(f: () => T) => [T, number] } {
  const rows = (store as unknown as { commandRows: Map<string, unknown> }).commandRows;
  const get = rows.get.bind(rows);
  let n = 0;
  rows.get = (k: string) => {
    n++;
    return get(k);
  };
  return {
    count: (f) => {
      n = 0;
      const r = f();
      return [r, n];
    },
  };
}

test("PostgreSQL: a dongle's command lookups touch only the rows they return, with statuses waiting; results as before", async () => {
  const url = await pgServer.createDatabase();
  const log = pino({ level: 'silent' });
  const schema = await PgStore.open(url, log);
  await schema.close();
  // Thousands of commands stored out of order (created_at not following n), ties included.
  const statuses: CommandState[] = ['queued', 'queued', 'sent', 'delivered', 'succeeded', 'failed', 'timed_out'];
  await pgServer.sql(
    url,
    `INSERT INTO commands (id, dongle, type, body, status, created_at, expires_at)
     SELECT 'c' || i, CASE WHEN i % 4 = 0 THEN 'other' ELSE 'd' END, 'send_frame', '{}', ($1::text[])[1 + i % 7],
            to_char(timestamp '2030-01-01' + ((i * 37) % 1500) * interval '1 second', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
            to_char(timestamp '2030-01-01' + ((i * 37) % 1500 + 60) * interval '1 second', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
     FROM generate_series(0, $2::int - 1) AS i ORDER BY i`,
    [statuses, N],
  );
  await pgServer.sql(url, "INSERT INTO command_history (command_id, status, ts) SELECT id, 'queued', created_at FROM commands ORDER BY n");
  const rows = (await pgServer.sql(url, 'SELECT id, dongle, created_at, n::int AS n, status FROM commands')) as unknown as Model[];
  const byId = new Map(rows.map((r) => [r.id, r]));
  const [n1, n2] = await Promise.all([PgStore.open(url, log), PgStore.open(url, log)]);
  try {
    check(n1, rows, 'as read');
    const spy = rowSpy(n1);

    // 1,000 statuses waiting (set in this turn: none written yet), queued ones moved on, some finished.
    const next: Partial<Record<CommandState, CommandState>> = { queued: 'sent', sent: 'delivered', delivered: 'succeeded' };
    let waiting = 0;
    for (let i = 0; waiting < 1000; i += 5) {
      const r = byId.get(`c${i % N}`)!;
      const to = next[r.status];
      if (to === undefined) continue;
      n1.setCommandStatus(r.id, to, iso(T0 + 10_000_000 + i));
      r.status = to;
      waiting++;
    }
    assert.ok(n1.pendingWrites >= 1000, 'the statuses wait to be written');
    const walks = mock.method(PendingStatuses.prototype, 'entries');
    try {
      const e = expect(rows, 'd');
      const [count, c1] = spy.count(() => n1.unfinishedCount('d'));
      assert.equal(count, e.unfinished.length);
      assert.equal(c1, 0, 'unfinishedCount reads no row');
      const [queued, c2] = spy.count(() => n1.queuedCommands('d', 10));
      assert.deepEqual(
        queued.map((c) => c.id),
        e.queued(10),
      );
      assert.equal(c2, 10, 'queuedCommands reads the rows it returns');
      const [recent, c3] = spy.count(() => n1.recentCommandIds('d', 50));
      assert.deepEqual(recent, e.recent(50));
      assert.equal(c3, 0, 'recentCommandIds reads no row');
      const [unfinished, c4] = spy.count(() => n1.unfinishedCommands('d'));
      assert.equal(c4, unfinished.length, 'unfinishedCommands reads the unfinished rows only');
      check(n1, rows, 'with 1,000 statuses waiting');
      assert.equal(walks.mock.callCount(), 0, 'no lookup walked the waiting statuses');
    } finally {
      walks.mock.restore();
    }

    // Written: the same answers from the rows, here and on the other node (notified).
    await until(() => n1.pendingWrites === 0, 10_000, 'the statuses written');
    check(n1, rows, 'written');
    await until(() => n2.command('c0')?.status === byId.get('c0')!.status && n2.unfinishedCount('d') === n1.unfinishedCount('d'), 10_000, 'node 2 notified');
    check(n2, rows, 'node 2');

    // A command queued later with an older created_at (another node's clock) takes its place in the order.
    const late = { id: 'late', dongle: 'd', type: 'send_frame', body: '{}', status: 'queued' as const, created_at: iso(T0 + 3000), expires_at: iso(T0 + 63_000) };
    await n2.insertCommand(late);
    const n = (await pgServer.sql(url, "SELECT n::int AS n FROM commands WHERE id = 'late'"))[0]!.n as number;
    rows.push({ id: 'late', dongle: 'd', created_at: late.created_at, n, status: 'queued' });
    await until(() => n1.command('late') !== undefined, 10_000, 'node 1 notified of the late command');
    check(n1, rows, 'late command, node 1');
    check(n2, rows, 'late command, node 2');

    // Pruned: finished commands past the retention leave every list.
    const cut = iso(T0 + 700_000);
    const pruned = n1.pruneFinishedCommands(cut, 100_000);
    assert.ok(pruned > 0, 'some were pruned');
    const kept = rows.filter((r) => !(r.created_at < iso(T0 + 700_000 - 60_000) && isTerminal(r.status)));
    assert.equal(kept.length, rows.length - pruned);
    check(n1, kept, 'after the prune');
  } finally {
    for (const s of [n1, n2]) {
      await s.flushBeforeClose();
      await s.close();
    }
  }
});
