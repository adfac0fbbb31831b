/**
 * Bus load per bus from every frame (never sampled): the exact bits of each frame (core/can/bit-count.ts)
 * are summed per second of the frame's own timestamp and divided by the bitrate — the FD data phase by the
 * data bitrate — giving the share of that second the bus was busy, as `canbusload -e` prints it.
 * Keeps the last 60 seconds.
 *
 * Why the frame's timestamp and not the time the agent handles the frame: on SocketCAN it is the kernel's
 * receive time, so a second's load is the same whether the agent read the frame at once or late (a busy
 * event loop, a GC pause, a slow emulated CPU). Counted on arrival, a late batch moved its bits into the
 * next window: one second too low, the next too high (a false peak). Windows are whole seconds of the
 * clock the timestamps use (the wall clock: kernel CLOCK_REALTIME; replay and sim frames carry wall-clock
 * times too).
 *
 * When a second is complete: a received frame stamped in a later second proves it (one socket per bus
 * delivers in order). Without one, the second closes GRACE_MS after it ended if no frame came in since the
 * two steps before (the bus is quiet: one quiet step was not enough under emulation, where the first frames
 * of a burst reached the agent over a second late), else when the agent has seen frames of a later
 * second. Only if frames keep coming for STUCK_STEPS steps without their timestamps reaching a later second
 (a frozen clock) does the wall clock close it. Not a wall-clock limit: after the agent stalled (seen for
 13 s under emulation), its first step runs before the backlog is read, and a time limit would close the
 seconds of that backlog empty. A frame that still comes for a closed second, or
 * whose timestamp is beyond the open seconds (a clock step), is counted in the nearest open second, so the
 * total of bits stays exact.
 */
import { countFrameBits, type FrameBits } from '../../core/can/bit-count.js';
import type { CanFrame } from '../../core/can/frame.js';

export const LOAD_HISTORY_SECONDS = 60;
/** How long after a second ended a quiet bus closes it. */
export const GRACE_MS = 500;
/** Steps with frames but no later second after which the wall clock closes seconds (frozen timestamps). */
const STUCK_STEPS = 10;
/** Steps (seconds) in a row without a received frame after which a bus counts as quiet. */
const QUIET_STEPS = 2;
/**
 * Open seconds per bus: the waiting ones and the current one. A received frame beyond them (the agent
 * stalled longer) closes the oldest: its timestamp proves them complete.
 */
const RING = 64;

type Rates = { nominal: number | null; data: number | null };

interface Second {
  nominal: number;
  data: number;
  frames: number;
}

interface BusBits {
  /** Ring of open seconds: slot(s) holds second s for s in [open, open + RING). */
  ring: Second[];
  /** First open second (Unix seconds). */
  open: number;
  /** The latest second a received frame was stamped in. */
  rxSecond: number;
  /** Received frames counted, and as of the previous step (did any come in since?). */
  rxFrames: number;
  rxFramesAtStep: number;
  /** Steps in a row without a received frame. */
  quietSteps: number;
  /** Steps in a row with received frames but no advance of rxSecond, and rxSecond at the previous step. */
  stuckSteps: number;
  rxSecondAtStep: number;
  /** Loads of the last closed seconds, oldest first; emptied while the bitrate is unknown. */
  history: number[];
  last: number | null;
  lastFrames: number;
  /** Start of the last closed second (Unix ms), null before the first. */
  lastSecondMs: number | null;
  /** The bitrates of the last step (for seconds a frame closes between steps). */
  rates: Rates;
}

/** Ring slot of a second (also for times before 1970, which a wrong clock can give). */
function slot(s: number): number {
  return ((s % RING) + RING) % RING;
}

export class BusLoadMeter {
  private readonly buses = new Map<string, BusBits>();
  private readonly scratch: FrameBits = { nominal: 0, data: 0 };
  // One-entry cache: consecutive frames are usually on the same bus.
  private lastBus = '';
  private lastAcc: BusBits | undefined;

  /** `nowMs`: the wall clock at creation (Unix ms); a bus's first open second is the current one. */
  constructor(private nowMs: number) {}

  /** Hot path: once per received or transmitted frame. */
  add(f: CanFrame): void {
    let acc = f.bus === this.lastBus ? this.lastAcc : this.buses.get(f.bus);
    if (acc === undefined) acc = this.bus(f.bus);
    this.lastBus = f.bus;
    this.lastAcc = acc;
    countFrameBits(f, this.scratch);
    let s = Math.floor(f.tsUs / 1e6);
    if (f.direction === 'rx') {
      acc.rxFrames++;
      if (s > acc.rxSecond) acc.rxSecond = s;
    }
    if (s < acc.open) s = acc.open;
    else if (s >= acc.open + RING) {
      if (f.direction === 'rx') {
        // A clock stepped forward by days (NTP after a boot without RTC): only the last minute of the
        // skipped seconds can show, so skip to it, as roll() does — closing each one here held the event
        // loop (a year: seconds) in the middle of the frame path.
        if (s - acc.open >= RING + LOAD_HISTORY_SECONDS) this.reanchor(acc, s - LOAD_HISTORY_SECONDS + 1);
        while (acc.open <= s - RING) this.close(acc);
      } else s = acc.open + RING - 1;
    }
    const sec = acc.ring[slot(s)]!;
    sec.nominal += this.scratch.nominal;
    sec.data += this.scratch.data;
    sec.frames++;
  }

