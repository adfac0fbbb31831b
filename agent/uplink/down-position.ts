/**
 * Where this agent stands in the bridge's stream of DOWN batches — the bridge process's relay epoch and
 * the cumulative ack (every batch up to it transmitted or counted) — kept in the agent's state file, so a
 * next run of the agent takes up the position of the last. The bridge resends what it holds unacknowledged
 * to whichever run connects next; a run that started with no position took those batches as new, and the
 * frames among them still within --relay-max-age-ms went on the bus a second time (a `systemctl restart`
 * or an upgrade while the link was down, or before the last ack left).
 * One row. A state disk that fails is counted and reported (core/state/state-health.ts): the position is
 * then as good as the last write that worked.
 */
import type Database from 'better-sqlite3';
import { readVia, writeVia, type StoreWrites } from '../../core/state/state-health.js';

export interface DownPositionRow {
  epoch: string;
  upTo: number;
}

export class DownPosition {
  private readonly getStmt: Database.Statement<[], { epoch: string; up_to: number }>;
  private readonly putStmt: Database.Statement<[string, number]>;

  constructor(
    db: Database.Database,
    private readonly writes?: StoreWrites,
  ) {
    db.exec('CREATE TABLE IF NOT EXISTS down_position (one INTEGER PRIMARY KEY CHECK (one = 1), epoch TEXT NOT NULL, up_to INTEGER NOT NULL)');
    this.getStmt = db.prepare('SELECT epoch, up_to FROM down_position WHERE one = 1');
    this.putStmt = db.prepare('INSERT INTO down_position (one, epoch, up_to) VALUES (1, ?, ?) ON CONFLICT(one) DO UPDATE SET epoch = excluded.epoch, up_to = excluded.up_to');
  }

  /** The position the last run saved, if any (and readable). */
  load(): DownPositionRow | undefined {
    return readVia(
      this.writes,
      () => {
        const r = this.getStmt.get();
        return r && Number.isSafeInteger(r.up_to) ? { epoch: r.epoch, upTo: r.up_to } : undefined;
      },
      undefined,
    );
  }

  save(p: DownPositionRow): void {
    writeVia(this.writes, () => void this.putStmt.run(p.epoch, p.upTo));
  }
}
