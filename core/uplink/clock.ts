/**
 * Clocks across the uplink, shared by agent and bridge. Clocks are never assumed to agree: each agent
 * estimates its offset to the bridge from round trips (clock_probe → clock_reply, see messages.ts), with
 * the error bound of half the round trip (NTP's rule: the reply was stamped somewhere inside it), and
 * every conversion counts that bound against the frame (a frame is taken as old as it can possibly be).
 *
 * A `ClockFix` turns a local time into the bridge's: bridge = local + offsetMs, good to ±errorMs. UP
 * batches carry the sender's fix; DOWN batches carry the origin agent's, so agent B can compute, with its
 * own fix, how long ago (on its clock) the origin received each frame.
 */
import type { SequencedFrame } from './frame-codec.js';

export interface ClockFix {
  offsetMs: number;
  errorMs: number;
}

/** The bridge's own clock, as a fix: no conversion, no uncertainty. */
export const BRIDGE_CLOCK: ClockFix = Object.freeze({ offsetMs: 0, errorMs: 0 });

/** Beyond any real clock (±300 years) or any usable round trip: a broken or forged value. */
const MAX_OFFSET_MS = 1e13;
const MAX_ERROR_MS = 60_000;
/**
 * A measured fix's error stays this far below MAX_ERROR_MS: a sender widens a fix it restates (a clock
 * step below RESTATE_MS, a millisecond for two readings) before it encodes it, and a fix at the limit,
 * widened past it, made the encoder throw in a timer — the agent died of one slow round trip.
 */
const WIDEN_MARGIN_MS = 1000;
/** Millisecond clocks at both ends of a probe and in the sources' anchoring: added to every bound. */
export const CLOCK_RESOLUTION_MS = 2;
/**
 * A change of the wall clock against the monotonic one past which times measured on the old wall clock are
 * restated into the new one (ms). Below it (two millisecond readings, NTP slewing) nothing is restated and
 * the change is counted in the error instead.
 */
export const RESTATE_MS = 10;
/**
 * How fast a clock may run against the bridge's between probes: 500 ppm, the most ntpd or adjtime slews,
 * well above a quartz without NTP (20–100 ppm). A sample's error grows by this much of its age: probes come
 * once per heartbeat (up to 300 s apart) and the estimate keeps the best of the last 8, so a fix can be
 * many minutes old, and a clock 100 ppm slow let relayed frames outlive the age limit by its drift.
 */
export const MAX_DRIFT = 500e-6;

/** A sample's error after `ageMs` of drift, in whole milliseconds (a fix's error changes every 2 s at most: UP batches stamped with it stay comparable). */
export function agedErrorMs(errorMs: number, ageMs: number): number {
  return errorMs + Math.ceil(Math.max(0, ageMs) * MAX_DRIFT);
}

/** How far from now (bridge clock) a frame's receive time may be; outside, the batch is refused. */
export const MAX_FRAME_PAST_MS = 24 * 3600_000;
export const MAX_FRAME_FUTURE_MS = 60_000;

export function clockProblem(c: ClockFix): string | null {
  if (!Number.isFinite(c.offsetMs) || Math.abs(c.offsetMs) > MAX_OFFSET_MS) return `clock offset ${c.offsetMs} ms is not a usable number`;
  if (!Number.isFinite(c.errorMs) || c.errorMs < 0 || c.errorMs > MAX_ERROR_MS) return `clock error ${c.errorMs} ms is outside 0-${MAX_ERROR_MS}`;
  return null;
}

/** The earliest time, on the bridge's clock, at which the origin can have received a frame stamped `tsUs`. */
export function earliestOnBridgeMs(tsUs: number, origin: ClockFix): number {
  return tsUs / 1000 + origin.offsetMs - origin.errorMs;
}

/**
 * The origin's fix for a batch that arrived at `arrivalMs` (bridge clock), moved back by as much as its
 * newest frame would otherwise have been received after that arrival — which cannot be. A frame stamped
 * in the future (the origin's clock stepped forward since its offset was last measured; a source's clock
 * running ahead) would look younger than it is, and outlive the age rule by as much: moved, it ages from
 * its arrival at the latest. The same fix travels on with the frames (DOWN batches), so the receiving agent
 * ages them alike. Unchanged (the same object) when no frame is in the future.
 */
