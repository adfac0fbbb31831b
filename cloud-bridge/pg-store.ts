/**
 * The bridge's durable state in PostgreSQL (cluster mode, `--db postgres://…`): the same rows and the same
 * methods as the SQLite BridgeStore, for any number of bridge nodes on one database (docs/cluster.md,
 * "State (PostgreSQL)").
 *
 * Reads are answered synchronously from an in-memory view of every table, so no read on a link, the relay
 * or an auth check ever waits for the network, and the relay keeps running while PostgreSQL is away.
 * - Admin changes (dongles, tokens, groups, new commands) are committed to PostgreSQL first; the call
 *   resolves only after the commit and after this node's view shows it (the admin API answers after it),
 *   and it fails with a StateWriteError (503) when PostgreSQL is unreachable: nothing is promised that
 *   is not stored.
 * - Every change is announced with NOTIFY in its own transaction; each node LISTENs and re-reads the
 *   rows named, so a token created, rotated or revoked on one node takes effect on all of them as soon
 *   as the notification arrives (milliseconds; the tests hold it to 1 s). After a lost connection the
 *   whole view is re-read once LISTEN is back, and what differs is announced as if notified: a
 *   notification missed meanwhile changes nothing.
 * - Positions, group counters and command statuses are written behind, batched, one transaction at a
 *   time (as SQLite's are written once a second by their callers): kept in memory (reads see them)
 *   while PostgreSQL is away, retried, and lost only if the node stops before they are written.
 * All changes of the view go through one queue in order, each applying what it read after the commit it
 * follows, so the view converges on what is committed whatever the interleaving.
 */
import type { Logger } from 'pino';
import pg from 'pg';
import { COMMAND_STATES, type CommandState } from '../core/console/events.js';
import { StateWriteError } from '../core/state/state-health.js';
import { redact } from './db-url.js';
import { migrate } from './pg-schema.js';
import { PendingStatuses, type PendingStatus } from './pending-statuses.js';
import { OrderedCommands } from './ordered-commands.js';
import { StateRefusedError } from './state-store.js';
import {
  isTerminal,
  replacesStatus,
  type CommandRow,
  type CommandTimeout,
  type DongleRow,
  type GroupRow,
  type HistoryRow,
  type TokenKind,
  type TokenRow,
  type ViewerTokenRow,
} from './store.js';
import { randomUUID } from 'node:crypto';

const CHANNEL = 'canrelay_state';
/** NOTIFY payloads are limited to 8000 bytes: position notices name their dongles in chunks below it. */
const NOTIFY_CHUNK = 7000;
const RECONNECT_MS = 1000;
/** The statuses a timeout may replace. */
const TIMES_OUT: readonly CommandState[] = COMMAND_STATES.filter((s) => replacesStatus(s, 'timed_out'));
/** Every (from, to) pair of statuses a write may move a command through, for the write-behind's guard. */
const STATUS_MOVES: readonly (readonly [CommandState, CommandState])[] = COMMAND_STATES.flatMap((a) =>
  COMMAND_STATES.filter((b) => replacesStatus(a, b)).map((b) => [a, b] as const),
);
/** Fails fast when the server is away, instead of holding an admin request. */
const CONNECT_TIMEOUT_MS = 3000;
const QUERY_TIMEOUT_MS = 10_000;
/** A server that vanished without closing the socket (a partition) is noticed by this probe, not only at the next write. */
const PROBE_MS = 5000;

/** BIGINT columns as numbers (positions and counters stay far below 2^53). */
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === 20 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

interface TokenFull extends TokenRow {
  hash: string;
  created_at: string;
  n: number;
}
interface CommandFull extends CommandRow {
  n: number;
}
type Position = Partial<Pick<DongleRow, 'last_seen' | 'event_seq' | 'outbox_id' | 'up_run' | 'up_batch'>>;
interface Pending {
  positions: Map<string, Position>;
  counters: Map<string, { dropped: number; relayed_total: number }>;
  statuses: PendingStatuses;
}
const emptyPending = (): Pending => ({ positions: new Map(), counters: new Map(), statuses: new PendingStatuses() });
const byCreation = (a: CommandFull, b: CommandFull): number => (a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : a.n - b.n);

/** A remote or local change of the durable state, after the view shows it (for the cluster wiring). */
export type StateChange = (
  | { kind: 'dongle' | 'group' | 'command'; id: string }
  | { kind: 'token'; hash: string; tokenKind: TokenKind; dongle: string | null; removed: boolean }
) & {
  /** Made by another node (false: this node's own admin change, which its admin API has acted on already). */
  remote: boolean;
};

/** Errors that mean "the server is not there" (as opposed to a refused statement). */
function isConnectionError(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  if (typeof e.code === 'string') {
    // Class 08 (connection exception), 57P0x (admin/crash shutdown), and socket errors.
    if (e.code.startsWith('08') || e.code.startsWith('57P') || e.code.startsWith('E')) return true;
    return false;
  }
  return /terminated|timeout|Connection|not queryable|ended/i.test(String(e.message));
}

export class PgStore {
  private readonly pool: pg.Pool;
  private listener: pg.Client | undefined;
  /** The whole view was read once (at start): later full reads announce what changed. */
  private viewRead = false;
  private readonly node = randomUUID().slice(0, 8);
  // ---- the view (what PostgreSQL has committed, as last read) ----
  private readonly dongleRows = new Map<string, DongleRow>();
  private readonly tokenRows = new Map<string, TokenFull>();
  private readonly groupRows = new Map<string, GroupRow>();
  private readonly commandRows = new Map<string, CommandFull>();
  /**
   * Per dongle, in the stores' order (created_at, then n): all its commands, those not finished and those
   * queued, by their status as read (statuses waiting to be written overlaid: indexCommand() after every
   * change of either), so that a lookup touches only the rows it returns.
   */
  private readonly commandsOf = new Map<string, OrderedCommands>();
  private readonly unfinishedOf = new Map<string, OrderedCommands>();
  private readonly queuedOf = new Map<string, OrderedCommands>();
  private readonly histories = new Map<string, HistoryRow[]>();
  /** Written behind: `inflight` is being committed, `pending` waits; reads see base ← inflight ← pending. */
  private pending = emptyPending();
  private inflight = emptyPending();
  private flushing = false;
  private flushTimer: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  private reconnectTimer: NodeJS.Timeout | undefined;
  private probeTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly listeners: Array<(c: StateChange) => void> = [];
  /** True while a step of the queue applies another node's change (or a full re-read). */
  private remoteStep = false;
  // ---- health ----
  /** Undefined while PostgreSQL is reachable; the cause while it is not. */
  unreachable: string | undefined;
  /** Failed database operations since start (canrelay_cluster_db_errors_total). */
  errors = 0;
  statusesDropped = 0;

