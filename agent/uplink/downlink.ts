/**
 * Frames relayed down from the group peer: deduplicated by batch number, checked by their end-to-end
 * per-bus sequence numbers (gaps, duplicates, reordering are counted), transmitted in order through the
 * TxQueue, and acknowledged once every frame of the batch was transmitted or counted as dropped. They
 * are shown on the local console as `tx` by the router and are never sent up again (no loops).
 */
import type { Batch } from '../../core/uplink/frame-codec.js';
import type { TxQueue } from '../tx-queue.js';

interface SeqTrack {
  next: number;
  /** Sequence numbers skipped recently: one arriving later is a reordering, not a duplicate. */
  missing: Set<number>;
}

const MAX_MISSING_TRACKED = 1024;

export class Downlink {
  private lastBatch = 0;
  private epoch: string | undefined;
  private readonly seqs = new Map<string, SeqTrack>();
  /** Origin-receive to local-transmit latency samples (ms), a ring of the most recent. */
  private readonly latency = new Float64Array(65_536);
  private latencyCount = 0;
  readonly stats = { batches: 0, duplicateBatches: 0, frames: 0, seqGaps: 0, seqDuplicates: 0, seqReordered: 0 };

  constructor(private readonly tx: TxQueue) {}

  /** A new bridge process numbers its batches from 1 again. */
  setEpoch(epoch: string | undefined): void {
    if (epoch !== this.epoch) this.lastBatch = 0;
    this.epoch = epoch;
  }

  /** Applies a DOWN batch; `ack` is called once it is fully handled (also for a duplicate). */
  apply(b: Batch, ack: (batch: number) => void): void {
    if (b.batch <= this.lastBatch) {
      this.stats.duplicateBatches++;
      ack(b.batch);
      return;
    }
    this.lastBatch = b.batch;
    this.stats.batches++;
    const origin = b.origin ?? '?';
    let left = b.frames.length;
    if (left === 0) return ack(b.batch);
    for (const { frame, seq } of b.frames) {
      this.checkSeq(`${origin}/${frame.bus}`, seq);
      this.stats.frames++;
      const originUs = frame.tsUs;
      this.tx.enqueue({ ...frame, direction: 'tx' }, (r) => {
        if (r.ok) this.latency[this.latencyCount++ % this.latency.length] = (r.tsUs - originUs) / 1000;
        if (--left === 0) ack(b.batch);
      });
    }
  }

  /** p50/p99 of the recent origin-to-transmit latency in ms (meaningful when clocks agree, e.g. one host). */
  latencyQuantiles(): { p50: number; p99: number; samples: number } | undefined {
    const n = Math.min(this.latencyCount, this.latency.length);
    if (n === 0) return undefined;
    // A typed-array sort is numeric and about ten times faster than Array#sort with a comparator:
    // this runs on every /metrics scrape, in the event loop that transmits relayed frames.
    const sorted = this.latency.slice(0, n).sort();
    return { p50: sorted[Math.floor(n * 0.5)]!, p99: sorted[Math.min(n - 1, Math.floor(n * 0.99))]!, samples: n };
  }

  private checkSeq(key: string, seq: number): void {
    let t = this.seqs.get(key);
    // Sequence 1 starts a new run of the origin agent: begin tracking afresh.
    if (t === undefined || seq === 1) {
      this.seqs.set(key, { next: (seq + 1) >>> 0, missing: new Set() });
      return;
    }
    if (seq === t.next) {
      t.next = (seq + 1) >>> 0;
      return;
    }
    const ahead = (seq - t.next) >>> 0;
    if (ahead < 0x80000000) {
      // Frames were lost between the origin and here (dropped and counted upstream, or an outage).
      this.stats.seqGaps += ahead;
      for (let s = t.next; s !== seq && t.missing.size < MAX_MISSING_TRACKED; s = (s + 1) >>> 0) t.missing.add(s);
      t.next = (seq + 1) >>> 0;
    } else if (t.missing.delete(seq)) {
      this.stats.seqReordered++;
      this.stats.seqGaps--;
    } else {
      this.stats.seqDuplicates++;
    }
  }
}
