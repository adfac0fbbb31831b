/**
 * End-to-end frame sequence numbers, per (dongle, bus): the origin agent numbers every received frame per
 * bus (u32, wrapping), so the bridge can count frames that went missing (gaps), came twice (duplicates)
 * or came late (reordered). Diagnostics only: exactly-once delivery is the batch layer's job (batch
 * numbers per agent run), and nothing here decides what is relayed.
 * Numbers restart with each agent run. Buses per dongle are capped so a misbehaving agent cannot grow
 * the maps (and the metric labels) without bound.
 */
import type { SequencedFrame } from '../core/uplink/frame-codec.js';

export interface SeqCounts {
  /** Frames missing between consecutive numbers. */
  gaps: number;
  duplicates: number;
  reordered: number;
}

const MAX_BUSES_PER_DONGLE = 64;
/** Label under which buses past the cap are counted. */
export const OTHER_BUS = '_other';

interface DongleSeq {
  run: string;
  last: Map<string, number>;
  counts: Map<string, SeqCounts>;
}

export class SeqTracker {
  private readonly dongles = new Map<string, DongleSeq>();

  /** A new run of the agent: its numbers start over (the counts are kept). */
  startRun(dongle: string, run: string): void {
    const d = this.dongles.get(dongle);
    if (!d) this.dongles.set(dongle, { run, last: new Map(), counts: new Map() });
    else if (d.run !== run) {
      d.run = run;
      d.last.clear();
    }
  }

  track(dongle: string, frames: readonly SequencedFrame[]): void {
    const d = this.dongles.get(dongle);
    if (!d) return;
    for (const { frame, seq } of frames) {
      const bus = frame.bus;
      const last = d.last.get(bus);
      if (last === undefined) {
        if (d.last.size < MAX_BUSES_PER_DONGLE) d.last.set(bus, seq);
        this.countsFor(d, bus); // the series exist (at 0) from the first frame, not the first anomaly
        continue;
      }
      // Signed distance on the 32-bit circle: wrap-around is a normal step, not a jump.
      const diff = (seq - ((last + 1) >>> 0)) | 0;
      if (diff === 0) {
        d.last.set(bus, seq);
        continue;
      }
      const c = this.countsFor(d, bus);
      if (diff > 0) {
        c.gaps += diff;
        d.last.set(bus, seq);
      } else if (seq === last) c.duplicates++;
      else c.reordered++;
    }
  }

  forget(dongle: string): void {
    this.dongles.delete(dongle);
  }

  *entries(): IterableIterator<[dongle: string, bus: string, counts: SeqCounts]> {
    for (const [dongle, d] of this.dongles) for (const [bus, c] of d.counts) yield [dongle, bus, c];
  }

  private countsFor(d: DongleSeq, bus: string): SeqCounts {
    const key = d.counts.has(bus) || d.counts.size < MAX_BUSES_PER_DONGLE ? bus : OTHER_BUS;
    let c = d.counts.get(key);
    if (!c) d.counts.set(key, (c = { gaps: 0, duplicates: 0, reordered: 0 }));
    return c;
  }
}