  private constructor(
    private readonly url: string,
    private readonly log: Logger,
  ) {
    this.pool = new pg.Pool({ connectionString: url, max: 4, connectionTimeoutMillis: CONNECT_TIMEOUT_MS, query_timeout: QUERY_TIMEOUT_MS, types });
    // An idle client losing its server: the listener notices too; this must not be an unhandled 'error'.
    this.pool.on('error', (err) => this.lost(err));
  }

  /** Connects, creates or updates the schema, reads the whole view and starts listening. Throws if it cannot. */
  static async open(url: string, log: Logger): Promise<PgStore> {
    const s = new PgStore(url, log);
    try {
      const c = await s.pool.connect();
      c.on('error', () => undefined); // the migration's own query fails and is reported
      try {
        await migrate(c);
      } finally {
        c.release();
      }
      await s.connectListener();
    } catch (err) {
      await s.pool.end().catch(() => undefined);
      throw new Error(
        `cannot use the PostgreSQL database ${redact(url)}: ${(err as Error).message}; check that the server runs and that the URL, role and database are right (docs/deployment.md, "PostgreSQL")`,
      );
    }
    return s;
  }

  /** Called after every change the view shows (remote ones included). */
  onChange(fn: (c: StateChange) => void): void {
    this.listeners.push(fn);
  }

  /** Where the database is, without a password (for logs). */
  get where(): string {
    return redact(this.url);
  }

  // ---- connection, health, notifications ----