export function noLaterThanArrival(frames: readonly SequencedFrame[], origin: ClockFix, arrivalMs: number): ClockFix {
  let newest = -Infinity;
  for (let i = 0; i < frames.length; i++) if (frames[i]!.frame.tsUs > newest) newest = frames[i]!.frame.tsUs;
  const ahead = earliestOnBridgeMs(newest, origin) - arrivalMs;
  return ahead > 0 ? { offsetMs: origin.offsetMs - ahead, errorMs: origin.errorMs } : origin;
}

/**
 * The latest local time (on the clock `local` converts) at which a frame may still be transmitted:
 * `maxAgeMs` after the earliest moment the origin can have received it, every uncertainty against it.
 */
export function transmitDeadlineMs(tsUs: number, origin: ClockFix, local: ClockFix, maxAgeMs: number): number {
  return earliestOnBridgeMs(tsUs, origin) - local.offsetMs - local.errorMs + maxAgeMs;
}

/**
 * A fix measured when the local wall clock read `fixWm` ahead of the monotonic clock, restated for that
 * wall clock as it reads now (`nowWm` ahead): a step of the wall clock since the fix's round trip moves the
 * offset by as much (bridge = wall then + offset = wall now − step + offset), so times read now convert
 * exactly, not off by the step until the next probe. A change below RESTATE_MS widens the error instead.
 * Unchanged (the same object) without a step.
 */
export function fixForWallClockNow(fix: ClockFix, fixWm: number, nowWm: number): ClockFix {
  const step = nowWm - fixWm;
  if (step === 0) return fix;
  // The two offset readings are good to a millisecond each: counted against the frames.
  if (Math.abs(step) > RESTATE_MS) return { offsetMs: fix.offsetMs - step, errorMs: fix.errorMs + 1 };
  return { offsetMs: fix.offsetMs, errorMs: fix.errorMs + Math.abs(step) };
}

/**
 * Refuses a batch whose frame times are not within a sane window of now: `nowMs` and `local` are the
 * checker's clock and its fix (the bridge: its own clock, {0, 0}). Returns the reason, or null.
 */
export function frameTimesProblem(frames: readonly SequencedFrame[], origin: ClockFix, nowMs: number, local: ClockFix): string | null {
  const ok = frameTimeCheck(origin, nowMs, local);
  for (let i = 0; i < frames.length; i++) {
    const ts = frames[i]!.frame.tsUs;
    if (!ok(ts)) {
      const away = ts / 1000 + origin.offsetMs - (nowMs + local.offsetMs);
      return `frame ${i} has timestamp ${ts} µs, ${Math.round(away / 1000)} s from now on the bridge's clock (allowed: ${-MAX_FRAME_PAST_MS / 1000} to +${MAX_FRAME_FUTURE_MS / 1000} s)`;
    }
  }
  return null;
}

/** The same window as a per-frame test (a sender uses it to leave out what a receiver would refuse). */
export function frameTimeCheck(origin: ClockFix, nowMs: number, local: ClockFix): (tsUs: number) => boolean {
  const now = nowMs + local.offsetMs;
  const slack = origin.errorMs + local.errorMs + CLOCK_RESOLUTION_MS;
  const lo = now - MAX_FRAME_PAST_MS - slack - origin.offsetMs;
  const hi = now + MAX_FRAME_FUTURE_MS + slack - origin.offsetMs;
  return (tsUs) => tsUs / 1000 >= lo && tsUs / 1000 <= hi;
}

interface Sample extends ClockFix {
  atMs: number;
  /** The monotonic time of the sample (its `t1` less `wm`): what its age, and so its drift, is measured on. */
  mono: number;
  /** The local wall clock minus the monotonic clock (ms) when the sample was taken: the clock domain the offset is for. */
  wm: number;
  /** The bridge's wall clock minus its monotonic clock when it answered (clock_reply's bridge_wm), when it said. */
  bwm: number | undefined;
}

/**
 * A sample's fix restated for the bridge's clock domain `bwm`: a step of the bridge's wall clock since the
 * sample moves its offset by as much (bridge now = bridge then + step). The same rule as a local step
 * (fixForWallClockNow), in the other direction.
 */
function inBridgeDomain(o: Sample, bwm: number | undefined): ClockFix {
  return o.bwm === undefined || bwm === undefined ? o : fixForWallClockNow(o, bwm, o.bwm);
}

