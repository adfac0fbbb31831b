/**
 * The bridge's durable state in SQLite: dongles, tokens (only their SHA-256), groups, commands with their
 * status history, and the per-dongle uplink positions (mirrored-event seq, last UP batch of an agent run)
 * that make redelivery after a reconnect or a bridge restart idempotent. Every query is a prepared
 * statement; nothing here is on the per-frame path.
 *
 * A write the disk refuses (full, I/O error, read-only; core/state/state-health.ts) never throws into
 * the relay or a link: positions, counters and command statuses are kept in memory (reads see them),
 * retried every second and written as soon as the disk lets them; they are lost only if the bridge
 * stops before that. Admin changes (dongles, tokens, groups, new commands) are refused with a
 * StateWriteError instead (the admin API answers 503), so nothing is promised that is not stored.
 */
import type Database from 'better-sqlite3';
import { COMMAND_STATES, type CommandState } from '../core/console/events.js';
import { PendingStatuses } from './pending-statuses.js';
import type { StoreWrites } from '../core/state/state-health.js';
import { commitUnsynced } from '../core/state/unsynced-commit.js';

export interface DongleRow {
  id: string;
  created_at: string;
  last_seen: string | null;
  event_seq: number;
  /** Identity of the agent outbox that event_seq counts (null: not told yet). */
  outbox_id: string | null;
  up_run: string | null;
  up_batch: number | null;
}

export interface GroupRow {
  id: string;
  side_a: string;
  side_b: string;
  /** JSON object: a-side bus → b-side bus. */
  bus_map: string;
  created_at: string;
  updated_at: string;
  dropped: number;
  relayed_total: number;
}

export interface CommandRow {
  id: string;
  dongle: string;
  type: string;
  /** JSON of the validated command body. */
  body: string;
  status: CommandState;
  created_at: string;
  expires_at: string;
}

export interface HistoryRow {
  status: CommandState;
  ts: string;
  error: string | null;
}

export type TokenKind = 'agent' | 'viewer';

export interface TokenRow {
  kind: TokenKind;
  dongle: string | null;
  /** Viewer tokens may expire (ISO time); null: never. */
  expires_at: string | null;
}

export interface ViewerTokenRow {
  hash: string;
  created_at: string;
  expires_at: string | null;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS dongles (
  id TEXT PRIMARY KEY,
  created_at TEXT NOT NULL,
  last_seen TEXT,
  event_seq INTEGER NOT NULL DEFAULT 0,
  up_run TEXT,
  up_batch INTEGER
);
CREATE TABLE IF NOT EXISTS tokens (
  hash TEXT PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('agent', 'viewer')),
  dongle TEXT REFERENCES dongles(id) ON DELETE CASCADE,
  created_at TEXT NOT NULL,
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
  dropped INTEGER NOT NULL DEFAULT 0,
  relayed_total INTEGER NOT NULL DEFAULT 0,
  CHECK (side_a <> side_b)
);
-- One row per group side: the primary key is what keeps a dongle in at most one group.
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
  expires_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS commands_by_dongle_status ON commands(dongle, status);
