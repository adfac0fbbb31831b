/**
 * A set of command ids kept in the order the stores return commands — created_at, then insertion
 * (PostgreSQL's `n`, SQLite's rowid) — for PgStore's in-memory view (a dongle's commands, its unfinished
 * ones, its queued ones). A lookup walks from either end and touches only what it returns: sorting or
 * filtering all of a dongle's retained commands on every call (600k at 1/s over 7 days) stalled the
 * bridge's event loop for up to seconds.
 *
 * Adding a command newer than the newest is an append; an older one (another node's, a full re-read out
 * of order) is placed by binary search. A removal marks its entry dead; dead entries at either end are
 * dropped at once, and the array is compacted when the dead outnumber the live: O(1) amortized.
 */

interface Entry {
  readonly id: string;
  readonly created_at: string;
  readonly n: number;
  live: boolean;
}

/** Dead entries tolerated before a compaction is worth it, whatever the size. */
const COMPACT_SLACK = 64;

const before = (a: Entry, b: Entry): boolean => (a.created_at < b.created_at ? true : a.created_at > b.created_at ? false : a.n < b.n);

export class OrderedCommands {
  /** Sorted by (created_at, n); entries before `head` are all dead. */
  private entries: Entry[] = [];
  private head = 0;
  private readonly byId = new Map<string, Entry>();

  get size(): number {
    return this.byId.size;
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  /** Adds the command (no change when it is there already: its created_at and n never change). */
  add(id: string, createdAt: string, n: number): void {
    if (this.byId.has(id)) return;
    const e: Entry = { id, created_at: createdAt, n, live: true };
    this.byId.set(id, e);
    const last = this.entries.length > this.head ? this.entries[this.entries.length - 1]! : undefined;
    if (last === undefined || !before(e, last)) {
      this.entries.push(e);
      return;
    }
    // The first entry after it (dead ones keep their keys, so the order holds across them).
    let lo = this.head;
    let hi = this.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (before(e, this.entries[mid]!)) hi = mid;
      else lo = mid + 1;
    }
    this.entries.splice(lo, 0, e);
  }

  delete(id: string): boolean {
    const e = this.byId.get(id);
    if (!e) return false;
    this.byId.delete(id);
    e.live = false;
    while (this.head < this.entries.length && !this.entries[this.head]!.live) this.head++;
    while (this.entries.length > this.head && !this.entries[this.entries.length - 1]!.live) this.entries.pop();
    if (this.head === this.entries.length) {
      this.entries = [];
      this.head = 0;
    } else if (this.entries.length > 2 * this.byId.size + COMPACT_SLACK) {
      this.entries = this.entries.filter((x) => x.live);
      this.head = 0;
    }
    return true;
  }

  /** Oldest first. */
  *ascending(): Generator<string> {
    for (let i = this.head; i < this.entries.length; i++) {
      const e = this.entries[i]!;
      if (e.live) yield e.id;
    }
  }

  /** Newest first. */
  *descending(): Generator<string> {
    for (let i = this.entries.length - 1; i >= this.head; i--) {
      const e = this.entries[i]!;
      if (e.live) yield e.id;
    }
  }
}
