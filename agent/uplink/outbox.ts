/**
 * Console events waiting for the bridge (presence, log, bus_state, command_status), in SQLite so that a
 * link drop or an agent restart loses none. Each row's id is the event's mirror sequence number; the bridge
 * acknowledges by sequence and deduplicates redeliveries, so every event arrives exactly once.
 * Bounded: past `maxRows` the oldest rows are pruned, counted and logged (a gateway offline for days must
 * not fill its disk) — but never a `command_status`: it is the only record of what a command did on the
 * bus, and the bridge would otherwise time out a command that was carried out. Every other event
 * (presence, log, bus_state) goes first; command statuses alone may exceed the bound (they are few: the
 * bridge keeps a small window of commands in flight).
 * The outbox has an identity, random and stored with it: seqs count within one identity. The agent sends
 * it in `hello`; when the state is lost the new outbox starts at seq 1 under a new identity and the
 * bridge numbers this dongle's events afresh instead of taking them for redeliveries.
 * A disk that cannot be written (full, I/O error, read-only) must not lose accepted events silently nor
 * stop anything: such events wait in a bounded memory buffer, keep their place in the numbering, go to
 * the bridge from there, and are written to SQLite as soon as a write works again; past the buffer's
 * bound the oldest events other than command_status are dropped and counted (`outbox_dropped_unwritable`);
 * health: core/state/state-health.ts. A table that stays unreadable is given up for the run (`pending`).
 * Numbers so handed out are known only to the bridge once
 * acknowledged: the next run's first welcome renumbers above them (`welcome`).
 */
import { randomUUID } from 'node:crypto';
import type Database from 'better-sqlite3';
import type { ConsoleEvent } from '../../core/console/events.js';
import type { MirroredEventType } from '../../core/console/normalize.js';
import { readVia, writeVia, type StoreWrites } from '../../core/state/state-health.js';

/** Events held in memory while the outbox cannot be written. */
const MAX_MEMORY_EVENTS = 10_000;

/** The highest stored number a welcome may name (see welcome). */
const MAX_STORED = 2 ** 50;

/**
 * A table that failed every read for this long (and at least UNREADABLE_GIVE_UP_READS times) is given up
 * for the run (`pending`): a dying card's hiccup passes in seconds; a damaged page does not, and waiting
 * on it held every later event — command statuses too — until a restart.
 */
const UNREADABLE_GIVE_UP_MS = 60_000;
const UNREADABLE_GIVE_UP_READS = 3;

export interface OutboxEntry {
  seq: number;
  event: MirroredEventType;
  data: Record<string, unknown>;
}

export class Outbox {
  private readonly insert: Database.Statement<[number, string, string]>;
  private readonly after: Database.Statement<[number, number], { seq: number; event: string; data: string }>;
  private readonly ackStmt: Database.Statement<[number]>;
  private readonly countStmt: Database.Statement<[], { n: number }>;
  private readonly pruneStmt: Database.Statement<[number], { seq: number; event: string }>;
  private rows: number;
  /** The last seq handed out (in SQLite or in memory). */
  private lastSeq: number;
  /** Accepted events not yet written to SQLite, in seq order. */
  private memory: OutboxEntry[] = [];
  private readonly flush: (entries: OutboxEntry[]) => void;
  pruned = 0;
  /** Events dropped from the memory buffer while the outbox could not be written. */
  droppedUnwritable = 0;
  /** Events in a table given up as unreadable (`pending`): an upper bound, some may have reached the bridge before. */
  droppedUnreadable = 0;
  /** The table failed every read since this time (`now`), this many times; undefined after a read that worked. */
  private unreadableSince: number | undefined;
  private failedReads = 0;
  /** Set when the table was given up: events stay in memory for the rest of the run, as for an unwritable disk. */
  private abandoned = false;
  /** Pruned rows by event type. */
  readonly prunedByType = new Map<string, number>();
  /**
   * Events up to this seq were written to a link that was lost before their ack: the bridge may have
   * them. Such an event pruned meanwhile is counted only once the next welcome says the bridge does not
   * (`settle`), so `pruned` is what the bridge really never got. Bounded by the events in flight.
   */
  private unsureUpTo = 0;
  private unsurePruned: { seq: number; event: string }[] = [];
  readonly identity: string;
  /** The last seq when the outbox was opened: seqs above it are this run's. */
  private readonly openedAt: number;
  private welcomed = false;
  private readonly renumberRows: (from: number, shift: number) => void;
  /** Events renumbered at a welcome because the bridge had their numbers from the previous run (`welcome`). */
  renumbered = 0;