  private bus(name: string): BusBits {
    let b = this.buses.get(name);
    if (!b) {
      const ring = Array.from({ length: RING }, () => ({ nominal: 0, data: 0, frames: 0 }));
      const open = Math.floor(this.nowMs / 1000);
      b = {
        ring,
        open,
        rxSecond: open - 1,
        rxFrames: 0,
        rxFramesAtStep: 0,
        quietSteps: 0,
        stuckSteps: 0,
        rxSecondAtStep: open - 1,
        history: [],
        last: null,
        lastFrames: 0,
        lastSecondMs: null,
        rates: { nominal: null, data: null },
      };
      this.buses.set(name, b);
    }
    return b;
  }

  /**
   * Closes, per bus, every second that is complete (see the file comment) at `nowMs` (normally one per
   * call, once a second; several after a stall). `rates(bus)` gives the nominal and data bitrate (data
   * null: the nominal one is used); a bus without a bitrate gets no load; null: the bitrates are not known
   * yet (the kernel not read yet), and the bus's seconds stay open until they are.
   */
  roll(nowMs: number, busNames: Iterable<string>, rates: (bus: string) => Rates | null): void {
    this.nowMs = nowMs;
    for (const name of busNames) this.bus(name);
    // The last second the wall clock says is over, with the grace.
    const wallThrough = Math.floor((nowMs - GRACE_MS) / 1000) - 1;
    for (const [name, b] of this.buses) {
      const cameIn = b.rxFrames !== b.rxFramesAtStep;
      b.quietSteps = cameIn ? 0 : b.quietSteps + 1;
      b.stuckSteps = cameIn && b.rxSecond === b.rxSecondAtStep ? b.stuckSteps + 1 : 0;
      b.rxFramesAtStep = b.rxFrames;
      b.rxSecondAtStep = b.rxSecond;
      const byClock = b.quietSteps >= QUIET_STEPS || b.stuckSteps >= STUCK_STEPS;
      if (wallThrough < b.open - 2) {
        // The clock stepped back: count on from the current second; what is pending stays counted.
        this.reanchor(b, wallThrough + 1);
        continue;
      }
      // After a long stall or a clock step forward, seconds beyond a minute would all be pushed out of the
      // history anyway: skip to the last minute (their bits go into its first second).
      if (wallThrough - b.open >= LOAD_HISTORY_SECONDS + RING) this.reanchor(b, wallThrough - LOAD_HISTORY_SECONDS + 1);
      const r = rates(name);
      if (r === null) continue;
      b.rates = r;
      while (b.open <= wallThrough && (b.rxSecond > b.open || byClock)) this.close(b);
    }
  }

  /** Closes a bus's first open second: its load at the bus's last known bitrates. */
  private close(b: BusBits): void {
    const sec = b.ring[slot(b.open)]!;
    const r = b.rates;
    b.lastFrames = sec.frames;
    b.lastSecondMs = b.open * 1000;
    if (r.nominal) {
      b.last = sec.nominal / r.nominal + sec.data / (r.data ?? r.nominal);
      b.history.push(b.last);
      if (b.history.length > LOAD_HISTORY_SECONDS) b.history.shift();
    } else {
      b.last = null;
      b.history.length = 0;
    }
    sec.nominal = 0;
    sec.data = 0;
    sec.frames = 0;
    b.open++;
  }

  /** Moves a bus's open seconds to start at `second`, carrying every pending bit into it (nothing is lost). */
  private reanchor(b: BusBits, second: number): void {
    const sum: Second = { nominal: 0, data: 0, frames: 0 };
    for (const sec of b.ring) {
      sum.nominal += sec.nominal;
      sum.data += sec.data;
      sum.frames += sec.frames;
      sec.nominal = sec.data = sec.frames = 0;
    }
    const first = b.ring[slot(second)]!;
    first.nominal = sum.nominal;
    first.data = sum.data;
    first.frames = sum.frames;
    b.open = second;
    if (b.rxSecond >= second) b.rxSecond = b.rxSecondAtStep = second - 1;
  }

  /**
   * Load of the last closed second, its start (Unix ms), the peak over the last minute, the history and
   * the frames in that second.
   */
  figures(bus: string): { load: number | null; secondMs: number | null; peak: number | null; history: number[]; frameRate: number } {
    const b = this.buses.get(bus);
    if (!b) return { load: null, secondMs: null, peak: null, history: [], frameRate: 0 };
    return { load: b.last, secondMs: b.lastSecondMs, peak: b.history.length ? Math.max(...b.history) : null, history: [...b.history], frameRate: b.lastFrames };
  }
}
