/**
 * The sending side of the data plane's reliable numbered batches, used by both senders: the agent's
 * FrameUploader (UP batches to the bridge) and the bridge's DownQueue (DOWN batches to a group side).
 *
 * A batch stays here, with its number, until the receiver's cumulative ack covers it. When the link goes
 * away (or comes back) every batch becomes unsent again and is resent with its original number; the
 * receiver skips numbers it already took (BatchDedupe). Backpressure works by ack holding: a receiver that
 * holds its acks keeps batches here, where the sender's bounds apply. Bounds, all counted by the owner:
 * stale items are removed from batches not on the wire (`expire`: once sent, the receiver checks the age
 * itself), and past a frame bound the oldest unsent batches go first (`trim`), sent ones only past a hard
 * bound (they are probably at the receiver already).
 */

export interface WindowBatch<T> {
  readonly batch: number;
  items: T[];
  /** Written to the current link (cleared when the link changes). */
  sent: boolean;
  /**
   * The earliest time of its items (a lower bound once some were removed): a batch's items are not in time
   * order — frames of several buses come from separate sockets, stamped by the kernel — so its first item
   * says nothing of the others, and a frame past the age limit behind a fresh first one was sent.
   */
  oldest: number;
  /**
   * Written to a link that was lost before its ack: the receiver may have it. Such a batch is neither
   * aged out nor trimmed (below the hard bound) until `settle()` — after the receiver said what it has —
   * so that a frame that arrived is never counted as dropped.
   */
  unsure?: boolean;
}

export class SendWindow<T> {
  private batches: WindowBatch<T>[] = [];
  private held = 0;
  private onWire = 0;
  /** The highest batch number ever written to a link (-1: none): what a receiver can acknowledge at most. */
  private highestSent = -1;

  /** `timeOf`: an item's origin time in ms on this side's clock (what the age bound measures). */
  constructor(private readonly timeOf: (item: T) => number) {}

  /** Items held: unsent and sent but not acknowledged. */
  get size(): number {
    return this.held;
  }

  /** Items sent on the current link and not acknowledged yet. */
  get inFlight(): number {
    return this.onWire;
  }

  get hasUnsent(): boolean {
    return this.held > this.onWire;
  }

  /** Adds a batch at the end (numbers must increase). */
  add(batch: number, items: T[], sent = false): WindowBatch<T> {
    const b: WindowBatch<T> = { batch, items, sent, oldest: this.earliest(items) };
    if (sent) this.highestSent = Math.max(this.highestSent, batch);
    this.batches.push(b);
    this.held += items.length;
    if (sent) this.onWire += items.length;
    return b;
  }

  /** Items of batches written to a link and not acknowledged (on the current link, or `unsure`): the receiver may have them. */
  get maybeDelivered(): number {
    let n = 0;
    for (const b of this.batches) if (b.sent || b.unsure) n += b.items.length;
    return n;
  }

  /** Batches not on the wire, oldest first. Mark each with `markSent` once written. */
  *unsent(): IterableIterator<WindowBatch<T>> {
    for (const b of this.batches) if (!b.sent) yield b;
  }

  markSent(b: WindowBatch<T>): void {
    if (b.sent) return;
    b.sent = true;
    this.highestSent = Math.max(this.highestSent, b.batch);
    this.onWire += b.items.length;
  }

  /** Whether `batch` was ever written to a link: an ack above it acknowledges what the receiver cannot have. */
  wasSent(batch: number): boolean {
    return batch <= this.highestSent;
  }

  /** Cumulative ack: every batch up to `batch` is done. Returns the items freed. */
  ack(batch: number): number {
    let i = 0;
    let freed = 0;
    while (i < this.batches.length && this.batches[i]!.batch <= batch) {
      const b = this.batches[i++]!;
      freed += b.items.length;
      if (b.sent) this.onWire -= b.items.length;
    }
    if (i > 0) this.batches.splice(0, i);
    this.held -= freed;
    return freed;
  }

  /**
   * The link changed: nothing is on the wire any more, everything is due again. Returns the batches that
   * had been sent. `unsure`: mark those as possibly delivered (see WindowBatch.unsure) until `settle()`.
   */
  resendAll(unsure = false): number {
    let n = 0;
    for (const b of this.batches) {
      if (b.sent) {
        n++;
        if (unsure) b.unsure = true;
      }
      b.sent = false;
    }
    this.onWire = 0;
    return n;
  }

  /** The receiver has said what it has (acked before this call): what is left is surely not delivered. */
  settle(): void {
    for (const b of this.batches) b.unsure = false;
  }

  /** Removes items older than `cutoffMs` from unsent batches (an emptied batch is forgotten; receivers accept gaps in batch numbers). Returns the items removed. */
  expire(cutoffMs: number): number {
    let n = 0;
    for (const b of this.batches) {
      if (b.sent || b.unsure || b.items.length === 0 || b.oldest >= cutoffMs) continue;
      const before = b.items.length;
      b.items = b.items.filter((it) => this.timeOf(it) >= cutoffMs);
      b.oldest = this.earliest(b.items);
      n += before - b.items.length;
    }
    if (n > 0) this.removeEmpty(n);
    return n;
  }

  private earliest(items: readonly T[]): number {
    let min = Infinity;
    for (const it of items) {
      const t = this.timeOf(it);
      if (t < min) min = t;
    }
    return min;
  }

  /** Keeps only the items of an unsent batch that pass `keep` (an emptied batch is still sent: it is acknowledged like any). Returns the items removed. */
  filter(b: WindowBatch<T>, keep: (item: T) => boolean): number {
    if (b.sent) return 0;
    const before = b.items.length;
    b.items = b.items.filter(keep);
    this.held -= before - b.items.length;
    return before - b.items.length;
  }

  /**
   * Keeps at most `maxItems`: the oldest unsent batches go first; sent ones only while more than
   * `hardMaxItems` are held. Returns the items removed.
   */
  trim(maxItems: number, hardMaxItems: number): number {
    let n = 0;
    for (let i = 0; this.held - n > maxItems && i < this.batches.length; i++) {
      const b = this.batches[i]!;
      if (b.sent || b.unsure) continue;
      n += b.items.length;
      b.items = [];
    }
    if (n > 0) this.removeEmpty(n);
    let hard = 0;
    while (this.held > hardMaxItems && this.batches.length > 0) {
      const b = this.batches.shift()!;
      this.held -= b.items.length;
      if (b.sent) this.onWire -= b.items.length;
      hard += b.items.length;
    }
    return n + hard;
  }

  /** Forgets everything. Returns the items dropped. */
  clear(): number {
    const n = this.held;
    this.batches = [];
    this.held = 0;
    this.onWire = 0;
    return n;
  }

  private removeEmpty(removedUnsent: number): void {
    this.held -= removedUnsent;
    this.batches = this.batches.filter((b) => b.items.length > 0);
  }
}
