/**
 * The console history of a whole process under one memory budget (`--history-memory-mb`), whatever the
 * number of streams. Every stream's events are appended, compactly encoded (compact-event.ts), to one
 * log of fixed-size segments; each stream's ring (ring-buffer.ts) only indexes its entries. When the
 * budget is reached the oldest segment is dropped and every ring that had entries in it forgets them at
 * once, so a resume from there gets `stream_reset` (too_old), never a gap.
 *
 * Memory counted against the budget: the segments (at their full size) and the rings' index arrays.
 * An event shown on two consoles (a dongle's and its group's) is stored once when both show it the same
 * way: the last entry is remembered, and an identical append of the same source object reuses it.
 */
import type { CanFrame } from '../can/frame.js';
import { entryJson, entryType, frameEntrySize, textEntrySize, writeFrameEntry, writeTextEntry } from './compact-event.js';
import type { ConsoleEventType } from './events.js';

/** A location is seq × LOC_SCALE + offset: one number per indexed event, increasing in append order. */
export const LOC_SCALE = 2 ** 21;
const MAX_SEGMENT = 64 * 1024;

/** What the store needs from a ring: to forget entries that lived in a dropped segment. */
export interface HistoryIndex {
  /** Set by the store: the newest segment this ring is listed in (rings only ever append to the newest). */
  lastSegment: number;
  /** Drops every entry located before `loc`. Must not free or shrink its arrays (an append may be under way). */
  dropBefore(loc: number): void;
  /** Gives back index memory no longer needed (called when nothing else is left to evict). */
  compact(): void;
}

interface Segment {
  seq: number;
  buf: Buffer;
  used: number;
  /** Rings with entries here (each once). */
  rings: HistoryIndex[];
}

export class HistoryStore {
  readonly segmentBytes: number;
  private readonly segs: Segment[] = [];
  /** seq of segs[0]; segs are consecutive. */
  private firstSeq = 0;
  private segBytes = 0;
  private indexBytes = 0;
  private readonly rings = new Set<HistoryIndex>();
  // The last entry appended, for sharing it with the next identical append.
  private lastKey: object | undefined;
  private lastRep: number | undefined;
  private lastDongle: string | undefined;
  private lastLoc = -1;
  // The last entry rendered to JSON (a live event shown on two consoles is rendered once).
  private jsonLoc = -1;
  private jsonText = '';
  readonly counters = { segmentsEvicted: 0, appended: 0, shared: 0 };

  constructor(readonly budgetBytes: number) {
    if (!(budgetBytes >= 64 * 1024)) throw new Error(`history memory budget must be at least 64 KiB, got ${budgetBytes}`);
    // At least 16 segments in the budget, so dropping one forgets at most a sixteenth of the history.
    this.segmentBytes = Math.min(MAX_SEGMENT, Math.floor(budgetBytes / 16));
  }

  /** Bytes held for history now: segments plus ring indexes. Never more than the budget. */
  get bytes(): number {
    return this.segBytes + this.indexBytes;
  }

  register(ring: HistoryIndex): void {
    this.rings.add(ring);
  }

  unregister(ring: HistoryIndex): void {
    this.rings.delete(ring);
  }

  /** A ring grows (delta > 0) or shrinks its index; growing makes room by dropping the oldest history. */
  chargeIndex(delta: number): void {
    this.indexBytes += delta;
    if (delta > 0) this.fit(0);
  }

  appendFrame(ring: HistoryIndex, f: CanFrame, represents: number | undefined, dongle: string | undefined, jsonLength: number): number {
    if (f === this.lastKey && represents === this.lastRep && dongle === this.lastDongle && this.live(this.lastLoc)) return this.share(ring);
    const size = frameEntrySize(f, dongle);
    const seg = this.room(size);
    writeFrameEntry(seg.buf, seg.used, f, represents, dongle, jsonLength);
    this.lastKey = f;
    this.lastRep = represents;
    this.lastDongle = dongle;
    return this.commit(ring, seg, size);
  }