  private async connectListener(): Promise<void> {
    const c = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: CONNECT_TIMEOUT_MS, query_timeout: QUERY_TIMEOUT_MS, keepAlive: true, types });
    c.on('error', (err) => this.lost(err, c));
    c.on('end', () => this.lost(new Error('connection ended'), c));
    c.on('notification', (m) => {
      if (m.channel === CHANNEL && m.payload) this.notified(m.payload);
    });
    try {
      await c.connect();
      await c.query(`LISTEN ${CHANNEL}`);
    } catch (err) {
      await c.end().catch(() => undefined);
      throw err;
    }
    this.listener = c;
    this.startProbe();
    // LISTEN first, then the full read: a change committed in between is both read and notified.
    await this.reread();
  }

  private startProbe(): void {
    if (this.probeTimer !== undefined) return;
    this.probeTimer = setInterval(() => {
      const c = this.listener;
      if (c === undefined || this.closed) return;
      c.query('SELECT 1').catch((err: unknown) => this.lost(err, c));
    }, PROBE_MS);
    this.probeTimer.unref();
  }

  /** The whole view read again (at start and after a lost connection); its changes count as remote. */
  private reread(): Promise<void> {
    return this.enqueue(async () => {
      this.remoteStep = true;
      try {
        await this.reloadAll();
      } finally {
        this.remoteStep = false;
      }
    });
  }

  private lost(err: unknown, client?: pg.Client): void {
    if (client !== undefined && client !== this.listener) return;
    if (client !== undefined) this.listener = undefined;
    if (this.closed) return;
    this.errors++;
    if (this.unreachable === undefined) {
      this.unreachable = `PostgreSQL ${this.where} unreachable: ${(err as Error).message || String(err)}`;
      this.log.error(
        { db: this.where, err: (err as Error).message },
        `${this.unreachable}; admin changes are refused (503) and positions, counters and command statuses are kept in memory until it is back; reconnecting every ${RECONNECT_MS / 1000} s`,
      );
    }
    client?.end().catch(() => undefined);
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer !== undefined) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.reconnect();
    }, RECONNECT_MS);
    this.reconnectTimer.unref();
  }

  private async reconnect(): Promise<void> {
    if (this.closed) return;
    try {
      if (this.listener === undefined) await this.connectListener();
      else await this.reread();
    } catch (err) {
      this.errors++;
      this.log.debug({ err: (err as Error).message }, 'PostgreSQL still unreachable');
      this.scheduleReconnect();
      return;
    }
    if (this.unreachable !== undefined) {
      this.log.info({ db: this.where, failed_operations: this.errors }, `PostgreSQL ${this.where} reachable again: view re-read, writes resumed`);
      this.unreachable = undefined;
    }
    this.scheduleFlush(0);
  }

  /** A failed operation: a connection error makes the store unreachable (and reconnecting). */
  private failed(err: unknown): void {
    if (isConnectionError(err)) this.lost(err, this.listener);
    else this.errors++;
  }

  private notified(payload: string): void {
    const [node, kind, rest] = splitPayload(payload);
    if (node === undefined || kind === undefined || rest === undefined) return;
    // Own changes are in the view already (applied through the same queue after their commit).
    if (node === this.node) return;
    void this.enqueue(async () => {
      this.remoteStep = true;
      try {
        await this.reload(kind, rest);
      } finally {
        this.remoteStep = false;
      }
    }).catch((err) => this.failed(err));
  }

  /** Runs `step` after every step queued before it: the view changes in one order. */
  private enqueue(step: () => Promise<void>): Promise<void> {
    const run = this.chain.then(step);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private q<R extends pg.QueryResultRow>(text: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
    return this.pool.query<R>(text, params);
  }

  private async tx<T>(body: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const c = await this.pool.connect();
    // A checked-out client whose server goes away emits 'error' (its query fails too); unhandled, it would end the process.
    const onError = (err: Error): void => this.failed(err);
    c.on('error', onError);
    let broken = false;
    try {
      await c.query('BEGIN');
      const r = await body(c);
      await c.query('COMMIT');
      return r;
    } catch (err) {
      broken = isConnectionError(err);
      if (!broken) await c.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      c.off('error', onError);
      // A client that lost its server is destroyed, not handed out again.
      c.release(broken);
    }
  }

  private notify(c: pg.PoolClient, kind: string, rest: string): Promise<unknown> {
    return c.query('SELECT pg_notify($1, $2)', [CHANNEL, `${this.node}|${kind}|${rest}`]);
  }

  /**
   * An admin change: committed, then shown in this node's view; or a StateRefusedError when a key refused
   * it (`refused` words it for the change), or a StateWriteError.
   */
  private async must<T>(
    what: string,
    body: (c: pg.PoolClient) => Promise<T>,
    after: (r: T) => Promise<void>,
    refused?: (k: KeyRefusal) => StateRefusedError | undefined,
  ): Promise<T> {
    if (this.unreachable !== undefined) throw new StateWriteError(`${this.unreachable}; nothing was changed (${what}), try again once it is back`);
    let r: T;
    try {
      r = await this.tx(body);
    } catch (err) {
      // A key that refused the change: another node committed first (the admin API checked this node's
      // view, which had not seen it yet). The database is fine; the request is what no longer fits.
      const k = keyRefusal(err);
      if (k !== undefined) {
        throw (
          refused?.(k) ??
          new StateRefusedError(
            k.reason,
            `the change (${what}) was refused: ${k.detail || k.constraint} — changed meanwhile, possibly through another node; nothing was changed, look again (GET) before retrying`,
          )
        );
      }
      this.failed(err);
      const msg = (err as Error).message;
      throw new StateWriteError(
        isConnectionError(err)
          ? `PostgreSQL ${this.where} did not confirm the change (${what}): ${msg}; check with GET and retry once it is back`
          : `PostgreSQL ${this.where} refused the change (${what}): ${msg}`,
      );
    }
    await this.enqueue(() => after(r)).catch((err) => this.failed(err));
    return r;
  }

  // ---- reading PostgreSQL into the view ----

  private async reloadAll(): Promise<void> {
    const [d, t, g, c, h] = await Promise.all([
      this.q<DongleRow>('SELECT id, created_at, last_seen, event_seq, outbox_id, up_run, up_batch FROM dongles'),
      this.q<TokenFull>('SELECT hash, kind, dongle, created_at, expires_at, n FROM tokens'),
      this.q<GroupRow>('SELECT id, side_a, side_b, bus_map, created_at, updated_at, dropped, relayed_total FROM groups'),
      this.q<CommandFull>('SELECT id, dongle, type, body, status, created_at, expires_at, n FROM commands'),
      this.q<HistoryRow & { command_id: string }>('SELECT command_id, status, ts, error FROM command_history ORDER BY n'),
    ]);
    // After a lost connection, what changed meanwhile (its notifications were missed) is announced as if
    // notified: the relay drops or re-reads groups, links of removed dongles end, queued commands go out.
    // The first read (at start) announces nothing: the bridge loads the view itself.
    const announce = this.viewRead;
    this.viewRead = true;
    const dongleIds = new Set(this.dongleRows.keys());
    this.dongleRows.clear();
    for (const r of d.rows) this.dongleRows.set(r.id, r);
    // Tokens gone while this node was not listening: their sessions and links end as on any revocation.
    const before = new Map(this.tokenRows);
    this.tokenRows.clear();
    for (const r of t.rows) this.tokenRows.set(r.hash, r);
    for (const [hash, old] of before) if (!this.tokenRows.has(hash)) this.emitToken(old, true);
    const groupsBefore = new Map(this.groupRows);
    this.groupRows.clear();
    for (const r of g.rows) this.groupRows.set(r.id, r);
    const commandsBefore = new Map(this.commandRows);
    this.commandRows.clear();
    this.commandsOf.clear();
    this.unfinishedOf.clear();
    this.queuedOf.clear();
    // In order, so that each dongle's lists are built by appending.
    for (const r of c.rows.sort(byCreation)) this.putCommandRow(r);
    this.histories.clear();
    for (const r of h.rows) {
      const list = this.histories.get(r.command_id) ?? [];
      list.push({ status: r.status, ts: r.ts, error: r.error });
      this.histories.set(r.command_id, list);
    }
    if (!announce) return;
    for (const id of new Set([...dongleIds, ...this.dongleRows.keys()])) if (dongleIds.has(id) !== this.dongleRows.has(id)) this.emit({ kind: 'dongle', id, remote: true });
    for (const id of new Set([...groupsBefore.keys(), ...this.groupRows.keys()])) {
      const a = groupsBefore.get(id);
      const b = this.groupRows.get(id);
      // created_at too: a group deleted and made again with the same sides and map while this node was not
      // listening is another group (its relay revision differs); missed, this node relayed under the old one
      // and every batch across nodes was dropped at the receiver as from another group.
      if (a?.side_a !== b?.side_a || a?.side_b !== b?.side_b || a?.bus_map !== b?.bus_map || a?.created_at !== b?.created_at) this.emit({ kind: 'group', id, remote: true });
    }
    for (const [id, r] of this.commandRows) if (commandsBefore.get(id)?.status !== r.status) this.emit({ kind: 'command', id, remote: true });
  }

  private async reload(kind: string, rest: string): Promise<void> {
    switch (kind) {
      case 'dongle':
        return this.reloadDongle(rest);
      case 'token':
        return this.reloadToken(rest);
      case 'group':
        return this.reloadGroup(rest);
      case 'command':
        return this.reloadCommands(rest.split(','));
      case 'pos':
        return this.reloadPositions(rest.split(','));
      case 'counters':
        return this.reloadCounters(rest.split(','));
    }
  }

  private async reloadDongle(id: string): Promise<void> {
    const [d, t] = await Promise.all([
      this.q<DongleRow>('SELECT id, created_at, last_seen, event_seq, outbox_id, up_run, up_batch FROM dongles WHERE id = $1', [id]),
      this.q<TokenFull>("SELECT hash, kind, dongle, created_at, expires_at, n FROM tokens WHERE kind = 'agent' AND dongle = $1", [id]),
    ]);
    const row = d.rows[0];
    if (row) this.dongleRows.set(id, row);
    else this.dongleRows.delete(id);
    const fresh = new Set(t.rows.map((tok) => tok.hash));
    for (const [hash, tok] of this.tokenRows)
      if (tok.kind === 'agent' && tok.dongle === id && !fresh.has(hash)) {
        this.tokenRows.delete(hash);
        this.emitToken(tok, true);
      }
    for (const tok of t.rows) this.tokenRows.set(tok.hash, tok);
    this.emit({ kind: 'dongle', id, remote: this.remoteStep });
  }

  private async reloadToken(hash: string): Promise<void> {
    const r = await this.q<TokenFull>('SELECT hash, kind, dongle, created_at, expires_at, n FROM tokens WHERE hash = $1', [hash]);
    const row = r.rows[0];
    const old = this.tokenRows.get(hash);
    if (row) this.tokenRows.set(hash, row);
    else this.tokenRows.delete(hash);
    if (row) this.emitToken(row, false);
    else if (old) this.emitToken(old, true);
  }

  private async reloadGroup(id: string): Promise<void> {
    const g = await this.q<GroupRow>('SELECT id, side_a, side_b, bus_map, created_at, updated_at, dropped, relayed_total FROM groups WHERE id = $1', [id]);
    const row = g.rows[0];
    if (row) this.groupRows.set(id, row);
    else this.groupRows.delete(id);
    this.emit({ kind: 'group', id, remote: this.remoteStep });
  }

  private async reloadCommands(ids: string[]): Promise<void> {
    const [c, h] = await Promise.all([
      this.q<CommandFull>('SELECT id, dongle, type, body, status, created_at, expires_at, n FROM commands WHERE id = ANY($1)', [ids]),
      this.q<HistoryRow & { command_id: string }>('SELECT command_id, status, ts, error FROM command_history WHERE command_id = ANY($1) ORDER BY n', [ids]),
    ]);
    // Rows still there are updated in place (kept in their dongle's order), the others dropped.
    const found = new Set(c.rows.map((r) => r.id));
    for (const id of ids) {
      if (found.has(id)) this.histories.delete(id);
      else this.dropCommandRow(id);
    }
    for (const r of c.rows) this.putCommandRow(r);
    for (const r of h.rows) {
      const list = this.histories.get(r.command_id) ?? [];
      list.push({ status: r.status, ts: r.ts, error: r.error });
      this.histories.set(r.command_id, list);
    }
    for (const id of ids) this.emit({ kind: 'command', id, remote: this.remoteStep });
  }

  private async reloadPositions(ids: string[]): Promise<void> {
    const r = await this.q<DongleRow>('SELECT id, created_at, last_seen, event_seq, outbox_id, up_run, up_batch FROM dongles WHERE id = ANY($1)', [ids]);
    for (const row of r.rows) if (this.dongleRows.has(row.id)) this.dongleRows.set(row.id, row);
  }

  private async reloadCounters(ids: string[]): Promise<void> {
    const r = await this.q<GroupRow>('SELECT id, side_a, side_b, bus_map, created_at, updated_at, dropped, relayed_total FROM groups WHERE id = ANY($1)', [ids]);
    for (const row of r.rows) if (this.groupRows.has(row.id)) this.groupRows.set(row.id, row);
  }

  private putCommandRow(r: CommandFull): void {
    const old = this.commandRows.get(r.id);
    // Never seen (dongle, created_at and n do not change), but an index must not keep a stale place.
    if (old && (old.dongle !== r.dongle || old.created_at !== r.created_at || old.n !== r.n)) this.unindexCommand(old);
    this.commandRows.set(r.id, r);
    listOf(this.commandsOf, r.dongle).add(r.id, r.created_at, r.n);
    this.indexCommand(r.id);
  }

  private dropCommandRow(id: string): void {
    const r = this.commandRows.get(id);
    if (r) {
      this.commandRows.delete(id);
      this.unindexCommand(r);
    }
    this.histories.delete(id);
  }

  private unindexCommand(r: CommandFull): void {
    for (const m of [this.commandsOf, this.unfinishedOf, this.queuedOf]) dropFrom(m, r.dongle, r.id);
  }

  /** Puts the command in (or out of) its dongle's unfinished and queued lists by its status as read now. */
  private indexCommand(id: string): void {
    const r = this.commandRows.get(id);
    if (!r) return;
    const status = this.statusOf(r);
    if (isTerminal(status)) dropFrom(this.unfinishedOf, r.dongle, id);
    else listOf(this.unfinishedOf, r.dongle).add(id, r.created_at, r.n);
    if (status === 'queued') listOf(this.queuedOf, r.dongle).add(id, r.created_at, r.n);
    else dropFrom(this.queuedOf, r.dongle, id);
  }

  private emitToken(t: TokenFull, removed: boolean): void {
    this.emit({ kind: 'token', hash: t.hash, tokenKind: t.kind, dongle: t.dongle, removed, remote: this.remoteStep });
  }

  private emit(c: StateChange): void {
    for (const fn of this.listeners) {
      try {
        fn(c);
      } catch (err) {
        this.log.error({ err: (err as Error).message, change: c }, 'a state change handler failed');
      }
    }
  }

  // ---- written behind: positions, counters, command statuses ----

  private scheduleFlush(ms: number): void {
    if (this.flushTimer !== undefined || this.closed) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      void this.flush();
    }, ms);
    this.flushTimer.unref();
  }

  /** One transaction for everything pending; on failure it stays pending (merged) and is retried. */
  private async flush(): Promise<boolean> {
    if (this.flushing) return false;
    const p = this.pending;
    if (p.positions.size + p.counters.size + p.statuses.length === 0) return true;
    if (this.unreachable !== undefined) return false; // reconnect() flushes once it is back
    this.flushing = true;
    this.inflight = p;
    this.pending = emptyPending();
    try {
      const kept = await this.tx((c) => this.writeBatch(c, p));
      await this.enqueue(async () => {
        this.applyBatch(p, kept);
        // Their rows hold a later status another node wrote: re-read, so this view shows it too.
        if (kept.size > 0) await this.reloadCommands([...kept]);
      });
      this.inflight = emptyPending();
      // Their statuses now read from the rows (applyBatch) — or, for a row a re-read changed meanwhile, from it.
      for (const id of p.statuses.ids()) this.indexCommand(id);
      return true;
    } catch (err) {
      this.failed(err);
      // Back in front of what came meanwhile (newer values win).
      const later = this.pending;
      this.pending = p;
      this.inflight = emptyPending();
      for (const [id, pos] of later.positions) this.pending.positions.set(id, { ...this.pending.positions.get(id), ...pos });
      for (const [id, c] of later.counters) this.pending.counters.set(id, c);
      for (const st of later.statuses.entries()) this.pending.statuses.push(st);
      this.trimStatuses();
      if (this.unreachable === undefined) this.scheduleFlush(RECONNECT_MS);
      return false;
    } finally {
      this.flushing = false;
      if (this.pendingWrites > 0 && this.unreachable === undefined) this.scheduleFlush(0);
    }
  }

  /** Writes a batch; returns the commands whose stored status was kept (it was later than the one written). */
  private async writeBatch(c: pg.PoolClient, p: Pending): Promise<Set<string>> {
    const kept = new Set<string>();
    if (p.positions.size > 0) {
      const ids = [...p.positions.keys()];
      const v = [...p.positions.values()];
      // A new outbox resets event_seq to 0 (setMirrorOrigin puts both in the position).
      await c.query(
        `UPDATE dongles d SET
           last_seen = COALESCE(v.last_seen, d.last_seen),
           outbox_id = COALESCE(v.outbox_id, d.outbox_id),
           event_seq = COALESCE(v.event_seq, d.event_seq),
           up_run = COALESCE(v.up_run, d.up_run),
           up_batch = CASE WHEN v.up_run IS NULL THEN d.up_batch ELSE v.up_batch END
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[]) AS v(id, last_seen, outbox_id, event_seq, up_run, up_batch)
         WHERE d.id = v.id`,
        [
          ids,
          v.map((x) => x.last_seen ?? null),
          v.map((x) => x.outbox_id ?? null),
          v.map((x) => x.event_seq ?? null),
          v.map((x) => x.up_run ?? null),
          v.map((x) => x.up_batch ?? null),
        ],
      );
      for (const chunk of chunks(ids)) await this.notify(c, 'pos', chunk);
    }
    if (p.counters.size > 0) {
      const ids = [...p.counters.keys()];
      const v = [...p.counters.values()];
      await c.query(
        'UPDATE groups g SET dropped = v.dropped, relayed_total = v.relayed_total FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS v(id, dropped, relayed_total) WHERE g.id = v.id',
        [ids, v.map((x) => x.dropped), v.map((x) => x.relayed_total)],
      );
      for (const chunk of chunks(ids)) await this.notify(c, 'counters', chunk);
    }
    if (p.statuses.length > 0) {
      const last = new Map<string, CommandState>();
      const list = p.statuses.entries();
      for (const st of list) last.set(st.id, st.status);
      // Never backwards: each node writes its statuses behind, so one node's `sent` can arrive after another
      // node's `timed_out`; the status moves only as the bridge itself would move it (replacesStatus). Its
      // history row is still added below: it happened, and the history keeps the order it was written in.
      const applied = await c.query<{ id: string }>(
        `UPDATE commands c SET status = v.status FROM unnest($1::text[], $2::text[]) AS v(id, status)
         WHERE c.id = v.id AND (c.status, v.status) IN (SELECT * FROM unnest($3::text[], $4::text[]))
         RETURNING c.id`,
        [[...last.keys()], [...last.values()], STATUS_MOVES.map((m) => m[0]), STATUS_MOVES.map((m) => m[1])],
      );
      const moved = new Set(applied.rows.map((r) => r.id));
      for (const id of last.keys()) if (!moved.has(id)) kept.add(id);
      // Only for commands still there (a prune may have removed one meanwhile); in the order they happened.
      await c.query(
        `INSERT INTO command_history (command_id, status, ts, error)
         SELECT v.id, v.status, v.ts, v.error FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS v(id, status, ts, error, i)
         WHERE EXISTS (SELECT 1 FROM commands c WHERE c.id = v.id) ORDER BY v.i`,
        [list.map((s) => s.id), list.map((s) => s.status), list.map((s) => s.ts), list.map((s) => s.error)],
      );
      for (const chunk of chunks([...last.keys()])) await this.notify(c, 'command', chunk);
    }
    return kept;
  }

  /** What a batch wrote, into the view (in the queue, so a re-read from before it cannot undo it). */
  private applyBatch(p: Pending, kept: ReadonlySet<string>): void {
    for (const [id, pos] of p.positions) {
      const row = this.dongleRows.get(id);
      if (row) this.dongleRows.set(id, { ...row, ...pos });
    }
    for (const [id, c] of p.counters) {
      const row = this.groupRows.get(id);
      if (row) this.groupRows.set(id, { ...row, ...c });
    }
    for (const st of p.statuses.entries()) {
      const row = this.commandRows.get(st.id);
      if (!row || kept.has(st.id)) continue; // re-read instead (flush)
      this.commandRows.set(st.id, { ...row, status: st.status });
      const list = this.histories.get(st.id) ?? [];
      list.push({ status: st.status, ts: st.ts, error: st.error });
      this.histories.set(st.id, list);
    }
  }

  private trimStatuses(): void {
    const dropped = this.pending.statuses.trim();
    this.statusesDropped += dropped.length;
    // A dropped status may have been a command's newest: it reads as its previous status again.
    for (const id of new Set(dropped)) this.indexCommand(id);
  }

  private position(id: string): Position | undefined {
    const a = this.inflight.positions.get(id);
    const b = this.pending.positions.get(id);
    return a || b ? { ...a, ...b } : undefined;
  }

  private setPosition(id: string, p: Position): void {
    this.pending.positions.set(id, { ...this.pending.positions.get(id), ...p });
    this.scheduleFlush(0);
  }

  private withPending(row: DongleRow | undefined): DongleRow | undefined {
    const p = row && this.position(row.id);
    return p ? { ...row, ...p } : row;
  }

  private withCounters(row: GroupRow | undefined): GroupRow | undefined {
    if (!row) return row;
    const c = this.pending.counters.get(row.id) ?? this.inflight.counters.get(row.id);
    return c ? { ...row, ...c } : row;
  }

  private statusesOf(id: string): PendingStatus[] {
    return [...this.inflight.statuses.of(id), ...this.pending.statuses.of(id)];
  }

  /** The command's status as read: the newest waiting to be written, else the row's. */
  private statusOf(row: CommandFull): CommandState {
    return (this.pending.statuses.latest(row.id) ?? this.inflight.statuses.latest(row.id))?.status ?? row.status;
  }

  private withStatus(row: CommandFull | undefined): CommandRow | undefined {
    if (!row) return undefined;
    const { n: _n, ...c } = row;
    const status = this.statusOf(row);
    return status === c.status ? c : { ...c, status };
  }

  /** Before the stop: one last try for what waits in memory (said loudly if lost). */
  async flushBeforeClose(): Promise<void> {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    for (let i = 0; i < 3 && this.pendingWrites > 0 && this.unreachable === undefined; i++) {
      while (this.flushing) await new Promise((r) => setTimeout(r, 10));
      await this.flush();
    }
    if (this.pendingWrites > 0)
      this.log.error(
        { db: this.where, lost: this.pendingWrites, cause: this.unreachable },
        `${this.pendingWrites} positions, counters or command statuses could not be written to PostgreSQL before the stop and are lost`,
      );
  }

  /** Closes the connections (after flushBeforeClose). */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.flushTimer);
    clearInterval(this.probeTimer);
    const l = this.listener;
    this.listener = undefined;
    await l?.end().catch(() => undefined);
    await this.pool.end().catch(() => undefined);
  }

  get pendingWrites(): number {
    const n = (p: Pending): number => p.positions.size + p.counters.size + p.statuses.length;
    return n(this.pending) + n(this.inflight);
  }

  // ---- dongles ----

  dongle(id: string): DongleRow | undefined {
    return this.withPending(this.dongleRows.get(id));
  }

  dongles(): DongleRow[] {
    return [...this.dongleRows.keys()].sort().map((id) => this.dongle(id)!);
  }

  createDongle(id: string, tokenHash: string, now: string): Promise<boolean> {
    return this.must(
      `register dongle ${id}`,
      async (c) => {
        if ((await c.query('INSERT INTO dongles (id, created_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING', [id, now])).rowCount === 0) return false;
        await c.query("INSERT INTO tokens (hash, kind, dongle, created_at) VALUES ($1, 'agent', $2, $3)", [tokenHash, id, now]);
        await this.notify(c, 'dongle', id);
        return true;
      },
      () => this.reloadDongle(id),
    );
  }

  async rotateAgentToken(id: string, tokenHash: string, now: string): Promise<void> {
    await this.must(
      `rotate the token of dongle ${id}`,
      async (c) => {
        await c.query("DELETE FROM tokens WHERE kind = 'agent' AND dongle = $1", [id]);
        await c.query("INSERT INTO tokens (hash, kind, dongle, created_at) VALUES ($1, 'agent', $2, $3)", [tokenHash, id, now]);
        await this.notify(c, 'dongle', id);
      },
      () => this.reloadDongle(id),
      (k) => (k.reason === 'missing' ? notRegistered(id) : undefined),
    );
  }

  async deleteDongle(id: string): Promise<{ deleted: boolean; group: string | undefined }> {
    const r = await this.must(
      `delete dongle ${id}`,
      async (c) => {
        const group = (await c.query<{ group_id: string }>('SELECT group_id FROM group_members WHERE dongle = $1 FOR UPDATE', [id])).rows[0]?.group_id;
        if (group !== undefined) {
          await c.query('DELETE FROM group_members WHERE group_id = $1', [group]);
          await c.query('DELETE FROM groups WHERE id = $1', [group]);
          await this.notify(c, 'group', group);
        }
        const deleted = ((await c.query('DELETE FROM dongles WHERE id = $1', [id])).rowCount ?? 0) > 0;
        await this.notify(c, 'dongle', id);
        return { deleted, group };
      },
      async (x) => {
        if (x.group !== undefined) await this.reloadGroup(x.group);
        await this.reloadDongle(id);
      },
    );
    this.pending.positions.delete(id);
    if (r.group !== undefined) this.pending.counters.delete(r.group);
    return r;
  }

  setLastSeen(id: string, ts: string): void {
    this.setPosition(id, { last_seen: ts });
  }

  setEventSeq(id: string, seq: number): void {
    this.setPosition(id, { event_seq: seq });
  }

  setMirrorOrigin(id: string, outboxId: string): void {
    this.setPosition(id, { outbox_id: outboxId, event_seq: 0 });
  }

  setUpPositions(rows: readonly { dongle: string; stream: string; batch: number }[]): void {
    for (const r of rows) this.pending.positions.set(r.dongle, { ...this.pending.positions.get(r.dongle), up_run: r.stream, up_batch: r.batch });
    this.scheduleFlush(0);
  }

  // ---- tokens ----

  async addViewerToken(tokenHash: string, now: string, expiresAt: string | null = null): Promise<void> {
    await this.must(
      'add a viewer token',
      async (c) => {
        await c.query("INSERT INTO tokens (hash, kind, dongle, created_at, expires_at) VALUES ($1, 'viewer', NULL, $2, $3)", [tokenHash, now, expiresAt]);
        await this.notify(c, 'token', tokenHash);
      },
      () => this.reloadToken(tokenHash),
    );
  }

  viewerTokens(): ViewerTokenRow[] {
    return [...this.tokenRows.values()]
      .filter((t) => t.kind === 'viewer')
      .sort((a, b) => (a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : a.n - b.n))
      .map((t) => ({ hash: t.hash, created_at: t.created_at, expires_at: t.expires_at }));
  }

  async deleteViewerToken(idPrefix: string): Promise<boolean> {
    const hashes = await this.must(
      'revoke a viewer token',
      async (c) => {
        const r = await c.query<{ hash: string }>("DELETE FROM tokens WHERE kind = 'viewer' AND substr(hash, 1, $1) = $2 RETURNING hash", [idPrefix.length, idPrefix]);
        for (const row of r.rows) await this.notify(c, 'token', row.hash);
        return r.rows.map((row) => row.hash);
      },
      async (hs) => {
        for (const h of hs) await this.reloadToken(h);
      },
    );
    return hashes.length > 0;
  }

  /**
   * Drops up to `limit` viewer tokens that expired before `before` from the view and deletes every such
   * row in PostgreSQL, in the background; returns how many the view dropped. Every node applies the same rule
   * to its own view, so no notice is sent; the rows go with whichever node's sweep comes first (a failed
   * delete is tried again at the next sweep). An expired token is refused anyway (auth.ts), so a re-read
   * that brings one back meanwhile only shows it in the list until the next sweep.
   */
  pruneExpiredViewerTokens(before: string, limit: number): number {
    let n = 0;
    for (const [hash, t] of this.tokenRows) {
      if (n >= limit) break;
      if (t.kind !== 'viewer' || t.expires_at === null || t.expires_at >= before) continue;
      this.tokenRows.delete(hash);
      n++;
    }
    // Also when the view had none: rows whose delete failed before, or that another node's view missed.
    if (this.unreachable === undefined)
      void this.q("DELETE FROM tokens WHERE kind = 'viewer' AND expires_at IS NOT NULL AND expires_at < $1", [before]).catch((err) => this.failed(err));
    return n;
  }

  token(hash: string): TokenRow | undefined {
    const t = this.tokenRows.get(hash);
    return t ? { kind: t.kind as TokenKind, dongle: t.dongle, expires_at: t.expires_at } : undefined;
  }

  // ---- groups ----

  group(id: string): GroupRow | undefined {
    return this.withCounters(this.groupRows.get(id));
  }

  groups(): GroupRow[] {
    return [...this.groupRows.keys()].sort().map((id) => this.group(id)!);
  }

  putGroup(id: string, a: string, b: string, busMap: Record<string, string>, now: string): Promise<{ created: boolean }> {
    return this.must(
      `store group ${id}`,
      async (c) => {
        const exists = (await c.query('SELECT 1 FROM groups WHERE id = $1 FOR UPDATE', [id])).rowCount !== 0;
        const map = JSON.stringify(busMap);
        if (exists) await c.query('UPDATE groups SET side_a = $1, side_b = $2, bus_map = $3, updated_at = $4 WHERE id = $5', [a, b, map, now, id]);
        else await c.query('INSERT INTO groups (id, side_a, side_b, bus_map, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)', [id, a, b, map, now]);
        await c.query('DELETE FROM group_members WHERE group_id = $1', [id]);
        await c.query("INSERT INTO group_members (dongle, group_id, side) VALUES ($1, $3, 'a'), ($2, $3, 'b')", [a, b, id]);
        await this.notify(c, 'group', id);
        return { created: !exists };
      },
      () => this.reloadGroup(id),
      (k) => {
        // Without the key's value (a server wording the detail otherwise) the general message says it.
        if (k.value === undefined) return undefined;
        if (k.reason === 'missing') return notRegistered(k.value);
        if (k.constraint === 'group_members_pkey')
          return new StateRefusedError(
            'conflict',
            `dongle "${k.value}" is already in another group (made or changed meanwhile, possibly through another node); a dongle is in at most one group: GET /api/v1/dongles/${k.value} names it, update or delete that group first`,
          );
        if (k.constraint === 'groups_pkey')
          return new StateRefusedError(
            'conflict',
            `group "${id}" was created meanwhile (possibly through another node); nothing was changed: GET /api/v1/groups/${id}, then PUT again to update it`,
          );
        return undefined;
      },
    );
  }

  async deleteGroup(id: string): Promise<boolean> {
    const deleted = await this.must(
      `delete group ${id}`,
      async (c) => {
        await c.query('DELETE FROM group_members WHERE group_id = $1', [id]);
        const n = (await c.query('DELETE FROM groups WHERE id = $1', [id])).rowCount ?? 0;
        await this.notify(c, 'group', id);
        return n > 0;
      },
      () => this.reloadGroup(id),
    );
    this.pending.counters.delete(id);
    return deleted;
  }

  saveGroupCounters(id: string, dropped: number, relayedTotal: number): void {
    this.saveAllGroupCounters([{ id, dropped, relayedTotal }]);
  }

  saveAllGroupCounters(rows: readonly { id: string; dropped: number; relayedTotal: number }[]): void {
    for (const r of rows) this.pending.counters.set(r.id, { dropped: r.dropped, relayed_total: r.relayedTotal });
    this.scheduleFlush(0);
  }

  // ---- commands ----

  async insertCommand(c: CommandRow): Promise<void> {
    await this.must(
      `queue command ${c.id}`,
      async (cl) => {
        await cl.query('INSERT INTO commands (id, dongle, type, body, status, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)', [
          c.id,
          c.dongle,
          c.type,
          c.body,
          c.status,
          c.created_at,
          c.expires_at,
        ]);
        await cl.query('INSERT INTO command_history (command_id, status, ts, error) VALUES ($1, $2, $3, NULL)', [c.id, c.status, c.created_at]);
        await this.notify(cl, 'command', c.id);
      },
      () => this.reloadCommands([c.id]),
    );
  }

  /**
   * Times out those of the commands still unfinished in PostgreSQL, in one transaction, and resolves with
   * their ids once this view shows them. Committed first, not written behind: every node tracks the
   * deadlines of the queued commands it knows, and the database's row lock decides which node's timeout
   * counts, so a command gets one `timed_out` (one history row, one console event, one count) however many
   * nodes reached its deadline. Rejects (StateWriteError) while PostgreSQL is away: the caller retries.
   */
  async timeOutCommands(rows: readonly CommandTimeout[]): Promise<Set<string>> {
    const ids = rows.map((r) => r.id);
    return this.must(
      `time out ${ids.length} commands`,
      async (cl) => {
        const r = await cl.query<{ id: string }>(
          'UPDATE commands c SET status = $2 FROM unnest($1::text[]) AS v(id) WHERE c.id = v.id AND c.status = ANY($3::text[]) RETURNING c.id',
          [ids, 'timed_out', TIMES_OUT],
        );
        const moved = new Set(r.rows.map((x) => x.id));
        const won = rows.filter((x) => moved.has(x.id));
        await cl.query(
          'INSERT INTO command_history (command_id, status, ts, error) SELECT v.id, $4, v.ts, v.error FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS v(id, ts, error, i) ORDER BY v.i',
          [won.map((x) => x.id), won.map((x) => x.ts), won.map((x) => x.error), 'timed_out'],
        );
        for (const chunk of chunks([...moved])) await this.notify(cl, 'command', chunk);
        return moved;
      },
      // Every one, won or not: the view shows what the database decided.
      () => this.reloadCommands(ids),
    );
  }

  command(id: string): CommandRow | undefined {
    return this.withStatus(this.commandRows.get(id));
  }

  /** Up to `limit` ids of `list`, oldest first (or newest first), without touching the others. */
  private static take(list: OrderedCommands | undefined, limit: number, newestFirst = false): string[] {
    const out: string[] = [];
    if (!list || limit <= 0) return out;
    for (const id of newestFirst ? list.descending() : list.ascending()) {
      out.push(id);
      if (out.length >= limit) break;
    }
    return out;
  }

  recentCommandIds(dongle: string, limit: number): string[] {
    return PgStore.take(this.commandsOf.get(dongle), limit, true);
  }

  commandHistory(id: string): HistoryRow[] {
    const waiting = this.statusesOf(id).map((st) => ({ status: st.status, ts: st.ts, error: st.error }));
    return (this.histories.get(id) ?? []).concat(waiting);
  }

  setCommandStatus(id: string, status: CommandState, ts: string, error?: string): void {
    if (!COMMAND_STATES.includes(status)) throw new Error(`unknown command status ${status}`);
    this.pending.statuses.push({ id, status, ts, error: error ?? null });
    this.trimStatuses();
    this.indexCommand(id);
    this.scheduleFlush(0);
  }

  queuedCommands(dongle: string, limit: number): CommandRow[] {
    return PgStore.take(this.queuedOf.get(dongle), limit).map((id) => this.command(id)!);
  }

  unfinishedCount(dongle: string): number {
    return this.unfinishedOf.get(dongle)?.size ?? 0;
  }

  /**
   * Deletes finished commands past `before` in PostgreSQL, in the background, and drops them from this
   * node's view (returns how many). Every node applies the same rule to its own view: the node whose DELETE takes the rows
   * sends no notice, so the other nodes' views kept them until a full re-read (growing with time).
   */
  pruneFinishedCommands(before: string, limit: number): number {
    if (this.unreachable !== undefined || this.pendingWrites > 0) return 0;
    let n = 0;
    for (const c of [...this.commandRows.values()]) {
      if (n >= limit) break;
      if (c.expires_at < before && isTerminal(this.withStatus(c)!.status)) {
        this.dropCommandRow(c.id);
        n++;
      }
    }
    void this.q<{ id: string }>(
      "DELETE FROM commands WHERE id IN (SELECT id FROM commands WHERE expires_at < $1 AND status IN ('succeeded', 'failed', 'timed_out') LIMIT $2) RETURNING id",
      [before, limit],
    )
      .then((r) =>
        this.enqueue(async () => {
          for (const row of r.rows) this.dropCommandRow(row.id);
        }),
      )
      .catch((err) => this.failed(err));
    return n;
  }

  unfinishedCommands(dongle?: string): CommandRow[] {
    if (dongle !== undefined) return PgStore.take(this.unfinishedOf.get(dongle), Number.POSITIVE_INFINITY).map((id) => this.command(id)!);
    // Every dongle's (at start): merged in the same order, from the unfinished ones only.
    const rows: CommandFull[] = [];
    for (const list of this.unfinishedOf.values()) for (const id of list.ascending()) rows.push(this.commandRows.get(id)!);
    return rows.sort(byCreation).map((c) => this.withStatus(c)!);
  }
}

