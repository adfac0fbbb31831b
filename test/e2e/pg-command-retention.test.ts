/**
 * Finished commands past --command-retention leave every node's view, not only the table: the node whose
 * DELETE takes the rows sends no notice, so another node's in-memory view kept them until a full re-read
 * (growing with time on a cluster that runs for months). Two PostgreSQL stores on one real server.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { PgStore } from '../../cloud-bridge/pg-store.js';
import { PostgresServer } from '../helpers/postgres.js';
import { until } from '../helpers/until.js';

const iso = (ms: number): string => new Date(ms).toISOString();

let pgServer: PostgresServer;
before(async () => {
  pgServer = await PostgresServer.start();
});
after(async () => {
  await pgServer?.stop();
});

test("PostgreSQL: a finished command past the retention leaves the table and both nodes' views, each at its own prune", async () => {
  const url = await pgServer.createDatabase();
  const log = pino({ level: 'silent' });
  const [n1, n2] = await Promise.all([PgStore.open(url, log), PgStore.open(url, log)]);
  try {
    const t0 = Date.now();
    await n1.createDongle('pr', 'h'.repeat(64), iso(t0));
    for (const id of ['done', 'open'])
      await n1.insertCommand({ id, dongle: 'pr', type: 'send_frame', body: '{}', status: 'queued', created_at: iso(t0), expires_at: iso(t0 + 1000) });
    n1.setCommandStatus('done', 'succeeded', iso(t0 + 10));
    await until(() => n2.command('done')?.status === 'succeeded' && n2.command('open') !== undefined, 5000, "both commands in node 2's view");
    const rows = async (): Promise<string[]> => (await pgServer.sql(url, 'SELECT id FROM commands ORDER BY id')).map((r) => String(r.id));
    await until(async () => (await rows()).length === 2 && n1.pendingWrites === 0, 5000, 'both rows and the status written');
    assert.equal(n1.pruneFinishedCommands(iso(t0 + 2000), 500), 1, 'node 1 drops the finished one from its view');
    assert.equal(n1.command('done'), undefined);
    await until(async () => (await rows()).join() === 'open', 5000, 'its row deleted');
    // No notice reaches node 2: its own prune drops the command from its view by the same rule.
    assert.equal(n2.pruneFinishedCommands(iso(t0 + 2000), 500), 1);
    assert.equal(n2.command('done'), undefined, "gone from node 2's view");
    assert.equal(n2.command('open')?.status, 'queued', 'an unfinished one stays, past its expiry too');
  } finally {
    for (const s of [n1, n2]) {
      await s.flushBeforeClose();
      await s.close();
    }
  }
});
