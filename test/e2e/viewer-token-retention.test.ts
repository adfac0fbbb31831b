/**
 * Expired viewer tokens deleted a day after their expiry (cloud-bridge/retention.ts), where the unit test
 * (test/unit/bridge/viewer-token-retention.test.ts) cannot reach: the PostgreSQL store on a real server —
 * its in-memory view, the rows, and another node's view, each node sweeping by its own clock — and the
 * bridge process sweeping at start.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { hashToken, viewerTokenId } from '../../cloud-bridge/auth.js';
import { PgStore } from '../../cloud-bridge/pg-store.js';
import { RetentionSweep, VIEWER_TOKEN_RETENTION_MS } from '../../cloud-bridge/retention.js';
import { BridgeStore } from '../../cloud-bridge/store.js';
import { openStateDb } from '../../core/state/sqlite.js';
import { startBridgeProcess } from '../helpers/bridge-process.js';
import { PostgresServer } from '../helpers/postgres.js';
import { tempDir } from '../helpers/processes.js';
import { until } from '../helpers/until.js';

const iso = (ms: number): string => new Date(ms).toISOString();
const log = pino({ level: 'silent' });

let pgServer: PostgresServer;
before(async () => {
  pgServer = await PostgresServer.start();
});
after(async () => {
  await pgServer?.stop();
});

test('PostgreSQL: an expired viewer token leaves the view and the table a day after its expiry; another node drops it from its view at its own sweep', async () => {
  const url = await pgServer.createDatabase();
  const [n1, n2] = await Promise.all([PgStore.open(url, log), PgStore.open(url, log)]);
  const t0 = Date.now();
  await n1.addViewerToken(hashToken('session'), iso(t0), iso(t0 + 1000)); // ttl_s: 1
  await n1.addViewerToken(hashToken('forever'), iso(t0), null);
  const listed = (s: PgStore): string[] => s.viewerTokens().map((t) => t.hash);
  await until(() => listed(n2).length === 2, 5000, 'both tokens in node 2 view');
  let now = t0 + 1000 + VIEWER_TOKEN_RETENTION_MS - 1;
  const sweeps = [n1, n2].map(
    (s) =>
      new RetentionSweep(
        VIEWER_TOKEN_RETENTION_MS,
        (b, l) => s.pruneExpiredViewerTokens(b, l),
        undefined,
        () => now,
      ),
  );
  const rows = async (): Promise<string[]> => (await pgServer.sql(url, "SELECT hash FROM tokens WHERE kind = 'viewer' ORDER BY n")).map((r) => String(r.hash));
  try {
    sweeps[0]!.run();
    assert.deepEqual(listed(n1), [hashToken('session'), hashToken('forever')], 'within the day: still listed');
    now = t0 + 1000 + VIEWER_TOKEN_RETENTION_MS + 1;
    sweeps[0]!.run();
    assert.deepEqual(listed(n1), [hashToken('forever')], "gone from node 1's view at its sweep");
    await until(async () => (await rows()).length === 1, 5000, 'the row deleted in PostgreSQL');
    assert.deepEqual(await rows(), [hashToken('forever')]);
    assert.equal(n1.token(hashToken('session')), undefined);
    // Node 2 was sent no notice: its own sweep drops the token from its view by the same rule.
    sweeps[1]!.run();
    assert.deepEqual(listed(n2), [hashToken('forever')], "gone from node 2's view at its sweep");
    assert.equal(sweeps[0]!.pruned + sweeps[1]!.pruned, 2);
  } finally {
    for (const s of sweeps) s.stop();
    for (const s of [n1, n2]) {
      await s.flushBeforeClose();
      await s.close();
    }
  }
});

test('the bridge sweeps at start: a token expired two days ago is deleted, one expired an hour ago is listed as expired', async () => {
  const db = join(tempDir('canrelay-retention-'), 'bridge.sqlite');
  const file = openStateDb(db, { onUnusable: 'refuse', flag: '--db' });
  const store = new BridgeStore(file);
  const now = Date.now();
  store.addViewerToken(hashToken('old'), iso(now - 3 * 86_400_000), iso(now - 2 * 86_400_000));
  store.addViewerToken(hashToken('recent'), iso(now - 2 * 3_600_000), iso(now - 3_600_000));
  file.close();
  const bridge = await startBridgeProcess([], { db });
  try {
    const list = (await bridge.admin.get('/api/v1/viewer-tokens')).body.viewer_tokens as { id: string; expired: boolean }[];
    assert.deepEqual(
      list.map((t) => [t.id, t.expired]),
      [[viewerTokenId(hashToken('recent')), true]],
    );
    const line = bridge.proc.logs.find((l) => l.msg === 'viewer tokens expired for more than a day deleted');
    assert.equal(line?.deleted, 1, 'the sweep says what it deleted');
  } finally {
    await bridge.proc.stop();
  }
});