  constructor(
    db: Database.Database,
    private readonly maxRows: number,
    /** Told what was pruned (rate-limit it: a long outage prunes on every append). */
    private readonly onPrune: (byType: Record<string, number>, overBound: number) => void = () => {},
    /** Where a failed write is counted and reported; without it a failure throws. */
    private readonly writes?: StoreWrites,
    /** The monotonic clock (ms) that times an unreadable table; a test's own. */
    private readonly now: () => number = () => performance.now(),
  ) {
    db.exec(`CREATE TABLE IF NOT EXISTS outbox (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      event TEXT NOT NULL,
      data TEXT NOT NULL
    )`);
    this.insert = db.prepare('INSERT INTO outbox (seq, event, data) VALUES (?, ?, ?)');
    this.after = db.prepare('SELECT seq, event, data FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?');
    this.ackStmt = db.prepare('DELETE FROM outbox WHERE seq <= ?');
    this.countStmt = db.prepare('SELECT count(*) AS n FROM outbox');
    this.pruneStmt = db.prepare("DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE event <> 'command_status' ORDER BY seq LIMIT ?) RETURNING seq, event");
    this.rows = this.countStmt.get()!.n;
    // AUTOINCREMENT's high-water mark: above every seq ever used, also after all rows were acknowledged.
    this.lastSeq = db.prepare<[], { seq: number }>("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").get()?.seq ?? 0;
    this.flush = db.transaction((entries: OutboxEntry[]) => {
      for (const e of entries) this.insert.run(e.seq, e.event, JSON.stringify(e.data));
    });
    db.exec('CREATE TABLE IF NOT EXISTS outbox_identity (one INTEGER PRIMARY KEY CHECK (one = 1), id TEXT NOT NULL)');
    db.prepare('INSERT INTO outbox_identity (one, id) VALUES (1, ?) ON CONFLICT(one) DO NOTHING').run(randomUUID());
    this.identity = db.prepare<[], { id: string }>('SELECT id FROM outbox_identity WHERE one = 1').get()!.id;
    this.openedAt = this.lastSeq;
    const negate = db.prepare<[number, number]>('UPDATE outbox SET seq = -(seq + ?) WHERE seq > ?');
    const restore = db.prepare('UPDATE outbox SET seq = -seq WHERE seq < 0');
    const highWater = db.prepare<[number]>("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'outbox'");
    // Through negative numbers: a primary key moved up in place would collide with the rows above it.
    this.renumberRows = db.transaction((from: number, shift: number) => {
      negate.run(shift, from);
      restore.run();
      highWater.run(this.lastSeq + shift);
    });
  }

  /**
   * The first welcome of the run: the bridge has stored every event up to `stored`. Numbers above the
   * ones this outbox knew when it was opened cannot be this run's: the previous run handed them out and
   * never wrote them (held in memory while the disk refused writes, or a WAL tail lost with the power),
   * and the bridge got them. This run's events so numbered would be taken for those and dropped as
   * redeliveries, silently: they are numbered again above `stored` first. Then, as at every welcome,
   * what the bridge has is acknowledged.
   */
  welcome(stored: number): string | undefined {
    // An honest bridge has at most what was numbered: by this run (above lastSeq: never), or by the
    // previous one before the first welcome — any number, but far below 2^50 (a run numbering a million
    // events a second for 35 years). Past that, numbers stop being exact (2^53 + 1 === 2^53) and every
    // later event would collide with one renumbered: refused, the link ended, nothing changed.
    if (stored > MAX_STORED || (this.welcomed && stored > this.lastSeq)) return `the bridge says it stored event ${stored}; this agent numbered up to ${this.lastSeq}`;
    if (!this.welcomed && stored > this.openedAt) {
      const shift = stored - this.openedAt;
      const from = this.openedAt;
      const inRows = this.rows;
      // A disk that refuses even this (its failure is logged): rows numbered up to `stored` are lost, counted.
      if (!this.write(() => this.renumberRows(from, shift)) && inRows > 0)
        this.droppedUnwritable += this.read(() => this.after.all(from, Number.MAX_SAFE_INTEGER), []).filter((r) => r.seq <= stored).length;
      for (const e of this.memory) if (e.seq > from) e.seq += shift;
      this.renumbered += this.lastSeq - from;
      this.lastSeq += shift;
    }
    this.welcomed = true;
    this.ack(stored);
    this.settle(stored);
    return undefined;
  }

  /** Events waiting for the bridge (in SQLite and in memory). */
  get size(): number {
    return this.rows + this.memory.length;
  }

  /** Events held in memory because the outbox could not be written. */
  get inMemory(): number {
    return this.memory.length;
  }

  append(ev: ConsoleEvent & { type: MirroredEventType }): number {
    const entry: OutboxEntry = { seq: ++this.lastSeq, event: ev.type, data: JSON.parse(JSON.stringify(ev.data)) as Record<string, unknown> };
    // Order is kept: while older events wait in memory, the new one joins them and all go down together.
    this.memory.push(entry);
    this.persistMemory();
    while (this.memory.length > MAX_MEMORY_EVENTS) {
      // As in pruning: every other event goes first, command statuses are kept if anything can be.
      const i = this.memory.findIndex((e) => e.event !== 'command_status');
      this.memory.splice(Math.max(i, 0), 1);
      this.droppedUnwritable++;
    }
    return entry.seq;
  }

