/**
 * The bridge's end-to-end sequence check: one SeqChecker (core/uplink/seq-checker.ts, the same rule agent
 * B applies) per dongle, keyed by bus. Diagnostics for the `canrelay_bridge_seq_*_total` series; nothing
 * here decides what is relayed. A new run of the agent starts its numbers over (the counts are kept).
 */
import type { SequencedFrame } from '../core/uplink/frame-codec.js';
import { MAX_BUSES_PER_DONGLE } from '../core/names.js';
import { SeqChecker, type SeqCounts } from '../core/uplink/seq-checker.js';

export class SeqTracker {
  private readonly dongles = new Map<string, { run: string; seq: SeqChecker }>();

  /** A new run of the agent: its numbers start over (the counts are kept). */
  startRun(dongle: string, run: string): void {
    const d = this.dongles.get(dongle);
    if (!d) this.dongles.set(dongle, { run, seq: new SeqChecker(MAX_BUSES_PER_DONGLE) });
    else if (d.run !== run) {
      d.run = run;
      d.seq.restart();
    }
  }

  track(dongle: string, frames: readonly SequencedFrame[]): void {
    const d = this.dongles.get(dongle);
    if (!d) return;
    for (let i = 0; i < frames.length; i++) d.seq.check(frames[i]!.frame.bus, frames[i]!.seq);
  }

  forget(dongle: string): void {
    this.dongles.delete(dongle);
  }

  *entries(): IterableIterator<[dongle: string, bus: string, counts: SeqCounts]> {
    for (const [dongle, d] of this.dongles) for (const [bus, c] of d.seq.entries()) yield [dongle, bus, c];
  }
}
