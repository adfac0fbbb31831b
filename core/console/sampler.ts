/**
 * Fair thinning of can_frame events for a console (never for the data plane).
 *
 * Time is cut into windows (1 s). While the input stays within `maxRate` frames per window every frame
 * passes. Once a window's input passes `maxRate`, sampling switches on at once:
 *  - the first frame of every bus+id in each window always passes, so a 1 Hz id is never starved by a
 *    5 kHz one (up to a hard ceiling of 4×maxRate distinct ids, against id floods), and an id whose whole
 *    rate fits its fair share keeps every frame;
 *  - the rest of the budget is shared max-min fairly (water-filling) from the previous window's counts:
 *    an id that sent c frames and was allotted a gets every (c/a)-th frame;
 *  - each passing frame reports how many frames of its id it stands for (`represents`), so rates
 *    computed from the console stay right.
 * Sampling switches off at the end of a window whose input fell to 80 % of maxRate or less (hysteresis,
 * so a bus hovering at the limit does not flap).
 */

import type { CanFrame } from '../can/frame.js';

export interface SamplerTransition {
  state: 'on' | 'off';
  /** Input can_frame rate (frames/s) that caused the transition. */
  inputRate: number;
  /** Output rate the console is thinned to (frames/s); equals the input rate when off. */
  outputRate: number;
}

interface IdState {
  /** Frames seen in the current window. */
  seen: number;
  /** Frames since this id last passed: what the next passing frame stands for. */
  pending: number;
  /** Index of the window in which this id last passed. */
  passedWindow: number;
  /** Frames allotted per window by the last fair-share computation (0 until one has run). */
  allot: number;
  /** Pass every `stride`-th frame after the first of the window. */
  stride: number;
  acc: number;
  /** Windows in a row without a frame: lets idle ids be forgotten, bounding memory. */
  idle: number;
}

const WINDOW_MS = 1000;
const OFF_RATIO = 0.8;
const FIRST_CEILING_FACTOR = 4;
const FORGET_AFTER_WINDOWS = 5;

export class FrameSampler {
  private sampling = false;
  private window = 0;
  private windowStart: number;
  private inCount = 0;
  private outCount = 0;
  private firstCount = 0;
  private readonly ids = new Map<string, IdState>();

  constructor(
    readonly maxRate: number,
    private readonly onTransition: (t: SamplerTransition) => void,
    nowMs: number,
  ) {
    if (!(maxRate >= 1)) throw new Error(`console max rate must be >= 1 frame/s, got ${maxRate}`);
    this.windowStart = nowMs;
  }

  get active(): boolean {
    return this.sampling;
  }

  /**
   * Decides for one frame. Returns 0 when the frame is sampled out, else the number of frames it stands for
   * (1 when nothing was skipped before it).
   */
  offer(key: string, nowMs: number): number {
    if (this.windowEnded(nowMs)) this.roll(nowMs);
    this.inCount++;
    let st = this.ids.get(key);
    if (st === undefined) {
      st = { seen: 0, pending: 0, passedWindow: -1, allot: 0, stride: 1, acc: 0, idle: 0 };
      this.ids.set(key, st);
    }
    st.seen++;
    st.pending++;

    if (!this.sampling) {
      if (this.inCount <= this.maxRate) return this.pass(st);
      this.switchOn(nowMs);
    }

    if (st.passedWindow !== this.window) {
      if (this.firstCount < this.maxRate * FIRST_CEILING_FACTOR) {
        this.firstCount++;
        return this.pass(st);
      }
    } else if (st.stride <= 1 && st.seen <= st.allot + 1) {
      // Within its whole fair share (a slow id, e.g. two 1 Hz frames that jitter into one window):
      // the shares add up to the budget, so these never need the budget check.
      return this.pass(st);
    } else if (++st.acc >= st.stride && this.outCount < this.maxRate) {
      st.acc -= st.stride;
      return this.pass(st);
    }
    return 0;
  }

  /** Rolls windows when no frame arrives, so sampling can switch off on a bus that went quiet. */
  tick(nowMs: number): void {
    if (this.windowEnded(nowMs)) this.roll(nowMs);
  }

  /** Also when the wall clock was stepped back: the window would otherwise not end for as long as the step. */
  private windowEnded(nowMs: number): boolean {
    return nowMs < this.windowStart || nowMs - this.windowStart >= WINDOW_MS;
  }

