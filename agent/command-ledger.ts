/**
 * The commands this agent has taken, by id, kept in its state file until their expiry: the same command
 * sent again — by a bridge or cluster node whose record of the first delivery was lost (a restart, a
 * database that refused writes, statuses trimmed while it did) — is not carried out twice, also after
 * this agent restarted. A command past its expiry is refused anyway (command-runner.ts), so an id needs
 * remembering only until then: the table holds the commands still current, no more.
 * Expiries are kept on the bridge's clock (as the command gives them) and pruned against the bridge's clock
 * by this agent's fix, never its bare wall clock: a gateway without a real-time clock that NTP steps
 * forward by hours pruned ids still current, and a command sent again after a restart went out twice.
 * Without a fix nothing is pruned.
 * A state disk that fails is counted and reported (core/state/state-health.ts); the newest ids are also
 * kept in memory, so a failing disk forgets only what a restart would (the previous behaviour).
 */
import type Database from 'better-sqlite3';
import { readVia, writeVia, type StoreWrites } from '../core/state/state-health.js';

/** Ids kept in memory (the newest): far more than a link carries within a command's timeout. */
const IN_MEMORY = 4096;
/** Rows kept at most: a bridge sending commands with expiries years ahead must not fill the disk. */
const MAX_ROWS = 100_000;
/** Expired rows are deleted at most this often, and only this long after their expiry. */
const PRUNE_EVERY_MS = 60_000;
const PRUNE_MARGIN_MS = 3_600_000;

export class CommandLedger {
  private readonly recent = new Set<string>();
  private readonly hasStmt: Database.Statement<[string], { one: number }>;
  private readonly addStmt: Database.Statement<[string, number]>;
  private readonly pruneStmt: Database.Statement<[number]>;
  private readonly trimStmt: Database.Statement<[number]>;
  /** Monotonic ms of the last prune (-Infinity: none yet). */
  private lastPrune = Number.NEGATIVE_INFINITY;

  constructor(
    db: Database.Database,
    private readonly writes?: StoreWrites,
  ) {
    // not_after_ms: the command's expiry on the bridge's clock (rows of older runs: on this agent's clock then,
    // off by its offset, far inside the prune margin).
    db.exec('CREATE TABLE IF NOT EXISTS commands_taken (id TEXT PRIMARY KEY, not_after_ms INTEGER NOT NULL) WITHOUT ROWID');
    this.hasStmt = db.prepare('SELECT 1 AS one FROM commands_taken WHERE id = ?');
    this.addStmt = db.prepare('INSERT OR IGNORE INTO commands_taken (id, not_after_ms) VALUES (?, ?)');
    this.pruneStmt = db.prepare('DELETE FROM commands_taken WHERE not_after_ms < ?');
    this.trimStmt = db.prepare(
      'DELETE FROM commands_taken WHERE id IN (SELECT id FROM commands_taken ORDER BY not_after_ms LIMIT (SELECT max(count(*) - ?, 0) FROM commands_taken))',
    );
  }

  /** Whether the command was taken before (by this run, or a previous one within its expiry). */
  has(id: string): boolean {
    if (this.recent.has(id)) return true;
    return readVia(this.writes, () => this.hasStmt.get(id) !== undefined, false);
  }

  /**
   * Remembers a command taken now, until `expiresAtMs` on the bridge's clock (NaN: the command had no
   * readable expiry). `bridgeNowMs`: now on the bridge's clock by this agent's fix, undefined without one.
   */
  add(id: string, expiresAtMs: number, bridgeNowMs: number | undefined): void {
    this.recent.add(id);
    if (this.recent.size > IN_MEMORY) this.recent.delete(this.recent.values().next().value!);
    // A command without a readable expiry is refused, never carried out: nothing to keep past the memory.
    if (!Number.isFinite(expiresAtMs)) return;
    const mono = performance.now();
    writeVia(this.writes, () => {
      this.addStmt.run(id, Math.round(expiresAtMs));
      if (mono - this.lastPrune >= PRUNE_EVERY_MS) {
        this.lastPrune = mono;
        // With a margin: a resend judged with a better clock fix (a restart, a new connection) may be
        // current a little past the expiry as first judged.
        if (bridgeNowMs !== undefined) this.pruneStmt.run(bridgeNowMs - PRUNE_MARGIN_MS);
        this.trimStmt.run(MAX_ROWS);
      }
    });
  }
}
