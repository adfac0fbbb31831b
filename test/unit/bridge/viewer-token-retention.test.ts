/**
 * Expired viewer tokens are deleted a day after their expiry (cloud-bridge/retention.ts), on the real
 * SQLite store (a temp file) with the sweep's clock injected: listed (expired) until then, gone after,
 * tokens without expiry and agent tokens untouched, a large backlog deleted a batch per turn. PostgreSQL
 * (its in-memory view, the rows, every node's view): test/e2e/viewer-token-retention.test.ts.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { hashToken } from '../../../cloud-bridge/auth.js';
import { PRUNE_BATCH, RetentionSweep, VIEWER_TOKEN_RETENTION_MS, sweepEveryMs } from '../../../cloud-bridge/retention.js';
import { BridgeStore } from '../../../cloud-bridge/store.js';
import { openStateDb } from '../../../core/state/sqlite.js';
import { tempDir } from '../../helpers/processes.js';
import { until } from '../../helpers/until.js';

const iso = (ms: number): string => new Date(ms).toISOString();

function fileStore(): BridgeStore {
  return new BridgeStore(openStateDb(join(tempDir('canrelay-retention-'), 'bridge.sqlite'), { onUnusable: 'refuse', flag: '--db' }));
}

test('a ttl_s:1 viewer token is listed (expired) for a day after its expiry, then the sweep deletes it; others stay', () => {
  const store = fileStore();
  const t0 = Date.parse('2030-01-01T00:00:00.000Z');
  store.createDongle('gw', hashToken('agent-token'), iso(t0));
  store.addViewerToken(hashToken('session'), iso(t0), iso(t0 + 1000)); // ttl_s: 1
  store.addViewerToken(hashToken('forever'), iso(t0), null);
  store.addViewerToken(hashToken('later'), iso(t0), iso(t0 + 3_600_000));
  let now = t0;
  const swept: number[] = [];
  const sweep = new RetentionSweep(
    VIEWER_TOKEN_RETENTION_MS,
    (b, l) => store.pruneExpiredViewerTokens(b, l),
    (n) => swept.push(n),
    () => now,
  );
  const listed = (): string[] => store.viewerTokens().map((t) => t.hash);
  try {
    now = t0 + 1000 + VIEWER_TOKEN_RETENTION_MS - 1; // expired for a day less a millisecond
    sweep.run();
    assert.deepEqual(listed(), [hashToken('session'), hashToken('forever'), hashToken('later')], 'still listed within the day after its expiry');
    now = t0 + 1000 + VIEWER_TOKEN_RETENTION_MS + 1;
    sweep.run();
    assert.deepEqual(listed(), [hashToken('forever'), hashToken('later')], 'gone a day after its expiry');
    assert.equal(store.token(hashToken('session')), undefined);
    assert.deepEqual(swept, [1]);
    assert.equal(sweep.pruned, 1);
    assert.equal(store.token(hashToken('agent-token'))?.kind, 'agent', 'agent tokens are not touched');
  } finally {
    sweep.stop();
  }
});

test('many expired viewer tokens: deleted a batch per event-loop turn, all of them, reported once', async () => {
  const store = fileStore();
  const t0 = Date.parse('2030-01-01T00:00:00.000Z');
  const n = PRUNE_BATCH * 2 + 7;
  for (let i = 0; i < n; i++) store.addViewerToken(hashToken(`t${i}`), iso(t0), iso(t0 + 1000));
  const swept: number[] = [];
  const sweep = new RetentionSweep(
    VIEWER_TOKEN_RETENTION_MS,
    (b, l) => store.pruneExpiredViewerTokens(b, l),
    (k) => swept.push(k),
    () => t0 + 2 * VIEWER_TOKEN_RETENTION_MS,
  );
  try {
    sweep.run();
    assert.equal(store.viewerTokens().length, n - PRUNE_BATCH, 'one batch in the first turn');
    await until(() => store.viewerTokens().length === 0, 5000, 'every expired token deleted');
    assert.deepEqual(swept, [n]);
  } finally {
    sweep.stop();
  }
});

test('one sweep cadence: half the retention, within 1 s … 1 h (a day retention: hourly)', () => {
  assert.equal(sweepEveryMs(VIEWER_TOKEN_RETENTION_MS), 3_600_000);
  assert.equal(sweepEveryMs(600_000), 300_000);
  assert.equal(sweepEveryMs(0), 1000);
});