CREATE INDEX IF NOT EXISTS commands_by_expiry ON commands(expires_at);
-- A dongle's newest commands (recentCommandIds, the fleet page) read from the end of this index, rowid
-- being its last column: without it every command of the dongle was sorted (600k retained: 330 ms).
-- Created here, like every index, at each open: an existing database gets it at its first open.
CREATE INDEX IF NOT EXISTS commands_by_dongle_created ON commands(dongle, created_at);
CREATE TABLE IF NOT EXISTS command_history (
  n INTEGER PRIMARY KEY AUTOINCREMENT,
  command_id TEXT NOT NULL REFERENCES commands(id) ON DELETE CASCADE,
  status TEXT NOT NULL,
  ts TEXT NOT NULL,
  error TEXT
);
CREATE INDEX IF NOT EXISTS command_history_by_command ON command_history(command_id, n);
`;

/** Columns added after the first release: added in place to an existing database. */
const ADDED_COLUMNS: readonly { table: string; column: string; ddl: string }[] = [
  { table: 'dongles', column: 'outbox_id', ddl: 'outbox_id TEXT' },
  { table: 'tokens', column: 'expires_at', ddl: 'expires_at TEXT' },
];

function migrate(db: Database.Database): void {
  for (const c of ADDED_COLUMNS) {
    const cols = db.prepare<[], { name: string }>(`SELECT name FROM pragma_table_info('${c.table}')`).all();
    if (!cols.some((x) => x.name === c.column)) db.exec(`ALTER TABLE ${c.table} ADD COLUMN ${c.ddl}`);
  }
}

const RETRY_MS = 1000;

/** A dongle's position fields as last set; `outbox_id` set means event_seq restarted with it. */
type Position = Partial<Pick<DongleRow, 'last_seen' | 'event_seq' | 'outbox_id' | 'up_run' | 'up_batch'>>;

const TERMINAL: ReadonlySet<CommandState> = new Set(['succeeded', 'failed', 'timed_out']);
export const isTerminal = (s: CommandState): boolean => TERMINAL.has(s);

/** A command to time out, with its history row's time and reason. */
export interface CommandTimeout {
  id: string;
  ts: string;
  error: string;
}

/** How far along its lifecycle each status is (the one definition: the bridge and PostgreSQL's write guard read it). */
export const COMMAND_RANK: Readonly<Record<CommandState, number>> = { queued: 0, sent: 1, delivered: 2, succeeded: 3, failed: 3, timed_out: 3 };

/**
 * Whether `to` may replace `from` as a command's status: forward only, and nothing after a final status
 * except the agent's own final word after a `timed_out` the bridge declared while it could not hear it.
 */
export const replacesStatus = (from: CommandState, to: CommandState): boolean =>
  from === 'timed_out' ? to === 'succeeded' || to === 'failed' : !isTerminal(from) && COMMAND_RANK[to] > COMMAND_RANK[from];

export class BridgeStore {
  private readonly s;
  /** Writes the disk refused, newest value wins; applied over what is read. */
  private readonly positions = new Map<string, Position>();
  private readonly counters = new Map<string, { dropped: number; relayed_total: number }>();
  private statuses = new PendingStatuses();
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly writePending: () => void;
  /** Command status changes dropped from memory while the disk refused them. */
  statusesDropped = 0;

  /** `writes`: where a refused write is counted and reported; without it a failure throws. */
  constructor(
    private readonly db: Database.Database,
    private readonly writes?: StoreWrites,
  ) {
    db.pragma('foreign_keys = ON');
    db.exec(SCHEMA);
    migrate(db);
    this.s = {
      dongleGet: db.prepare<[string], DongleRow>('SELECT * FROM dongles WHERE id = ?'),
      dongleList: db.prepare<[], DongleRow>('SELECT * FROM dongles ORDER BY id'),
      dongleInsert: db.prepare<[string, string]>('INSERT INTO dongles (id, created_at) VALUES (?, ?) ON CONFLICT(id) DO NOTHING'),
      dongleDelete: db.prepare<[string]>('DELETE FROM dongles WHERE id = ?'),
      lastSeen: db.prepare<[string, string]>('UPDATE dongles SET last_seen = ? WHERE id = ?'),
      eventSeq: db.prepare<[number, string]>('UPDATE dongles SET event_seq = ? WHERE id = ?'),
      mirrorOrigin: db.prepare<[string, string]>('UPDATE dongles SET outbox_id = ?, event_seq = 0 WHERE id = ?'),
      upPosition: db.prepare<[string, number, string]>('UPDATE dongles SET up_run = ?, up_batch = ? WHERE id = ?'),
      tokenGet: db.prepare<[string], TokenRow>('SELECT kind, dongle, expires_at FROM tokens WHERE hash = ?'),
      viewerInsert: db.prepare<[string, string, string | null]>("INSERT INTO tokens (hash, kind, dongle, created_at, expires_at) VALUES (?, 'viewer', NULL, ?, ?)"),
      viewerList: db.prepare<[], ViewerTokenRow>("SELECT hash, created_at, expires_at FROM tokens WHERE kind = 'viewer' ORDER BY created_at, rowid"),
      viewerDelete: db.prepare<[number, string]>("DELETE FROM tokens WHERE kind = 'viewer' AND substr(hash, 1, ?) = ?"),
      viewerPrune: db.prepare<[string, number]>(
        "DELETE FROM tokens WHERE rowid IN (SELECT rowid FROM tokens WHERE kind = 'viewer' AND expires_at IS NOT NULL AND expires_at < ? LIMIT ?)",
      ),
      tokenDeleteAgent: db.prepare<[string]>("DELETE FROM tokens WHERE kind = 'agent' AND dongle = ?"),
      tokenInsert: db.prepare<[string, TokenKind, string | null, string]>('INSERT INTO tokens (hash, kind, dongle, created_at) VALUES (?, ?, ?, ?)'),
      groupGet: db.prepare<[string], GroupRow>('SELECT * FROM groups WHERE id = ?'),
      groupList: db.prepare<[], GroupRow>('SELECT * FROM groups ORDER BY id'),
      groupInsert: db.prepare<[string, string, string, string, string, string]>(
        'INSERT INTO groups (id, side_a, side_b, bus_map, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      groupUpdate: db.prepare<[string, string, string, string, string]>('UPDATE groups SET side_a = ?, side_b = ?, bus_map = ?, updated_at = ? WHERE id = ?'),
      groupDelete: db.prepare<[string]>('DELETE FROM groups WHERE id = ?'),
      groupCounters: db.prepare<[number, number, string]>('UPDATE groups SET dropped = ?, relayed_total = ? WHERE id = ?'),
      memberOf: db.prepare<[string], { group_id: string; side: 'a' | 'b' }>('SELECT group_id, side FROM group_members WHERE dongle = ?'),
      membersDelete: db.prepare<[string]>('DELETE FROM group_members WHERE group_id = ?'),
      memberInsert: db.prepare<[string, string, 'a' | 'b']>('INSERT INTO group_members (dongle, group_id, side) VALUES (?, ?, ?)'),
      commandInsert: db.prepare<[string, string, string, string, string, string, string]>(
        'INSERT INTO commands (id, dongle, type, body, status, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      commandGet: db.prepare<[string], CommandRow>('SELECT * FROM commands WHERE id = ?'),
      recentIds: db.prepare<[string, number], { id: string }>('SELECT id FROM commands WHERE dongle = ? ORDER BY created_at DESC, rowid DESC LIMIT ?'),
      commandStatus: db.prepare<[string, string]>('UPDATE commands SET status = ? WHERE id = ?'),
      // Only for a command still there (as PostgreSQL's): a status for a deleted one would break the foreign
      // key, a constraint error attempt() rethrows, and every later write-behind would fail with it.
      historyInsert: db.prepare<[string, string, string, string | null, string]>(
        'INSERT INTO command_history (command_id, status, ts, error) SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM commands WHERE id = ?)',
      ),
      history: db.prepare<[string], HistoryRow>('SELECT status, ts, error FROM command_history WHERE command_id = ? ORDER BY n'),
      queuedFor: db.prepare<[string, number], CommandRow>("SELECT * FROM commands WHERE dongle = ? AND status = 'queued' ORDER BY created_at, rowid LIMIT ?"),
      unfinishedCount: db.prepare<[string], { n: number }>("SELECT count(*) AS n FROM commands WHERE dongle = ? AND status IN ('queued', 'sent', 'delivered')"),
      pruneFinished: db.prepare<[string, number]>(
        "DELETE FROM commands WHERE rowid IN (SELECT rowid FROM commands WHERE expires_at < ? AND status IN ('succeeded', 'failed', 'timed_out') LIMIT ?)",
      ),
      unfinished: db.prepare<[], CommandRow>("SELECT * FROM commands WHERE status NOT IN ('succeeded', 'failed', 'timed_out') ORDER BY created_at, rowid"),
      unfinishedFor: db.prepare<[string], CommandRow>("SELECT * FROM commands WHERE dongle = ? AND status NOT IN ('succeeded', 'failed', 'timed_out') ORDER BY created_at, rowid"),
    };
    this.writePending = db.transaction(() => {
      for (const [id, p] of this.positions) {
        // A new outbox first: it resets event_seq, which a later event_seq then sets.
        if (p.outbox_id != null) this.s.mirrorOrigin.run(p.outbox_id, id);
        if (p.event_seq !== undefined) this.s.eventSeq.run(p.event_seq, id);
        if (p.last_seen != null) this.s.lastSeen.run(p.last_seen, id);
        if (p.up_run != null && p.up_batch != null) this.s.upPosition.run(p.up_run, p.up_batch, id);
      }
      for (const [id, c] of this.counters) this.s.groupCounters.run(c.dropped, c.relayed_total, id);
      for (const st of this.statuses.entries()) {
        this.s.commandStatus.run(st.status, st.id);
        this.s.historyInsert.run(st.id, st.status, st.ts, st.error, st.id);
      }
    });
  }

  /** Admin changes: stored, or a StateWriteError (nothing changed). */
  private must<T>(write: () => T): T {
    return this.writes ? this.writes.must(write) : write();
  }

  /** Writes whatever waits in memory; on refusal keeps it and retries in a second (not at every change). */
  private flushPending(): void {
    if (!this.db.open || this.retryTimer !== undefined) return;
    // Positions, last-seen times and counters are not synced: losing the last of them at a power cut means
    // an older value (resends relayed again, counted). A command status is: it is answered to the API, and
    // a status gone backwards could deliver a command twice.
    const write = this.statuses.length > 0 ? this.writePending : () => commitUnsynced(this.db, this.writePending);
    const ok = this.writes ? this.writes.attempt(write).ok : (write(), true);
    if (ok) {
      this.positions.clear();
      this.counters.clear();
      this.statuses = new PendingStatuses();
      return;
    }
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.flushPending();
    }, RETRY_MS).unref();
  }

  private setPosition(id: string, p: Position): void {
    this.positions.set(id, { ...this.positions.get(id), ...p });
    this.flushPending();
  }

  private withPending<T extends DongleRow | undefined>(row: T): T {
    const p = row && this.positions.get(row.id);
    return p ? { ...row, ...p } : row;
  }

  private withCounters<T extends GroupRow | undefined>(row: T): T {
    const c = row && this.counters.get(row.id);
    return c ? { ...row, ...c } : row;
  }

  private withStatus<T extends CommandRow | undefined>(row: T): T {
    const st = row && this.statuses.latest(row.id);
    return st ? { ...row, status: st.status } : row;
  }

  /** Before the database closes: one last try for what waits in memory. */
  flushBeforeClose(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (this.pendingWrites > 0) this.flushPending();
    clearTimeout(this.retryTimer);
    this.writes?.lostAtClose(this.pendingWrites, 'positions, counters or command statuses');
  }

  /** Values waiting in memory for the disk. */
  get pendingWrites(): number {
    return this.positions.size + this.counters.size + this.statuses.length;
  }

  // ---- dongles ----

  dongle(id: string): DongleRow | undefined {
    return this.withPending(this.s.dongleGet.get(id));
  }

  dongles(): DongleRow[] {
    return this.s.dongleList.all().map((r) => this.withPending(r));
  }

  /** Registers a dongle with its first agent token; false (and no change) when it already exists. */
  createDongle(id: string, tokenHash: string, now: string): boolean {
    return this.must(
      this.db.transaction(() => {
        if (this.s.dongleInsert.run(id, now).changes === 0) return false;
        this.s.tokenInsert.run(tokenHash, 'agent', id, now);
        return true;
      }),
    );
  }

  /** Replaces the dongle's agent token: the old one stops working at once. */
  rotateAgentToken(id: string, tokenHash: string, now: string): void {
    this.must(
      this.db.transaction(() => {
        this.s.tokenDeleteAgent.run(id);
        this.s.tokenInsert.run(tokenHash, 'agent', id, now);
      }),
    );
  }

  /** Removes a dongle, its tokens and the group it is in (returned). Its command history stays. */
  deleteDongle(id: string): { deleted: boolean; group: string | undefined } {
    const r = this.must(
      this.db.transaction(() => {
        const group = this.s.memberOf.get(id)?.group_id;
        if (group !== undefined) {
          this.s.membersDelete.run(group);
          this.s.groupDelete.run(group);
        }
        return { deleted: this.s.dongleDelete.run(id).changes > 0, group };
      }),
    );
    this.positions.delete(id);
    if (r.group !== undefined) this.counters.delete(r.group);
    return r;
  }

  setLastSeen(id: string, ts: string): void {
    this.setPosition(id, { last_seen: ts });
  }

  setEventSeq(id: string, seq: number): void {
    this.setPosition(id, { event_seq: seq });
  }

  /** A new agent outbox for this dongle: its mirrored-event numbering starts afresh. */
  setMirrorOrigin(id: string, outboxId: string): void {
    this.setPosition(id, { outbox_id: outboxId, event_seq: 0 });
  }

  /** Many positions, written in one transaction (the bridge saves every link's together once a second). */
  setUpPositions(rows: readonly { dongle: string; stream: string; batch: number }[]): void {
    for (const r of rows) this.positions.set(r.dongle, { ...this.positions.get(r.dongle), up_run: r.stream, up_batch: r.batch });
    this.flushPending();
  }

  // ---- tokens ----

  addViewerToken(tokenHash: string, now: string, expiresAt: string | null = null): void {
    this.must(() => this.s.viewerInsert.run(tokenHash, now, expiresAt));
  }

  viewerTokens(): ViewerTokenRow[] {
    return this.s.viewerList.all();
  }

  /** Deletes up to `limit` viewer tokens that expired before `before` (retention.ts); returns how many. */
  pruneExpiredViewerTokens(before: string, limit: number): number {
    // Housekeeping: on a disk that refuses writes it waits for the next round.
    if (!this.writes) return this.s.viewerPrune.run(before, limit).changes;
    const r = this.writes.attempt(() => this.s.viewerPrune.run(before, limit).changes);
    return r.ok ? r.value : 0;
  }

  /** Deletes the viewer token whose hash starts with `idPrefix`; false when there is none. */
  deleteViewerToken(idPrefix: string): boolean {
    return this.must(() => this.s.viewerDelete.run(idPrefix.length, idPrefix).changes > 0);
  }

  token(hash: string): TokenRow | undefined {
    return this.s.tokenGet.get(hash);
  }

  // ---- groups ----

  group(id: string): GroupRow | undefined {
    return this.withCounters(this.s.groupGet.get(id));
  }

  groups(): GroupRow[] {
    return this.s.groupList.all().map((g) => this.withCounters(g));
  }

  /** Creates or updates a group; the caller has checked the sides (the keys would refuse a conflict anyway). */
  putGroup(id: string, a: string, b: string, busMap: Record<string, string>, now: string): { created: boolean } {
    return this.must(
      this.db.transaction(() => {
        const exists = this.s.groupGet.get(id) !== undefined;
        const map = JSON.stringify(busMap);
        if (exists) this.s.groupUpdate.run(a, b, map, now, id);
        else this.s.groupInsert.run(id, a, b, map, now, now);
        this.s.membersDelete.run(id);
        this.s.memberInsert.run(a, id, 'a');
        this.s.memberInsert.run(b, id, 'b');
        return { created: !exists };
      }),
    );
  }

  deleteGroup(id: string): boolean {
    const deleted = this.must(
      this.db.transaction(() => {
        this.s.membersDelete.run(id);
        return this.s.groupDelete.run(id).changes > 0;
      }),
    );
    this.counters.delete(id);
    return deleted;
  }

  saveGroupCounters(id: string, dropped: number, relayedTotal: number): void {
    this.saveAllGroupCounters([{ id, dropped, relayedTotal }]);
  }

  /** Every group's counters in one transaction (the relay saves them all each interval). */
  saveAllGroupCounters(rows: readonly { id: string; dropped: number; relayedTotal: number }[]): void {
    for (const r of rows) this.counters.set(r.id, { dropped: r.dropped, relayed_total: r.relayedTotal });
    this.flushPending();
  }

  // ---- commands ----

  insertCommand(c: CommandRow): void {
    this.must(
      this.db.transaction(() => {
        this.s.commandInsert.run(c.id, c.dongle, c.type, c.body, c.status, c.created_at, c.expires_at);
        this.s.historyInsert.run(c.id, c.status, c.created_at, null, c.id);
      }),
    );
  }

  command(id: string): CommandRow | undefined {
    return this.withStatus(this.s.commandGet.get(id));
  }

  /** The ids of a dongle's newest commands, newest first (finished ones until --command-retention). */
  recentCommandIds(dongle: string, limit: number): string[] {
    return this.s.recentIds.all(dongle, limit).map((r) => r.id);
  }

  commandHistory(id: string): HistoryRow[] {
    const waiting = this.statuses.of(id).map((st) => ({ status: st.status, ts: st.ts, error: st.error }));
    return this.s.history.all(id).concat(waiting);
  }

  /** Moves a command to a new status and appends it to the history, in one transaction. */
  setCommandStatus(id: string, status: CommandState, ts: string, error?: string): void {
    if (!COMMAND_STATES.includes(status)) throw new Error(`unknown command status ${status}`);
    this.statuses.push({ id, status, ts, error: error ?? null });
    this.statusesDropped += this.statuses.trim().length;
    this.flushPending();
  }

  /**
   * Times out those of the commands that are still unfinished (as read now) and returns their ids: the
   * one place a timeout is decided, so a command times out once however many callers (nodes, in PgStore)
   * reached its deadline.
   */
  timeOutCommands(rows: readonly CommandTimeout[]): Set<string> {
    const moved = new Set<string>();
    for (const r of rows) {
      const c = this.command(r.id);
      if (!c || !replacesStatus(c.status, 'timed_out')) continue;
      this.setCommandStatus(r.id, 'timed_out', r.ts, r.error);
      moved.add(r.id);
    }
    return moved;
  }

  /**
   * The oldest `limit` commands of the dongle still waiting to be sent. Rows the disk still says are
   * queued may have moved on in memory (statuses waiting for a disk that refuses writes): as many more
   * are read, so that those do not take the places of commands really waiting.
   */
  queuedCommands(dongle: string, limit: number): CommandRow[] {
    return this.s.queuedFor
      .all(dongle, limit + this.statuses.length)
      .map((c) => this.withStatus(c))
      .filter((c) => c.status === 'queued')
      .slice(0, limit);
  }

  /** Commands of the dongle not finished yet (queued, sent or delivered). */
  unfinishedCount(dongle: string): number {
    return this.s.unfinishedCount.get(dongle)!.n;
  }

  /** Deletes up to `limit` finished commands (and their history) whose deadline is before `before`; returns how many. */
  pruneFinishedCommands(before: string, limit: number): number {
    // Housekeeping: on a disk that refuses writes (or with statuses still waiting for it) it waits for the next round.
    if (this.statuses.length > 0) return 0;
    if (!this.writes) return this.s.pruneFinished.run(before, limit).changes;
    const r = this.writes.attempt(() => this.s.pruneFinished.run(before, limit).changes);
    return r.ok ? r.value : 0;
  }

  unfinishedCommands(dongle?: string): CommandRow[] {
    const rows = dongle === undefined ? this.s.unfinished.all() : this.s.unfinishedFor.all(dongle);
    return rows.map((c) => this.withStatus(c)).filter((c) => !isTerminal(c.status));
  }
}
