/**
 * How long the agent waits before reconnecting to the bridge, by why the last connection ended.
 * - Ordinary drops: full jitter over an exponential cap (0.25 s up to the maximum), so a fleet
 *   reconnecting after a bridge restart spreads out instead of arriving at once.
 * - Refused as a duplicate (another agent holds this dongle's link): a backoff that always grows
 *   (1 s, 2 s, 4 s … up to the maximum, each with half jitter), so two gateways sharing a token never
 *   settle into a tight retry loop; one of them keeps the link and the other asks rarely.
 */
import { CLOSE } from '../../core/uplink/messages.js';

export interface ReconnectState {
  /** Connection attempts since the last welcome. */
  attempt: number;
  /** Consecutive refusals as a duplicate since the last welcome. */
  duplicates: number;
}

export function reconnectDelayMs(code: number, s: ReconnectState, maxMs: number, random: () => number = Math.random): number {
  if (code === CLOSE.DUPLICATE_AGENT) {
    const cap = Math.min(maxMs, 1000 * 2 ** Math.min(s.duplicates - 1, 10));
    return Math.round(cap / 2 + (random() * cap) / 2);
  }
  const cap = Math.min(maxMs, 500 * 2 ** Math.min(s.attempt, 10));
  return Math.round(250 + random() * cap);
}
