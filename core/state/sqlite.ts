/** Opens a state database: WAL (readers never block the writer), synchronous=NORMAL (durable enough for state). */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

export function openStateDb(file: string): Database.Database {
  try {
    mkdirSync(dirname(file), { recursive: true });
  } catch (err) {
    throw new Error(`cannot create the state directory ${dirname(file)}: ${(err as Error).message} (set --state-dir to a writable directory)`);
  }
  let db: Database.Database;
  try {
    db = new Database(file);
  } catch (err) {
    throw new Error(`cannot open the state database ${file}: ${(err as Error).message} (check --state-dir and its permissions)`);
  }
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 2000');
  return db;
}
