/**
 * The bridge's tables in PostgreSQL (cluster mode; the SQLite schema in store.ts is the embedded one, the
 * same tables and columns), created idempotently by whichever node starts first: the whole migration
 * runs in one transaction under an advisory lock, so two nodes starting at once on an empty database do
 * not race on CREATE TABLE IF NOT EXISTS (which is not safe under concurrency by itself).
 */
import type pg from 'pg';

/** pg_advisory_xact_lock key of the migration: "canr" in ASCII. */
const MIGRATION_LOCK = 0x63616e72;

/** `n` columns keep the insertion order (SQLite's rowid) for the orderings the admin API shows. */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS dongles (
  id TEXT PRIMARY KEY,
  created_at TEXT NOT NULL,
  last_seen TEXT,
  event_seq BIGINT NOT NULL DEFAULT 0,
  outbox_id TEXT,
  up_run TEXT,
  up_batch BIGINT
);
CREATE TABLE IF NOT EXISTS tokens (
  hash TEXT PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('agent', 'viewer')),
  dongle TEXT REFERENCES dongles(id) ON DELETE CASCADE,
  created_at TEXT NOT NULL,
  expires_at TEXT,
  n BIGSERIAL,
  CHECK ((kind = 'agent') = (dongle IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS tokens_by_dongle ON tokens(dongle);
CREATE TABLE IF NOT EXISTS groups (
  id TEXT PRIMARY KEY,
  side_a TEXT NOT NULL REFERENCES dongles(id),
  side_b TEXT NOT NULL REFERENCES dongles(id),
  bus_map TEXT NOT NULL DEFAULT '{}',
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  dropped BIGINT NOT NULL DEFAULT 0,
  relayed_total BIGINT NOT NULL DEFAULT 0,
  CHECK (side_a <> side_b)
);
CREATE TABLE IF NOT EXISTS group_members (
  dongle TEXT PRIMARY KEY REFERENCES dongles(id),
  group_id TEXT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
  side TEXT NOT NULL CHECK (side IN ('a', 'b'))
);
CREATE TABLE IF NOT EXISTS commands (
  id TEXT PRIMARY KEY,
  dongle TEXT NOT NULL,
  type TEXT NOT NULL,
  body TEXT NOT NULL,
  status TEXT NOT NULL,
  created_at TEXT NOT NULL,
  expires_at TEXT NOT NULL,
  n BIGSERIAL
);
CREATE INDEX IF NOT EXISTS commands_by_dongle_status ON commands(dongle, status);
CREATE INDEX IF NOT EXISTS commands_by_expiry ON commands(expires_at);
CREATE TABLE IF NOT EXISTS command_history (
  n BIGSERIAL PRIMARY KEY,
  command_id TEXT NOT NULL REFERENCES commands(id) ON DELETE CASCADE,
  status TEXT NOT NULL,
  ts TEXT NOT NULL,
  error TEXT
);
CREATE INDEX IF NOT EXISTS command_history_by_command ON command_history(command_id, n);
`;

export async function migrate(client: pg.PoolClient | pg.Client): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await client.query(SCHEMA);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
