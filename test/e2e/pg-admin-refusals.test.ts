/**
 * A PostgreSQL bridge answers an admin change that another node's commit made impossible as the SQLite
 * bridge does — 409 for a dongle already in another group, 404 for a dongle deleted — not 503 with
 * Retry-After (which says "the database is away, retry" and was given for any refused statement). The
 * admin API checks this node's view, which another node's commit reaches only with its notice: the
 * database's keys refuse the change. Real PostgreSQL, real bridge processes: the other node's commit is
 * made directly in the database with no notice (deterministic), then two nodes race for real.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, test } from 'node:test';
import { startBridgeProcess, type StartedBridge } from '../helpers/bridge-process.js';
import { PostgresServer } from '../helpers/postgres.js';
import { until } from '../helpers/until.js';

let pgServer: PostgresServer;
const bridges: StartedBridge[] = [];
before(async () => {
  pgServer = await PostgresServer.start();
});
after(async () => {
  await pgServer?.stop();
});
afterEach(async () => {
  await Promise.all(bridges.splice(0).map((b) => b.proc.stop()));
});

test("PostgreSQL: a change another node's commit refused answers 409 / 404 with the reason, not 503", async () => {
  const url = await pgServer.createDatabase();
  const n = await startBridgeProcess([], { db: url });
  bridges.push(n);
  for (const d of ['gw-x', 'gw-y', 'gw-z', 'gw-r']) await n.admin.register(d);
  // Another node's commits whose notices have not arrived here: gw-x joined g1, gw-r was deleted.
  await pgServer.sql(
    url,
    `WITH g AS (INSERT INTO groups (id, side_a, side_b, created_at, updated_at) VALUES ('g1', 'gw-x', 'gw-y', 'now', 'now') RETURNING id)
     INSERT INTO group_members (dongle, group_id, side) SELECT 'gw-x', id, 'a' FROM g UNION ALL SELECT 'gw-y', id, 'b' FROM g`,
  );
  await pgServer.sql(url, "DELETE FROM dongles WHERE id = 'gw-r'");

  const g2 = await n.admin.put('/api/v1/groups/g2', { sides: { a: 'gw-x', b: 'gw-z' } });
  assert.equal(g2.status, 409, JSON.stringify(g2.body));
  assert.match(String(g2.body.error), /dongle "gw-x" is already in another group/);
  assert.equal(g2.headers.get('retry-after'), null, 'not a "come back later"');
  assert.equal((await pgServer.sql(url, "SELECT 1 FROM groups WHERE id = 'g2'")).length, 0, 'nothing was changed');

  const rot = await n.admin.post('/api/v1/dongles/gw-r/token');
  assert.equal(rot.status, 404, JSON.stringify(rot.body));
  assert.match(String(rot.body.error), /dongle "gw-r" is not registered/);
  assert.equal(rot.headers.get('retry-after'), null);

  // The node is not degraded by it: its next change works.
  assert.equal((await n.admin.put('/api/v1/groups/g3', { sides: { a: 'gw-z', b: 'gw-y' } })).status, 409, 'gw-y is in g1 too');
  const ok = await n.admin.put('/api/v1/dongles/gw-w');
  assert.equal(ok.status, 201);
  const health = await (await fetch(`${n.base}/healthz`)).json();
  assert.equal((health as { db?: string }).db, 'reachable');
});

test('PostgreSQL: two nodes put two groups naming one dongle at once: one is made, the other 409, never 503', async () => {
  const url = await pgServer.createDatabase();
  const [n1, n2] = await Promise.all([startBridgeProcess([], { db: url }), startBridgeProcess([], { db: url })]);
  bridges.push(n1, n2);
  for (let round = 0; round < 5; round++) {
    const [x, a, b] = [`x${round}`, `a${round}`, `b${round}`];
    for (const d of [x, a, b]) await n1.admin.register(d);
    // Both nodes know the three dongles (their view is what the admin API checks first).
    await until(async () => (await n2.admin.get(`/api/v1/dongles/${b}`)).status === 200, 5000, `node 2 knows ${b}`);
    const answers = await Promise.all([n1.admin.put(`/api/v1/groups/g${round}a`, { sides: { a: x, b: a } }), n2.admin.put(`/api/v1/groups/g${round}b`, { sides: { a: x, b } })]);
    const statuses = answers.map((r) => r.status).sort();
    assert.deepEqual(statuses, [201, 409], `round ${round}: ${JSON.stringify(answers.map((r) => r.body))}`);
    const members = await pgServer.sql(url, 'SELECT group_id FROM group_members WHERE dongle = $1', [x]);
    assert.equal(members.length, 1, 'the dongle is in one group');
  }
});
