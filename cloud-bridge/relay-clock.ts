/**
 * The bridge's clocks as the relay uses them. Frames held for a group side age on the monotonic clock
 * (performance.now()): the wall clock can be stepped (NTP, a VM resumed) while they wait, and a step back
 * would let stale frames out, a step forward drop fresh ones. Clock fixes, though, are on the wall clock:
 * an agent measures its offset against the bridge's `Date.now()` (clock_probe → clock_reply), as it was when
 * it probed. So the relay keeps, beside each fix, the wall clock's offset from the monotonic one at the time
 * (its "domain", `wallMinusMonoMs`): a frame's origin time turns monotonic with the domain its origin measured
 * in, and a held batch's fix is restated for the domain its receiver measured in (`restated`).
 *
 * `Date.now()` has whole milliseconds, so wall − monotonic read twice differs by up to 1 ms without any
 * step: the domain is kept as it is until a reading is more than DOMAIN_TOLERANCE_MS away from it (a step,
 * or a slew that has added up), so frames of one origin keep one domain and leave in one batch. The
 * conversions count that tolerance and the millisecond against the frame.
 */
import type { ClockFix } from '../core/uplink/clock.js';

/** A moment as the relay sees it: the monotonic time, and the wall clock's domain (wall − monotonic, ms). */
export interface RelayTime {
  monoMs: number;
  wallMinusMonoMs: number;
}

/** How far a reading of wall − monotonic may be from the domain before the domain follows it. */
export const DOMAIN_TOLERANCE_MS = 1;
/**
 * How much earlier than computed a wall time of a domain may fall on the monotonic clock: the tolerance,
 * and the millisecond `Date.now()` truncates. Taken off a frame's monotonic origin time (older, never younger).
 */
export const TO_MONO_MARGIN_MS = DOMAIN_TOLERANCE_MS + 1;
/** Added to a fix's error when it is restated for another domain: into the monotonic clock and out again. */
export const RESTATE_ERROR_MS = TO_MONO_MARGIN_MS + DOMAIN_TOLERANCE_MS;

export class RelayClock {
  private domain: number | undefined;

  constructor(
    private readonly wall: () => number = Date.now,
    private readonly mono: () => number = () => performance.now(),
  ) {}

  /** Now: the wall clock's reading (what a clock_reply says), the monotonic time and the current domain. */
  now(): RelayTime & { wallMs: number } {
    const monoMs = this.mono();
    const wallMs = this.wall();
    const d = wallMs - monoMs;
    if (this.domain === undefined || Math.abs(d - this.domain) > DOMAIN_TOLERANCE_MS) this.domain = d;
    return { wallMs, monoMs, wallMinusMonoMs: this.domain };
  }
}

/** The one the bridge's relay and agent links share (tests give GroupRelay their own). */
export const RELAY_CLOCK = new RelayClock();

/**
 * A fix that converts to the bridge's wall clock as it was in domain `from`, for a receiver that measured
 * its offset in domain `to`: the same moments, on the wall clock as it is there. Unchanged (the same object)
 * when the domains agree — the usual case: no step since both measured.
 */
export function restated(fix: ClockFix, from: number, to: number): ClockFix {
  return from === to ? fix : { offsetMs: fix.offsetMs + (to - from), errorMs: fix.errorMs + RESTATE_ERROR_MS };
}
