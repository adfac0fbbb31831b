/**
 * Event ids must never be reused, also across restarts, without a disk write per event. A stream reserves
 * ids in blocks: the reserved ceiling is persisted before any id of the block is used, and a restarted
 * stream starts above the last persisted ceiling. A crash costs at most the unused rest of one block.
 */
import type Database from 'better-sqlite3';

export interface IdStore {
  /** The highest id that may have been handed out for this stream before (0 when never). */
  load(stream: string): number;
  /** Persists that ids up to and including `ceiling` may be handed out. Must be durable on return. */
  save(stream: string, ceiling: number): void;
}

/** For tests and ephemeral streams. */
export class MemoryIdStore implements IdStore {
  private readonly m = new Map<string, number>();
  load(stream: string): number {
    return this.m.get(stream) ?? 0;
  }
  save(stream: string, ceiling: number): void {
    this.m.set(stream, ceiling);
  }
}

export class SqliteIdStore implements IdStore {
  private readonly get: Database.Statement<[string], { ceiling: number }>;
  private readonly put: Database.Statement<[string, number]>;

  constructor(db: Database.Database) {
    db.exec(`CREATE TABLE IF NOT EXISTS stream_ids (stream TEXT PRIMARY KEY, ceiling INTEGER NOT NULL)`);
    this.get = db.prepare('SELECT ceiling FROM stream_ids WHERE stream = ?');
    this.put = db.prepare(
      'INSERT INTO stream_ids (stream, ceiling) VALUES (?, ?) ON CONFLICT(stream) DO UPDATE SET ceiling = excluded.ceiling',
    );
  }

  load(stream: string): number {
    return this.get.get(stream)?.ceiling ?? 0;
  }

  save(stream: string, ceiling: number): void {
    this.put.run(stream, ceiling);
  }
}
