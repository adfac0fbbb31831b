/**
 * Event ids are never reused, also across restarts and lost state, without a disk write per event.
 *
 * The rule (docs/reliability.md, "Event ids"):
 * 1. Blocks: a stream reserves ids in blocks; the block's ceiling is persisted before an id of it is
 *    used, and a restarted stream starts above the last persisted ceiling (+2: the id just below a run's
 *    first is never used, so a resume from an earlier run is always recognised).
 * 2. Clock floor: a run never starts below `idFloor(now)` = 100 × the Unix time in ms. A state file lost,
 *    moved aside or unwritable cannot cause reuse, on the one assumption that the wall clock at a start
 *    is not behind (last id used before) / 100 ms — it holds unless the clock is set back (e.g. a gateway
 *    without a real-time clock starting before NTP) or a stream averaged over 100,000 events/s (the
 *    console samples can_frame to --console-max-rate).
 * 3. Unpersisted ids: while a block cannot be persisted (disk full, …), ids are issued only below
 *    `idFloor(now) - 1`, which any later run starts above; past that the event is not published (counted)
 *    until the clock catches up or a write works again.
 * Ids stay below 10^15 (15 digits, exact in JavaScript and accepted as Last-Event-ID) until the year 2286.
 */
import type Database from 'better-sqlite3';
import type { StoreWrites } from '../state/state-health.js';
import { commitUnsynced } from '../state/unsynced-commit.js';

/** Ids per millisecond of wall clock by which the floor rises (100,000/s). */
export const IDS_PER_MS = 100;
/** Ids are reserved this many at a time: one small SQLite write per block, not per event. */
export const ID_BLOCK = 10_000;
/** While a block cannot be persisted, a new attempt at most this often. */
const RETRY_MS = 1000;

/** 2025-01-01: a wall clock before this has not been set (no RTC, no NTP yet), and the floor cannot be trusted. */
const CLOCK_PLAUSIBLE_FROM_MS = Date.UTC(2025, 0, 1);

/** True when the wall clock reads a time before this software existed: rule 2's assumption is at risk. */
export function clockLooksUnset(nowMs: number): boolean {
  return nowMs < CLOCK_PLAUSIBLE_FROM_MS;
}

/**
 * Ids are at most 15 digits (what a resume accepts as a Last-Event-ID, and exact in a double): a clock
 * read past 2250 (a broken RTC) counts as 2250. Unclamped, one such reading gave every id of that run, and
 * of every later run (they start above it), 16 digits: each resume was a stream_reset `invalid`.
 */
export const MAX_EVENT_ID = 999_999_999_999_999;
const CLOCK_PLAUSIBLE_UNTIL_MS = Date.UTC(2250, 0, 1);

export function idFloor(nowMs: number): number {
  return Math.min(Math.max(0, Math.floor(nowMs)), CLOCK_PLAUSIBLE_UNTIL_MS) * IDS_PER_MS;
}

export interface IdStore {
  /** The highest id that may have been handed out for this stream before (0 when never). */
  load(stream: string): number;
  /** Persists that ids up to and including `ceiling` may be handed out; true once durable. */
  save(stream: string, ceiling: number): boolean;
  /**
   * The stream was removed (a deleted dongle or group). A store that holds its ceilings in memory lets its
   * entry go, so memory follows the live streams, not every name ever used. A durable store keeps its row.
   */
  forget?(stream: string): void;
}

/** For tests, ephemeral streams, and the bridge on PostgreSQL (rule 2 alone across restarts). */
export class MemoryIdStore implements IdStore {
  private readonly m = new Map<string, number>();
  /**
   * The highest ceiling of the streams forgotten: one number instead of an entry per name ever used. A
   * stream made (again) starts above it, so rule 1 holds within the process whatever the names.
   */
  private forgotten = 0;
  load(stream: string): number {
    return this.m.get(stream) ?? this.forgotten;
  }
  save(stream: string, ceiling: number): boolean {
    this.m.set(stream, ceiling);
    return true;
  }
  forget(stream: string): void {
    this.forgotten = Math.max(this.forgotten, this.m.get(stream) ?? 0);
    this.m.delete(stream);
  }
}

