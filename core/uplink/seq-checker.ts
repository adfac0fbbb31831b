/**
 * End-to-end frame sequence numbers, checked by whoever receives relayed frames (the bridge per origin
 * dongle and bus, agent B per origin and bus). The origin agent numbers every received frame per bus
 * (u32, wrapping). One rule everywhere:
 * - gap: numbers skipped (frames lost on the way: dropped and counted upstream, or an outage);
 * - reordered: a skipped number that arrives late (it was counted as a gap too: the counts only grow, as
 *   Prometheus counters must, so the frames really lost are `gaps - reordered`);
 * - duplicate: a number at or behind the position that is not a late one (seen before);
 * - sequence 1 starts a new run of the origin agent (tracked afresh), as does `restart()`;
 * - so does a number behind the position that is no late one but whose frame is newer than any seen on
 *   the stream (given `tsUs`, the origin's receive time): a duplicate is a frame seen before, so it cannot
 *   be newer; a new run of the origin whose first frames were lost on the way is. Its lost first numbers
 *   count as gaps. Who cannot tell a new run otherwise uses it (agent B: DOWN batches carry no run id;
 *   the bridge knows from `hello` and calls `restart()`). Before it, every frame of such a run counted as
 *   a duplicate and its real gaps never showed. It fails only where the origin's clock went back between
 *   its runs (frames of the new run older than the last of the old: duplicates, as before).
 * Diagnostics only: exactly-once delivery is the batch layer's job. Bounded: at most `maxStreams` streams
 * are tracked (a misbehaving sender cannot grow the map or the metric labels); a new stream past it takes
 * the place of the least recently used one (whose counts stay in the totals), so a table filled by streams
 * that ended (origins of earlier groups) never stops the checking of new ones. MAX_MISSING_TRACKED
 * remembered gaps per stream.
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
  /** The newest origin receive time seen (µs; -Infinity: none given). */
  newestUs: number;
  /** When it was last checked (the checker's count of checks): the least recently used goes first. */
  used: number;
}

export class SeqChecker {
  private readonly tracks = new Map<string, Track>();
  private checks = 0;
  /** Sum over every stream. */
  readonly totals: SeqCounts = { gaps: 0, duplicates: 0, reordered: 0 };

  constructor(private readonly maxStreams = 256) {}

  /** `tsUs`: the frame's origin receive time, when known (tells a new run of the origin from a duplicate). */
  check(key: string, seq: number, tsUs = -Infinity): void {
    const t = this.tracks.get(key);
    if (t === undefined) {
      if (this.tracks.size >= this.maxStreams) this.evictLeastRecent();
      this.tracks.set(key, { next: (seq + 1) >>> 0, missing: new Set(), counts: { gaps: 0, duplicates: 0, reordered: 0 }, newestUs: tsUs, used: ++this.checks });
      return;
    }
    t.used = ++this.checks;
    const newer = tsUs > t.newestUs;
    if (newer) t.newestUs = tsUs;
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
    } else if (newer) {
      // Behind, yet newer than anything seen: a new run of the origin, its numbers 1 … seq-1 lost.
      t.missing.clear();
      this.add(t, 'gaps', seq - 1);
      for (let s = 1; s < seq && t.missing.size < MAX_MISSING_TRACKED; s++) t.missing.add(s);
      t.next = (seq + 1) >>> 0;
    } else this.add(t, 'duplicates', 1);
  }

  private evictLeastRecent(): void {
    let oldest: string | undefined;
    let at = Infinity;
    for (const [k, t] of this.tracks)
      if (t.used < at) {
        at = t.used;
        oldest = k;
      }
    if (oldest !== undefined) this.tracks.delete(oldest);
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