  /** `key`: the event's data object; the same object appended again right after is stored once. */
  appendText(ring: HistoryIndex, type: ConsoleEventType, json: string, key: object): number {
    if (key === this.lastKey && this.lastRep === undefined && this.lastDongle === undefined && this.live(this.lastLoc)) return this.share(ring);
    const size = textEntrySize(json);
    const seg = this.room(size);
    writeTextEntry(seg.buf, seg.used, type, json, size);
    this.lastKey = key;
    this.lastRep = undefined;
    this.lastDongle = undefined;
    this.jsonLoc = seg.seq * LOC_SCALE + seg.used;
    this.jsonText = json;
    return this.commit(ring, seg, size);
  }

  /** The entry's data JSON; undefined when its segment was dropped. */
  json(loc: number): string | undefined {
    if (loc === this.jsonLoc) return this.jsonText;
    const seg = this.segs[Math.floor(loc / LOC_SCALE) - this.firstSeq];
    if (seg === undefined) return undefined;
    this.jsonLoc = loc;
    this.jsonText = entryJson(seg.buf, loc % LOC_SCALE);
    return this.jsonText;
  }

  /** The entry's event type; undefined when its segment was dropped. */
  type(loc: number): ConsoleEventType | undefined {
    const seg = this.segs[Math.floor(loc / LOC_SCALE) - this.firstSeq];
    return seg === undefined ? undefined : entryType(seg.buf, loc % LOC_SCALE);
  }

  live(loc: number): boolean {
    return loc >= 0 && Math.floor(loc / LOC_SCALE) >= this.firstSeq;
  }

  private share(ring: HistoryIndex): number {
    const seg = this.segs[this.segs.length - 1]!;
    this.addRing(seg, ring);
    this.counters.shared++;
    return this.lastLoc;
  }

  private commit(ring: HistoryIndex, seg: Segment, size: number): number {
    const loc = seg.seq * LOC_SCALE + seg.used;
    seg.used += size;
    this.addRing(seg, ring);
    this.lastLoc = loc;
    this.counters.appended++;
    return loc;
  }

  private addRing(seg: Segment, ring: HistoryIndex): void {
    if (ring.lastSegment === seg.seq) return;
    ring.lastSegment = seg.seq;
    seg.rings.push(ring);
  }

  /** The segment to write `size` bytes into: the current one, or a new one (dropping old ones to fit). */
  private room(size: number): Segment {
    const cur = this.segs[this.segs.length - 1];
    if (cur !== undefined && cur.used + size <= cur.buf.length) return cur;
    // An event larger than a segment (a long log message) gets a segment of its own size.
    const cap = Math.max(this.segmentBytes, size);
    const freed = this.fit(cap);
    // Once the budget is full every new segment takes the place of the oldest: its buffer is reused (no
    // rendered text points into it: json() copies), so evicted history never waits for the GC in RSS.
    const buf = freed !== undefined && cap === this.segmentBytes ? freed : Buffer.allocUnsafe(cap);
    const seg: Segment = { seq: this.firstSeq + this.segs.length, buf, used: 0, rings: [] };
    this.segs.push(seg);
    this.segBytes += cap;
    return seg;
  }

  /** Drops the oldest segments until `need` more bytes fit in the budget; returns a dropped buffer of segment size. */
  private fit(need: number): Buffer | undefined {
    let freed: Buffer | undefined;
    while (this.bytes + need > this.budgetBytes) {
      if (this.segs.length === 0) {
        // Only empty rings' spare index memory is left: have them give it back.
        for (const r of this.rings) r.compact();
        return freed;
      }
      const buf = this.evictOldest();
      if (buf.length === this.segmentBytes) freed = buf;
    }
    return freed;
  }

  private evictOldest(): Buffer {
    const seg = this.segs.shift()!;
    this.firstSeq++;
    this.segBytes -= seg.buf.length;
    this.counters.segmentsEvicted++;
    if (this.jsonLoc >= 0 && !this.live(this.jsonLoc)) this.jsonLoc = -1;
    const limit = this.firstSeq * LOC_SCALE;
    for (const r of seg.rings) r.dropBefore(limit);
    return seg.buf;
  }
}