export class SqliteIdStore implements IdStore {
  private readonly get: Database.Statement<[string], { ceiling: number }>;
  private readonly put: Database.Statement<[string, number]>;

  /** `writes`: where a failed write is counted and reported; without it a failure throws. */
  constructor(
    private readonly db: Database.Database,
    private readonly writes?: StoreWrites,
  ) {
    db.exec(`CREATE TABLE IF NOT EXISTS stream_ids (stream TEXT PRIMARY KEY, ceiling INTEGER NOT NULL)`);
    this.get = db.prepare('SELECT ceiling FROM stream_ids WHERE stream = ?');
    this.put = db.prepare('INSERT INTO stream_ids (stream, ceiling) VALUES (?, ?) ON CONFLICT(stream) DO UPDATE SET ceiling = excluded.ceiling');
  }

  load(stream: string): number {
    return this.get.get(stream)?.ceiling ?? 0;
  }

  /**
   * Not synced on a durable database (the bridge's): a ceiling lost at a power cut is covered by rule 2, as
   * on the agent, whose state is never synced. A sync here held the bridge's event loop at every new stream.
   */
  save(stream: string, ceiling: number): boolean {
    const write = (): unknown => commitUnsynced(this.db, () => this.put.run(stream, ceiling));
    if (!this.writes) {
      write();
      return true;
    }
    return this.writes.attempt(write).ok;
  }
}

/** Hands out one stream's ids by the rule above. */
export class EventIds {
  /** First id of this run: anything below it comes from an earlier run (moved only by restart(), cluster mode). */
  runStart: number;
  private next: number;
  /** Ids up to here are covered by a durable ceiling. */
  private persisted: number;
  private lastFailure = -Infinity;
  /** Events not published because no id was provably unused (rule 3). */
  withheld = 0;

  constructor(
    private readonly stream: string,
    private readonly store: IdStore,
    private readonly now: () => number,
  ) {
    // A ceiling past MAX_EVENT_ID (left by a run before the clamp) cannot be continued: started over below it.
    const stored = store.load(stream);
    const loaded = stored > MAX_EVENT_ID - 1_000_000 ? 0 : stored;
    this.runStart = Math.max(loaded + 2, idFloor(now()));
    this.next = this.runStart;
    this.persisted = loaded;
    this.reserve();
  }

  /** The last id handed out (runStart - 1 before the first). */
  get latest(): number {
    return this.next - 1;
  }

  /** The next id, or undefined when none is provably unused right now (the event is withheld, counted). */
  take(): number | undefined {
    const id = this.next;
    if (id > this.persisted && this.now() - this.lastFailure >= RETRY_MS) this.reserve();
    if (id > this.persisted && id >= idFloor(this.now()) - 1) {
      this.withheld++;
      return undefined;
    }
    this.next++;
    return id;
  }

  /**
   * Cluster mode: the stream continues at another position (a mirror following the numbering node, or this
   * node starting a run of its own). The block reservation follows from there.
   */
  restart(runStart: number, latest: number): void {
    this.runStart = runStart;
    this.next = latest + 1;
  }

  /** Cluster mirror: `id` was numbered elsewhere; the next is above it. */
  advanceTo(id: number): void {
    if (id >= this.next) this.next = id + 1;
  }

  /** Where a new run of this stream starts: above every id seen (+2, so the one below is never used) and the clock floor. */
  nextRunStart(): number {
    return Math.max(this.next + 1, idFloor(this.now()));
  }

  private reserve(): void {
    const ceiling = this.next + ID_BLOCK - 1;
    if (this.store.save(this.stream, ceiling)) this.persisted = ceiling;
    else this.lastFailure = this.now();
  }
}
