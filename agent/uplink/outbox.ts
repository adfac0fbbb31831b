/**
 * Console events waiting for the bridge (presence, log, command_status), in SQLite so that a link drop
 * or an agent restart loses none. Each row's id is the event's mirror sequence number; the bridge
 * acknowledges by sequence and deduplicates redeliveries, so every event arrives exactly once.
 * Bounded: past `maxRows` the oldest rows are pruned, counted and logged (a gateway offline for days must
 * not fill its disk) — but never a `command_status`: it is the only record of what a command did on the
 * bus, and the bridge would otherwise time out a command that was carried out. Presence and log events
 * go first; command statuses alone may exceed the bound (they are few: the bridge keeps a small window
 * of commands in flight).
 * The outbox has an identity, random and stored with it: seqs count within one identity. The agent sends
 * it in `hello`; when the state is lost the new outbox starts at seq 1 under a new identity and the
 * bridge numbers this dongle's events afresh instead of taking them for redeliveries.
 */
import { randomUUID } from 'node:crypto';
import type Database from 'better-sqlite3';
import type { ConsoleEvent } from '../../core/console/events.js';
import type { MirroredEventType } from '../../core/console/normalize.js';

export interface OutboxEntry {
  seq: number;
  event: MirroredEventType;
  data: Record<string, unknown>;
}

export class Outbox {
  private readonly insert: Database.Statement<[string, string]>;
  private readonly after: Database.Statement<[number, number], { seq: number; event: string; data: string }>;
  private readonly ackStmt: Database.Statement<[number]>;
  private readonly countStmt: Database.Statement<[], { n: number }>;
  private readonly pruneStmt: Database.Statement<[number], { event: string }>;
  private rows: number;
  pruned = 0;
  /** Pruned rows by event type. */
  readonly prunedByType = new Map<string, number>();
  readonly identity: string;

  constructor(
    db: Database.Database,
    private readonly maxRows: number,
    /** Told what was pruned (rate-limit it: a long outage prunes on every append). */
    private readonly onPrune: (byType: Record<string, number>, overBound: number) => void = () => {},
  ) {
    db.exec(`CREATE TABLE IF NOT EXISTS outbox (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      event TEXT NOT NULL,
      data TEXT NOT NULL
    )`);
    this.insert = db.prepare('INSERT INTO outbox (event, data) VALUES (?, ?)');
    this.after = db.prepare('SELECT seq, event, data FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?');
    this.ackStmt = db.prepare('DELETE FROM outbox WHERE seq <= ?');
    this.countStmt = db.prepare('SELECT count(*) AS n FROM outbox');
    this.pruneStmt = db.prepare("DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE event <> 'command_status' ORDER BY seq LIMIT ?) RETURNING event");
    this.rows = this.countStmt.get()!.n;
    db.exec('CREATE TABLE IF NOT EXISTS outbox_identity (one INTEGER PRIMARY KEY CHECK (one = 1), id TEXT NOT NULL)');
    db.prepare('INSERT INTO outbox_identity (one, id) VALUES (1, ?) ON CONFLICT(one) DO NOTHING').run(randomUUID());
    this.identity = db.prepare<[], { id: string }>('SELECT id FROM outbox_identity WHERE one = 1').get()!.id;
  }

  get size(): number {
    return this.rows;
  }

  append(ev: ConsoleEvent & { type: MirroredEventType }): number {
    const seq = Number(this.insert.run(ev.type, JSON.stringify(ev.data)).lastInsertRowid);
    if (++this.rows > this.maxRows) {
      const gone = this.pruneStmt.all(this.rows - this.maxRows);
      const byType: Record<string, number> = {};
      for (const g of gone) {
        byType[g.event] = (byType[g.event] ?? 0) + 1;
        this.prunedByType.set(g.event, (this.prunedByType.get(g.event) ?? 0) + 1);
      }
      this.pruned += gone.length;
      this.rows -= gone.length;
      this.onPrune(byType, this.rows - this.maxRows);
    }
    return seq;
  }

  /** Entries after `seq`, oldest first. */
  pending(seq: number, limit = 500): OutboxEntry[] {
    return this.after.all(seq, limit).map((r) => ({
      seq: r.seq,
      event: r.event as MirroredEventType,
      data: JSON.parse(r.data) as Record<string, unknown>,
    }));
  }

  /** The bridge has stored everything up to `seq`. */
  ack(seq: number): void {
    const removed = this.ackStmt.run(seq).changes;
    this.rows = Math.max(0, this.rows - removed);
  }
}
