/**
 * Frames relayed down from the group peer: deduplicated by batch number (core/uplink/batch-dedupe.ts),
 * checked by their end-to-end per-bus sequence numbers (core/uplink/seq-checker.ts: gaps, duplicates,
 * reordering counted), transmitted in order through the TxQueue, and acknowledged once every frame of the
 * batch was transmitted or counted as dropped. They are shown on the local console as `tx` by the router
 * and are never sent up again (no loops).
 */
import { BatchDedupe } from '../../core/uplink/batch-dedupe.js';
import type { Batch } from '../../core/uplink/frame-codec.js';
import { SeqChecker } from '../../core/uplink/seq-checker.js';
import type { TxQueue } from '../tx-queue.js';

export class Downlink {
  /** DOWN batch numbering belongs to one bridge process (its relay epoch). */
  private readonly dedupe = new BatchDedupe();
  private readonly seq = new SeqChecker();
  /** Origin-receive to local-transmit latency samples (ms), a ring of the most recent. */
  private readonly latency = new Float64Array(65_536);
  private latencyCount = 0;
  private readonly counts = { batches: 0, duplicateBatches: 0, frames: 0 };

  constructor(private readonly tx: TxQueue) {}

  get stats(): { batches: number; duplicateBatches: number; frames: number; seqGaps: number; seqDuplicates: number; seqReordered: number } {
    const t = this.seq.totals;
    return { ...this.counts, seqGaps: t.gaps, seqDuplicates: t.duplicates, seqReordered: t.reordered };
  }

  /** A new bridge process numbers its batches afresh. */
  setEpoch(epoch: string | undefined): void {
    this.dedupe.setStream(epoch ?? '');
  }

  /** Applies a DOWN batch; `ack` is called once it is fully handled (also for a duplicate). */
  apply(b: Batch, ack: (batch: number) => void): void {
    if (!this.dedupe.accept(b.batch)) {
      this.counts.duplicateBatches++;
      ack(b.batch);
      return;
    }
    this.counts.batches++;
    const origin = b.origin ?? '?';
    let left = b.frames.length;
    if (left === 0) return ack(b.batch);
    for (const { frame, seq } of b.frames) {
      this.seq.check(`${origin}/${frame.bus}`, seq);
      this.counts.frames++;
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
}
