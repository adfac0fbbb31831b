/**
 * Opens the bridge's durable state from `--db`: a file is the embedded SQLite store (as always), a
 * `postgres://` or `postgresql://` URL the PostgreSQL store of cluster mode (cloud-bridge/pg-store.ts).
 * Also what /healthz and /metrics say about it, and the close at stop. Keeps that choice out of bridge.ts.
 */
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { MemoryIdStore, SqliteIdStore, type IdStore } from '../core/console/id-store.js';
import { scrapedCounter, scrapedGauge } from '../core/metrics/scraped.js';
import { openStateDb } from '../core/state/sqlite.js';
import type { StateHealth } from '../core/state/state-health.js';
import { isPostgresUrl } from './db-url.js';
import type { StateChange } from './pg-store.js';
import type { StateStore } from './state-store.js';
import { BridgeStore } from './store.js';

export interface BridgeState {
  store: StateStore;
  /** Console event ids (SQLite: persisted blocks; PostgreSQL: the clock floor of core/console/id-store.ts). */
  ids: IdStore;
  /** Fields of /healthz: `db` is "reachable" or "unreachable" (cluster mode only; docs/cluster.md). */
  health(): Record<string, unknown>;
  registerMetrics(r: Registry): void;
  /** Remote changes (cluster mode; never called with SQLite, whose only writer is this process). */
  onChange(fn: (c: StateChange) => void): void;
  /** Writes what waits in memory and closes the database. */
  close(): Promise<void>;
}

export async function openBridgeState(db: string, log: Logger, state: StateHealth): Promise<BridgeState> {
  if (isPostgresUrl(db)) {
    // Loaded only here: the pg driver is ~9 MB of a bridge's RSS that a SQLite bridge never uses.
    const { PgStore } = await import('./pg-store.js');
    const pg = await PgStore.open(db, log);
    return {
      store: pg,
      ids: new MemoryIdStore(),
      health: () => ({ db: pg.unreachable === undefined ? 'reachable' : 'unreachable', ...(pg.unreachable !== undefined ? { db_reason: pg.unreachable } : {}) }),
      registerMetrics: (r) => {
        scrapedCounter(r, 'canrelay_cluster_db_errors_total', 'PostgreSQL operations that failed (lost connection, refused statement); see /healthz db', [], (c) =>
          c.inc(pg.errors),
        );
        scrapedGauge(r, 'canrelay_cluster_db_up', '1 while PostgreSQL is reachable, 0 while the bridge is reconnecting', [], (g) => g.set(pg.unreachable === undefined ? 1 : 0));
        scrapedGauge(r, 'canrelay_cluster_db_pending_writes', 'positions, group counters and command statuses waiting in memory for PostgreSQL', [], (g) =>
          g.set(pg.pendingWrites),
        );
      },
      onChange: (fn) => pg.onChange(fn),
      close: async () => {
        await pg.flushBeforeClose();
        await pg.close();
      },
    };
  }
  // The database holds the tokens: an unusable one stops the start (exit 3) instead of being replaced.
  // Durable: an admin change answered 2xx, a command answered as queued, survive a power loss too.
  const file = openStateDb(db, { onUnusable: 'refuse', flag: '--db', durable: true });
  // A write that fails while running degrades the store, never the bridge (core/state/state-health.ts).
  const store = new BridgeStore(file, state.store('bridge', db));
  state.watchFile(db);
  return {
    store,
    ids: new SqliteIdStore(file, state.store('ids', db)),
    health: () => ({}),
    registerMetrics: () => undefined,
    onChange: () => undefined,
    close: async () => {
      store.flushBeforeClose();
      file.close();
    },
  };
}
