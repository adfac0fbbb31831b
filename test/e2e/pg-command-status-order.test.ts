/**
 * A command's status in PostgreSQL never moves backwards, whichever node writes last: statuses are written
 * behind by each node, so one node's `sent` can reach the table after another node's `timed_out`. Two
 * PostgreSQL stores (two nodes) on one real server.
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

test('PostgreSQL: a status written behind after a later one stays in the history but does not move the status back; a late final report still replaces timed_out', async () => {
  const url = await pgServer.createDatabase();
  const log = pino({ level: 'silent' });
  const [n1, n2] = await Promise.all([PgStore.open(url, log), PgStore.open(url, log)]);
  const stored = async (): Promise<string> => String((await pgServer.sql(url, "SELECT status FROM commands WHERE id = 'c'"))[0]?.status);
  try {
    const t0 = Date.now();
    await n1.createDongle('so', 'h'.repeat(64), iso(t0));
    await n1.insertCommand({ id: 'c', dongle: 'so', type: 'send_frame', body: '{}', status: 'queued', created_at: iso(t0), expires_at: iso(t0 + 1000) });
    await until(() => n2.command('c') !== undefined, 5000, "the command in node 2's view");
    n1.setCommandStatus('c', 'timed_out', iso(t0 + 1000), 'not sent in time');
    await until(async () => (await stored()) === 'timed_out' && n1.pendingWrites === 0, 5000, 'timed_out written by node 1');
    n2.setCommandStatus('c', 'sent', iso(t0 + 900));
    await until(() => n2.pendingWrites === 0, 5000, "node 2's sent written");
    assert.equal(await stored(), 'timed_out', 'the table keeps timed_out');
    await until(() => n2.command('c')?.status === 'timed_out', 5000, "node 2's view back at timed_out");
    assert.deepEqual(
      n2.commandHistory('c').map((h) => h.status),
      ['queued', 'timed_out', 'sent'],
      'the history keeps what happened',
    );
    // The agent's own final word replaces a timeout (commands.ts): forward for the table too.
    n2.setCommandStatus('c', 'succeeded', iso(t0 + 5000));
    await until(async () => (await stored()) === 'succeeded', 5000, 'succeeded replaces timed_out');
    await until(() => n1.command('c')?.status === 'succeeded', 5000, "node 1's view at succeeded");
  } finally {
    for (const s of [n1, n2]) {
      await s.flushBeforeClose();
      await s.close();
    }
  }
});
