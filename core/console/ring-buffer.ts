/**
 * The replay history of one console stream: the last `capacity` events, none older than `maxAgeMs`.
 * Ids within a run are contiguous, so an id maps to its slot arithmetically: resume is O(1), never a scan.
 */
import type { ConsoleEventType } from './events.js';

export interface StoredEvent {
  readonly id: number;
  readonly type: ConsoleEventType;
  /** The complete SSE block ("id: …\nevent: …\ndata: …\n\n"), built once and shared by every client. */
  readonly chunk: string;
  readonly bytes: number;
  /** Stream byte offset at which this event starts: lets a client's backlog size be read in O(1). */
  readonly offset: number;
  readonly atMs: number;
}

export class EventRing {
  private readonly slots: (StoredEvent | undefined)[];
  private head = 0; // slot of the oldest event
  private count = 0;

  constructor(
    readonly capacity: number,
    readonly maxAgeMs: number,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new Error(`ring capacity must be a positive integer, got ${capacity}`);
    this.slots = new Array<StoredEvent | undefined>(capacity);
  }

  get size(): number {
    return this.count;
  }

  /** Appends; the caller guarantees `e.id` is the previous id + 1. Evicts the oldest event when full. */
  push(e: StoredEvent): void {
    if (this.count === this.capacity) {
      this.slots[this.head] = undefined;
      this.head = (this.head + 1) % this.capacity;
      this.count--;
    }
    this.slots[(this.head + this.count) % this.capacity] = e;
    this.count++;
  }

  /** Drops events older than the age bound. Called on every push and by a timer, so memory also shrinks when idle. */
  evictOlderThan(nowMs: number): void {
    const limit = nowMs - this.maxAgeMs;
    while (this.count > 0) {
      const e = this.slots[this.head]!;
      if (e.atMs >= limit) break;
      this.slots[this.head] = undefined;
      this.head = (this.head + 1) % this.capacity;
      this.count--;
    }
  }

  oldest(): StoredEvent | undefined {
    return this.count === 0 ? undefined : this.slots[this.head];
  }

  newest(): StoredEvent | undefined {
    return this.count === 0 ? undefined : this.slots[(this.head + this.count - 1) % this.capacity];
  }

  /** The event with this id, or undefined when it is not (or no longer) buffered. */
  get(id: number): StoredEvent | undefined {
    const first = this.oldest();
    if (first === undefined) return undefined;
    const k = id - first.id;
    if (k < 0 || k >= this.count || !Number.isInteger(k)) return undefined;
    return this.slots[(this.head + k) % this.capacity];
  }

  clear(): void {
    this.slots.fill(undefined);
    this.head = 0;
    this.count = 0;
  }
}
