/** Exact per-bus, per-direction frame counts. Plain numbers on the hot path; read by /metrics on scrape. */
import type { CanFrame } from '../core/can/frame.js';

export interface BusCount {
  rx: number;
  tx: number;
}

export class FrameCounters {
  private readonly byBus = new Map<string, BusCount>();

  count(f: CanFrame): void {
    let c = this.byBus.get(f.bus);
    if (c === undefined) {
      c = { rx: 0, tx: 0 };
      this.byBus.set(f.bus, c);
    }
    c[f.direction]++;
  }

  entries(): IterableIterator<[string, BusCount]> {
    return this.byBus.entries();
  }

  total(direction: 'rx' | 'tx'): number {
    let n = 0;
    for (const c of this.byBus.values()) n += c[direction];
    return n;
  }
}
