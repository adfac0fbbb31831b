/**
 * End-to-end frame sequence numbers, checked by whoever receives relayed frames (the bridge per origin
 * dongle and bus, agent B per origin and bus). The origin agent numbers every received frame per bus
 * (u32, wrapping). One rule everywhere:
 * - gap: numbers skipped (frames lost on the way: dropped and counted upstream, or an outage);
 * - reordered: a skipped number that arrives late (it was counted as a gap too: the counts only grow, as
 *   Prometheus counters must, so the frames really lost are `gaps - reordered`);
 * - duplicate: a number at or behind the position that is not a late one (seen before);
 * - sequence 1 starts a new run of the origin agent (tracked afresh), as does `restart()`.
 * Diagnostics only: exactly-once delivery is the batch layer's job. Bounded: at most `maxStreams` streams
 * are tracked (a misbehaving sender cannot grow the map or the metric labels; the rest go unchecked) and
 * MAX_MISSING_TRACKED remembered gaps per stream.
 */

export interface SeqCounts {
  /** Numbers skipped (frames lost = gaps - reordered). */
  gaps: number;
  duplicates: number;
  reordered: number;
}

const MAX_MISSING_TRACKED = 1024;

interface Track {
  next: number;
  /** Numbers skipped recently: one arriving later is a reordering, not a duplicate. */
  missing: Set<number>;
  counts: SeqCounts;
}

export class SeqChecker {
  private readonly tracks = new Map<string, Track>();
  /** Sum over every stream. */
  readonly totals: SeqCounts = { gaps: 0, duplicates: 0, reordered: 0 };

  constructor(private readonly maxStreams = 256) {}

  check(key: string, seq: number): void {
    const t = this.tracks.get(key);
    if (t === undefined) {
      if (this.tracks.size < this.maxStreams) this.tracks.set(key, { next: (seq + 1) >>> 0, missing: new Set(), counts: { gaps: 0, duplicates: 0, reordered: 0 } });
      return;
    }
    if (seq === t.next) {
      t.next = (seq + 1) >>> 0;
      return;
    }
    if (seq === 1 || t.next === -1) {
      t.next = (seq + 1) >>> 0;
      t.missing.clear();
      return;
    }
    const ahead = (seq - t.next) >>> 0;
    if (ahead < 0x80000000) {
      this.add(t, 'gaps', ahead);
      for (let s = t.next; s !== seq && t.missing.size < MAX_MISSING_TRACKED; s = (s + 1) >>> 0) t.missing.add(s);
      t.next = (seq + 1) >>> 0;
    } else if (t.missing.delete(seq)) {
      this.add(t, 'reordered', 1);
    } else this.add(t, 'duplicates', 1);
  }

  /** A new run of the origin: numbers start over (counts are kept). */
  restart(): void {
    for (const t of this.tracks.values()) {
      t.next = -1;
      t.missing.clear();
    }
  }

  *entries(): IterableIterator<[key: string, counts: SeqCounts]> {
    for (const [k, t] of this.tracks) yield [k, t.counts];
  }

  private add(t: Track, kind: keyof SeqCounts, n: number): void {
    t.counts[kind] += n;
    this.totals[kind] += n;
  }
}