/**
 * An agent's estimate of its clock's offset to the bridge from probe round trips: the sample with the
 * smallest error among the last few, each sample's error grown by its age at MAX_DRIFT (fixAt: and until
 * it is used). Samples that cannot all be true (their intervals do not overlap: the local clock was
 * stepped) are dropped in favour of the newest.
 *
 * A bridge that says its clock domain in each reply (`bridge_wm`, the "clock_domain" feature) has each
 * sample restated for the domain of the newest reply: the bridge takes the agent's fix as measured against
 * its clock as it was at the last probe it answered. Without it, a step of the bridge's clock smaller than
 * two samples' errors together contradicted neither, the older (better) sample stayed the fix, and the
 * bridge converted it as if measured after the step: a relayed frame could go out late by the step.
 */
export class ClockEstimator {
  private samples: Sample[] = [];
  /** The best sample restated for the newest reply's bridge domain, its error as measured (not aged). */
  private best: ClockFix | undefined;
  private bestWm: number | undefined;
  private bestMono = 0;
  private newestMono = 0;

  constructor(private readonly keep = 8) {}

  /** The fix as of the newest sample (its error aged to then), or undefined before the first round trip. */
  get fix(): ClockFix | undefined {
    return this.fixAt(this.newestMono);
  }

  /**
   * The fix for use at monotonic time `monoNowMs`: its error grown by the drift since its sample was
   * taken. Undefined before the first round trip, and once drift leaves no room for the widenings senders
   * add (a link without probes for days): nothing can then be proven fresh.
   */
  fixAt(monoNowMs: number): ClockFix | undefined {
    if (this.best === undefined) return undefined;
    const errorMs = agedErrorMs(this.best.errorMs, monoNowMs - this.bestMono);
    return errorMs > MAX_ERROR_MS - WIDEN_MARGIN_MS ? undefined : { offsetMs: this.best.offsetMs, errorMs };
  }

  /**
   * The local wall clock minus the monotonic clock (ms) when the current fix's sample was taken (as given
   * to add()): the fix converts times of that wall clock; a time read after a step of it must first be
   * moved by the step. Undefined before the first round trip.
   */
  get fixWallMinusMono(): number | undefined {
    return this.bestWm;
  }

  /**
   * A round trip: sent at local `t0`, stamped `bridgeMs` by the bridge, answered at local `t1`; `wm`: the
   * local wall-minus-monotonic offset at `t1`; `bwm`: the bridge's domain, when its reply said it. False
   * when unusable.
   */
  add(t0: number, bridgeMs: number, t1: number, wm = 0, bwm?: number): boolean {
    const rtt = t1 - t0;
    if (!Number.isFinite(rtt) || rtt < 0 || rtt > 2 * MAX_ERROR_MS || !Number.isFinite(bridgeMs)) return false;
    if (bwm !== undefined && (!Number.isFinite(bwm) || Math.abs(bwm) > MAX_OFFSET_MS)) return false;
    const s: Sample = { offsetMs: bridgeMs - (t0 + t1) / 2, errorMs: rtt / 2 + CLOCK_RESOLUTION_MS, atMs: t1, mono: t1 - wm, wm, bwm };
    if (clockProblem(s) || s.errorMs > MAX_ERROR_MS - WIDEN_MARGIN_MS) return false;
    // Samples of an unknown bridge domain cannot be restated: once replies say it, only theirs are kept.
    if (bwm === undefined && this.samples.some((o) => o.bwm !== undefined)) return false;
    if (bwm !== undefined) this.samples = this.samples.filter((o) => o.bwm !== undefined);
    // Older samples judged with the error their age gives them: drift is no contradiction.
    if (
      this.samples.some((o) => {
        const r = inBridgeDomain(o, bwm);
        return Math.abs(r.offsetMs - s.offsetMs) > agedErrorMs(r.errorMs, s.mono - o.mono) + s.errorMs;
      })
    )
      this.samples = [];
    this.samples.push(s);
    if (this.samples.length > this.keep) this.samples.shift();
    let best: { fix: ClockFix; wm: number; mono: number; aged: number } | undefined;
    for (const o of this.samples) {
      const r = inBridgeDomain(o, bwm);
      const aged = agedErrorMs(r.errorMs, s.mono - o.mono);
      if (best === undefined || aged < best.aged) best = { fix: r, wm: o.wm, mono: o.mono, aged };
    }
    this.best = { offsetMs: best!.fix.offsetMs, errorMs: best!.fix.errorMs };
    this.bestWm = best!.wm;
    this.bestMono = best!.mono;
    this.newestMono = s.mono;
    return true;
  }

  /** A new connection: start from fresh round trips (the clock may have been stepped meanwhile). */
  reset(): void {
    this.samples = [];
    this.best = undefined;
    this.bestWm = undefined;
    this.bestMono = 0;
    this.newestMono = 0;
  }
}