/** A statement refused by a key: 23505 (unique) or 23503 (foreign key), with the key's value. */
interface KeyRefusal {
  reason: 'conflict' | 'missing';
  constraint: string;
  detail: string;
  /** The refused key's value, from the detail (`Key (dongle)=(gw-1) already exists.`). */
  value: string | undefined;
}

function keyRefusal(err: unknown): KeyRefusal | undefined {
  const e = err as { code?: unknown; constraint?: unknown; detail?: unknown };
  if (e.code !== '23505' && e.code !== '23503') return undefined;
  const detail = typeof e.detail === 'string' ? e.detail : '';
  return {
    reason: e.code === '23505' ? 'conflict' : 'missing',
    constraint: typeof e.constraint === 'string' ? e.constraint : '',
    detail,
    value: /^Key \([^)]*\)=\((.*)\) (?:already exists|is not present)/.exec(detail)?.[1],
  };
}

/** What the admin API says of an unknown dongle (admin-api.ts mustDongle), for one deleted meanwhile. */
const notRegistered = (id: string): StateRefusedError =>
  new StateRefusedError('missing', `dongle "${id}" is not registered (deleted meanwhile, possibly through another node); register it with PUT /api/v1/dongles/${id}`);

function splitPayload(p: string): [string | undefined, string | undefined, string | undefined] {
  const a = p.indexOf('|');
  const b = p.indexOf('|', a + 1);
  if (a < 0 || b < 0) return [undefined, undefined, undefined];
  return [p.slice(0, a), p.slice(a + 1, b), p.slice(b + 1)];
}

/** Ids joined by commas, in pieces that fit a NOTIFY payload. */
function chunks(ids: string[]): string[] {
  const out: string[] = [];
  let cur = '';
  for (const id of ids) {
    if (cur.length + id.length + 1 > NOTIFY_CHUNK && cur !== '') {
      out.push(cur);
      cur = '';
    }
    cur = cur === '' ? id : `${cur},${id}`;
  }
  if (cur !== '') out.push(cur);
  return out;
}

/** The dongle's list in `m`, made when missing. */
function listOf(m: Map<string, OrderedCommands>, dongle: string): OrderedCommands {
  let l = m.get(dongle);
  if (!l) m.set(dongle, (l = new OrderedCommands()));
  return l;
}

/** Removes `id` from the dongle's list in `m`; an emptied list goes (dongles come and go). */
function dropFrom(m: Map<string, OrderedCommands>, dongle: string, id: string): void {
  const l = m.get(dongle);
  if (l?.delete(id) && l.size === 0) m.delete(dongle);
}