  private pass(st: IdState): number {
    const n = st.pending;
    st.pending = 0;
    st.passedWindow = this.window;
    this.outCount++;
    return n;
  }

  private switchOn(nowMs: number): void {
    this.sampling = true;
    // Mid-window: allot from the counts seen so far in this window, the best estimate there is.
    this.allot();
    const elapsed = Math.max(nowMs - this.windowStart, 50);
    this.onTransition({ state: 'on', inputRate: Math.round((this.inCount * 1000) / elapsed), outputRate: this.maxRate });
  }

  private roll(nowMs: number): void {
    if (nowMs < this.windowStart) this.windowStart = nowMs - WINDOW_MS; // stepped back: the window just ended
    const elapsed = nowMs - this.windowStart;
    const windows = Math.floor(elapsed / WINDOW_MS);
    // The rate of the window that just ended; an empty gap of several windows means the bus went quiet.
    const inputRate = windows === 1 ? this.inCount : 0;
    if (this.sampling && inputRate <= this.maxRate * OFF_RATIO) {
      this.sampling = false;
      this.onTransition({ state: 'off', inputRate, outputRate: inputRate });
    }
    if (this.sampling) this.allot();
    for (const [key, st] of this.ids) {
      if (st.seen === 0) {
        if (++st.idle >= FORGET_AFTER_WINDOWS) this.ids.delete(key);
      } else st.idle = 0;
      st.seen = 0;
      st.acc = 0;
    }
    this.window += windows;
    this.windowStart += windows * WINDOW_MS;
    this.inCount = 0;
    this.outCount = 0;
    this.firstCount = 0;
  }

  /** Max-min fair share of the window budget over the ids, from their current `seen` counts. */
  private allot(): void {
    const active: IdState[] = [];
    for (const st of this.ids.values()) if (st.seen > 0) active.push(st);
    active.sort((a, b) => a.seen - b.seen);
    let budget = this.maxRate;
    for (let i = 0; i < active.length; i++) {
      const st = active[i]!;
      const share = budget / (active.length - i);
      const allotted = Math.max(Math.min(st.seen, share), 1e-9);
      st.allot = Math.floor(allotted);
      st.stride = Math.max(1, st.seen / allotted);
      budget -= Math.min(st.seen, share);
    }
  }
}

/** Distinct keys a SamplerKeys remembers before it starts over (an id flood must not grow it without bound). */
const MAX_CACHED_KEYS = 8192;

/**
 * The sampler's key of a frame: bus + id (+ the dongle on a group console, where both sides may use the
 * same bus name and id). Built once per distinct frame kind and looked up after: concatenating and hashing
 * a fresh string was about a microsecond per frame, paid by every console a frame is offered to.
 */
export class SamplerKeys {
  private readonly byDongle = new Map<string, Map<string, Map<number, string>>>();
  private count = 0;
  // The last dongle and bus looked up: a stream's frames mostly come from one bus in a row, so two of the
  // three lookups per frame are skipped (three consoles see every relayed frame).
  private lastDongle: string | undefined;
  private lastBus = '';
  private lastById: Map<number, string> | undefined;

  key(f: CanFrame, dongle: string | undefined): string {
    const d = dongle ?? '';
    let byId = this.lastById;
    if (byId === undefined || d !== this.lastDongle || f.bus !== this.lastBus) {
      let byBus = this.byDongle.get(d);
      if (byBus === undefined) this.byDongle.set(d, (byBus = new Map()));
      byId = byBus.get(f.bus);
      if (byId === undefined) byBus.set(f.bus, (byId = new Map()));
      this.lastDongle = d;
      this.lastBus = f.bus;
      this.lastById = byId;
    }
    // ids are 29 bits: the kind goes above them.
    const k = f.ext ? f.id + 0x40000000 : f.err ? f.id + 0x80000000 : f.id;
    let key = byId.get(k);
    if (key === undefined) {
      if (++this.count > MAX_CACHED_KEYS) {
        this.byDongle.clear();
        this.lastById = undefined;
        this.count = 1;
        return this.key(f, dongle);
      }
      key = d + '/' + f.bus + (f.ext ? ':x' : f.err ? ':e' : ':') + f.id;
      byId.set(k, key);
    }
    return key;
  }
}
