/**
 * The replay history of one console stream: the last `capacity` events, none older than `maxAgeMs`, and
 * none whose entry the process-wide HistoryStore has dropped for its memory budget. The events themselves
 * live compactly in the store; the ring indexes them: per event its location in the store, its time and
 * its byte offset in the stream's SSE output (a client's backlog in bytes is one subtraction).
 *
 * Ids within a run are contiguous, so an id maps to its slot arithmetically: resume is O(1), never a scan.
 * The index starts empty and grows (and shrinks) with what is kept: a stream nobody feeds costs nothing.
 */
import type { HistoryIndex, HistoryStore } from './history-store.js';

/** Index slots per event: location in the store, time (ms), stream byte offset. */
const STRIDE = 3;
const MIN_SLOTS = 16;

export class EventRing implements HistoryIndex {
  lastSegment = -1;
  private index = new Float64Array(0);
  private cap = 0;
  private head = 0; // slot of the oldest event
  private count = 0;
  /** Id of the oldest event (meaningful while count > 0). */
  private firstId = 0;
  /** Set from prepare() to push(): the store must not take that room back meanwhile. */
  private reserved = false;

  constructor(
    private readonly store: HistoryStore,
    readonly capacity: number,
    readonly maxAgeMs: number,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new Error(`ring capacity must be a positive integer, got ${capacity}`);
    store.register(this);
  }

  get size(): number {
    return this.count;
  }

  /** Id of the oldest event kept, or undefined. */
  get oldestId(): number | undefined {
    return this.count === 0 ? undefined : this.firstId;
  }

  /**
   * Makes room for one more event; call before the store append (which may drop old entries, but never
   * the room made here). Evicts the oldest event when the ring holds `capacity`.
   */
  prepare(): void {
    if (this.count === this.capacity) this.dropHead();
    this.reserved = true;
    if (this.count === this.cap) this.resize(Math.min(this.capacity, Math.max(MIN_SLOTS, this.cap * 2)));
  }

  /** Appends after prepare(); `id` is the previous id + 1 (or any id when empty). */
  push(id: number, loc: number, atMs: number, offset: number): void {
    this.reserved = false;
    if (this.count === 0) this.firstId = id;
    const i = ((this.head + this.count) % this.cap) * STRIDE;
    this.index[i] = loc;
    this.index[i + 1] = atMs;
    this.index[i + 2] = offset;
    this.count++;
  }

  /** Drops events older than the age bound. Called on every push and by a timer, so memory also shrinks when idle. */
  evictOlderThan(nowMs: number): void {
    const limit = nowMs - this.maxAgeMs;
    while (this.count > 0 && this.index[this.head * STRIDE + 1]! < limit) this.dropHead();
  }

  dropBefore(loc: number): void {
    while (this.count > 0 && this.index[this.head * STRIDE]! < loc) this.dropHead();
  }

  /** Slot of the event with this id, or -1 when it is not (or no longer) kept. */
  slot(id: number): number {
    const k = id - this.firstId;
    if (this.count === 0 || k < 0 || k >= this.count || !Number.isInteger(k)) return -1;
    return (this.head + k) % this.cap;
  }

  loc(slot: number): number {
    return this.index[slot * STRIDE]!;
  }

  offset(slot: number): number {
    return this.index[slot * STRIDE + 2]!;
  }

  /** Gives back index memory: all of it when empty, half when a quarter is used. */
  compact(): void {
    if (this.reserved) return;
    if (this.count === 0) {
      if (this.cap > 0) this.resize(0);
    } else if (this.cap > MIN_SLOTS && this.count <= this.cap / 4) this.resize(Math.max(MIN_SLOTS, Math.floor(this.cap / 2))); // whole slots: 625 / 2 is not a ring size
  }

  clear(): void {
    this.count = 0;
    this.head = 0;
    this.resize(0);
  }

  /** The stream is gone: its index memory is given back and the store forgets it. */
  close(): void {
    this.clear();
    this.store.unregister(this);
  }

  private dropHead(): void {
    this.head = this.head + 1 === this.cap ? 0 : this.head + 1;
    this.count--;
    this.firstId++;
  }

  private resize(cap: number): void {
    const next = new Float64Array(cap * STRIDE);
    for (let k = 0; k < this.count; k++) {
      const from = ((this.head + k) % this.cap) * STRIDE;
      next[k * STRIDE] = this.index[from]!;
      next[k * STRIDE + 1] = this.index[from + 1]!;
      next[k * STRIDE + 2] = this.index[from + 2]!;
    }
    const delta = (cap - this.cap) * STRIDE * 8;
    this.index = next;
    this.cap = cap;
    this.head = 0;
    this.store.chargeIndex(delta);
  }
}
