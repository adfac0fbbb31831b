/**
 * Bus load per bus from every frame (never sampled): the exact bits of each frame (core/can/bit-count.ts)
 * are summed per second and divided by the bitrate — the FD data phase by the data bitrate — giving the
 * share of the second the bus was busy, as `canbusload -e` prints it. Keeps the last 60 seconds.
 */
import { countFrameBits, type FrameBits } from '../../core/can/bit-count.js';
import type { CanFrame } from '../../core/can/frame.js';

export const LOAD_HISTORY_SECONDS = 60;

interface BusBits {
  nominal: number;
  data: number;
  frames: number;
  /** Loads of the last closed seconds, oldest first; null while the bitrate is unknown. */
  history: number[];
  last: number | null;
  lastFrameRate: number;
}

export class BusLoadMeter {
  private readonly buses = new Map<string, BusBits>();
  private readonly scratch: FrameBits = { nominal: 0, data: 0 };
  // One-entry cache: consecutive frames are usually on the same bus.
  private lastBus = '';
  private lastAcc: BusBits | undefined;

  /** Hot path: once per received or transmitted frame. */
  add(f: CanFrame): void {
    let acc = f.bus === this.lastBus ? this.lastAcc : this.buses.get(f.bus);
    if (acc === undefined) acc = this.bus(f.bus);
    this.lastBus = f.bus;
    this.lastAcc = acc;
    countFrameBits(f, this.scratch);
    acc.nominal += this.scratch.nominal;
    acc.data += this.scratch.data;
    acc.frames++;
  }

  private bus(name: string): BusBits {
    let b = this.buses.get(name);
    if (!b) {
      b = { nominal: 0, data: 0, frames: 0, history: [], last: null, lastFrameRate: 0 };
      this.buses.set(name, b);
    }
    return b;
  }

  /**
   * Closes the current window of `elapsedS` seconds for every bus. `rates(bus)` gives the nominal and
   * data bitrate (data null: the nominal one is used); a bus without a bitrate gets no load.
   */
  roll(elapsedS: number, busNames: Iterable<string>, rates: (bus: string) => { nominal: number | null; data: number | null }): void {
    for (const name of busNames) this.bus(name);
    for (const [name, b] of this.buses) {
      const r = rates(name);
      b.lastFrameRate = elapsedS > 0 ? b.frames / elapsedS : 0;
      if (r.nominal && elapsedS > 0) {
        const busy = b.nominal / r.nominal + b.data / (r.data ?? r.nominal);
        b.last = busy / elapsedS;
        b.history.push(b.last);
        if (b.history.length > LOAD_HISTORY_SECONDS) b.history.shift();
      } else {
        b.last = null;
        b.history.length = 0;
      }
      b.nominal = 0;
      b.data = 0;
      b.frames = 0;
    }
  }

  /** Load of the last closed second, its peak over the last minute, the history and the frame rate. */
  figures(bus: string): { load: number | null; peak: number | null; history: number[]; frameRate: number } {
    const b = this.buses.get(bus);
    if (!b) return { load: null, peak: null, history: [], frameRate: 0 };
    return { load: b.last, peak: b.history.length ? Math.max(...b.history) : null, history: [...b.history], frameRate: b.lastFrameRate };
  }
}
