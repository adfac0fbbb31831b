/**
 * Commits that skip the WAL sync of a durable database (synchronous=FULL, the bridge's): for values written
 * behind whose loss at a power cut is survivable and already allowed for — positions, last-seen times,
 * counters, event-id ceilings (docs/reliability.md). A FULL commit syncs the WAL, which holds the commits
 * made before it, so these reach the disk at the next admin change or command status, or at a checkpoint;
 * a process crash loses none of them (they are in the page cache). Why: a sync holds the event loop for the
 * disk's flush (ms each on a shared or cloud disk), paid at every hello of a reconnecting fleet, every new
 * console stream and every counters slice, while the relay waits.
 */
import type Database from 'better-sqlite3';

/** synchronous=NORMAL: in WAL mode, a commit is not synced (SQLite's level numbers: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA). */
const NORMAL = 1;

/** Runs `write` (one or more commits) without the sync of each commit, then restores the database's level. */
export function commitUnsynced<T>(db: Database.Database, write: () => T): T {
  // SQLite refuses a change of the level inside a transaction: an enclosing one decides for the whole.
  if (db.inTransaction) return write();
  const level = db.pragma('synchronous', { simple: true });
  if (typeof level !== 'number' || level <= NORMAL) return write();
  db.pragma(`synchronous = ${NORMAL}`);
  try {
    return write();
  } finally {
    db.pragma(`synchronous = ${level}`);
  }
}
