/**
 * Frames relayed down from the group peer: validated (frame times within a sane window of now: a bad
 * batch is refused whole, before any of its frames is queued), deduplicated by batch number
 * (core/uplink/batch-dedupe.ts), checked by their end-to-end per-bus sequence numbers
 * (core/uplink/seq-checker.ts: gaps, duplicates, reordering counted), transmitted in order through the
 * TxQueue, and acknowledged once every frame of the batch was transmitted or counted as dropped.
 * The age rule holds end to end: each frame gets a transmit deadline on this agent's clock, `maxAgeMs`
 * (this agent's --relay-max-age-ms: the bus it transmits on is its to protect) after the earliest moment
 * its origin can have received it, every clock uncertainty counted against it; the TxQueue checks it at
 * the moment it hands the frame to the kernel. They are shown on the local console as `tx` by the router
 * and are never sent up again (no loops).
 */
import { transmittedFrame } from '../../core/can/frame.js';
import { BatchDedupe } from '../../core/uplink/batch-dedupe.js';
import { BRIDGE_CLOCK, frameTimesProblem, transmitDeadlineMs, type ClockFix } from '../../core/uplink/clock.js';
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

  constructor(
    private readonly tx: TxQueue,
    private readonly maxAgeMs: number,
  ) {}

  get stats(): { batches: number; duplicateBatches: number; frames: number; seqGaps: number; seqDuplicates: number; seqReordered: number } {
    const t = this.seq.totals;
    return { ...this.counts, seqGaps: t.gaps, seqDuplicates: t.duplicates, seqReordered: t.reordered };
  }

  /** A new bridge process numbers its batches afresh. */
  setEpoch(epoch: string | undefined): void {
    this.dedupe.setStream(epoch ?? '');
  }

  /**
   * Applies a DOWN batch; `ack` is called once it is fully handled (also for a duplicate). `local`: this
   * agent's clock fix (undefined: not measured, so no frame can be proven fresh). Returns the reason
   * when the batch is refused (nothing of it applied).
   */
  apply(b: Batch, local: ClockFix | undefined, ack: (batch: number) => void): string | undefined {
    const origin = b.clock ?? BRIDGE_CLOCK;
    const now = Date.now();
    if (local) {
      const bad = frameTimesProblem(b.frames, origin, now, local);
      if (bad) return bad;
    }
    if (!this.dedupe.accept(b.batch)) {
      this.counts.duplicateBatches++;
      ack(b.batch);
      return undefined;
    }
    this.counts.batches++;
    const from = b.origin ?? '?';
    let left = b.frames.length;
    if (left === 0) {
      ack(b.batch);
      return undefined;
    }
    for (const { frame, seq } of b.frames) {
      this.seq.check(`${from}/${frame.bus}`, seq);
      this.counts.frames++;
      const originUs = frame.tsUs;
      // Without a clock fix nothing can be proven fresh: a deadline already past drops it (counted). With
      // one, never later than maxAgeMs from now: the origin received it before it got here, whatever the
      // clocks say (this agent's own fix may be stale after its clock was stepped).
      const notAfterMs = local ? Math.min(transmitDeadlineMs(frame.tsUs, origin, local, this.maxAgeMs), now + this.maxAgeMs) : -Infinity;
      this.tx.enqueue(
        transmittedFrame(frame),
        (r) => {
          if (r.ok) this.latency[this.latencyCount++ % this.latency.length] = (r.tsUs - originUs) / 1000;
          if (--left === 0) ack(b.batch);
        },
        notAfterMs,
      );
    }
    return undefined;
  }

  /**
   * p50/p99 of the recent origin-to-transmit latency in ms, raw clock readings: meaningful when the clocks
   * agree (one host: the benchmarks). Not corrected by the clock offsets on purpose: their error (a few
   * ms) would swamp sub-millisecond figures; the age rule uses the corrected, conservative times.
   */
  latencyQuantiles(): { p50: number; p99: number; samples: number } | undefined {
    const n = Math.min(this.latencyCount, this.latency.length);
    if (n === 0) return undefined;
    // A typed-array sort is numeric and about ten times faster than Array#sort with a comparator:
    // this runs on every /metrics scrape, in the event loop that transmits relayed frames.
    const sorted = this.latency.slice(0, n).sort();
    return { p50: sorted[Math.floor(n * 0.5)]!, p99: sorted[Math.min(n - 1, Math.floor(n * 0.99))]!, samples: n };
  }
}