  /** Writes what waits in memory, if the disk lets it; then trims the table to its bound. */
  private persistMemory(): void {
    if (this.abandoned) return;
    const batch = this.memory;
    if (!this.write(() => this.flush(batch))) return;
    this.memory = [];
    this.rows += batch.length;
    if (this.rows > this.maxRows) this.write(() => this.prune());
  }

  /**
   * A read of the table, `fallback` when the disk fails it (SQLITE_IOERR_READ, a corrupt page on a dying
   * SD card): counted and reported like a failed write. Unguarded, the throw escaped the console's publish
   * (a presence timer) and ended the agent.
   */
  private read<T>(fn: () => T, fallback: T): T {
    return readVia(this.writes, fn, fallback);
  }

  private write(fn: () => void): boolean {
    return writeVia(this.writes, fn);
  }

  private prune(): void {
    const gone = this.pruneStmt.all(this.rows - this.maxRows);
    this.rows -= gone.length;
    const byType = this.count(gone.filter((g) => g.seq > this.unsureUpTo));
    for (const g of gone) if (g.seq <= this.unsureUpTo) this.unsurePruned.push(g);
    this.onPrune(byType, this.rows - this.maxRows);
  }

  private count(gone: { event: string }[]): Record<string, number> {
    const byType: Record<string, number> = {};
    for (const g of gone) {
      byType[g.event] = (byType[g.event] ?? 0) + 1;
      this.prunedByType.set(g.event, (this.prunedByType.get(g.event) ?? 0) + 1);
    }
    this.pruned += gone.length;
    return byType;
  }

  /** The link was lost with events up to `sentUpTo` written to it and not acknowledged. */
  linkLost(sentUpTo: number): void {
    this.unsureUpTo = Math.max(this.unsureUpTo, sentUpTo);
  }

  /** A welcome: the bridge has every event up to `stored`. Events pruned since the link was lost and not among them count as pruned now. */
  settle(stored: number): void {
    this.count(this.unsurePruned.filter((g) => g.seq > stored));
    this.unsurePruned = [];
    this.unsureUpTo = 0;
  }

  /** Before the database closes: one last try for what waits in memory; what still cannot be written is reported lost. */
  close(): void {
    if (this.memory.length > 0) this.persistMemory();
    this.writes?.lostAtClose(this.memory.length, 'mirrored console events');
  }

  /**
   * Entries after `seq`, oldest first. None when the table cannot be read: the memory's entries come after
   * the stored ones, and sending them first would number the bridge's copy past events it never got. The
   * next event, ack, heartbeat or reconnect asks again. A table that failed every read for a minute is
   * given up for the run (`abandon`): what it holds is lost either way (unreadable now, moved aside by the
   * next start if still so), and later events — command statuses among them — go on from memory.
   */
  pending(seq: number, limit = 500): OutboxEntry[] {
    const rows = this.abandoned ? [] : this.read(() => this.after.all(seq, limit), undefined);
    if (rows === undefined) {
      const now = this.now();
      this.unreadableSince ??= now;
      this.failedReads++;
      if (this.failedReads < UNREADABLE_GIVE_UP_READS || now - this.unreadableSince < UNREADABLE_GIVE_UP_MS) return [];
      this.abandon(now - this.unreadableSince);
      return this.memory.filter((e) => e.seq > seq).slice(0, limit);
    }
    this.unreadableSince = undefined;
    this.failedReads = 0;
    const stored = rows.map((r) => ({
      seq: r.seq,
      event: r.event as MirroredEventType,
      data: JSON.parse(r.data) as Record<string, unknown>,
    }));
    if (stored.length >= limit || this.memory.length === 0) return stored;
    // Memory holds only seqs above every stored row.
    return stored.concat(this.memory.filter((e) => e.seq > seq).slice(0, limit - stored.length));
  }

  private abandon(failingMs: number): void {
    this.abandoned = true;
    this.droppedUnreadable += this.rows;
    this.writes?.givenUp(
      `the outbox table cannot be read (every read failed for ${Math.round(failingMs / 1000)} s): up to ${this.rows} mirrored events stored in it are lost; ` +
        `later events go to the bridge from memory (at most ${MAX_MEMORY_EVENTS}) until the agent restarts — check the disk, then restart the agent (a state file still unreadable is moved aside at the start)`,
      { lost_events: this.rows },
    );
    this.rows = 0;
  }

  /** The bridge has stored everything up to `seq`. */
  ack(seq: number): void {
    if (this.memory.length > 0 && this.memory[0]!.seq <= seq) this.memory = this.memory.filter((e) => e.seq > seq);
    if (this.abandoned) return;
    // A failed delete leaves rows that the bridge skips as redeliveries after a restart.
    this.write(() => {
      const removed = this.ackStmt.run(seq).changes;
      this.rows = Math.max(0, this.rows - removed);
    });
  }
}
