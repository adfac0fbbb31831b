/**
 * Whether a periodic report (a bus's bus_state) is still current: it is stale once nothing new came for
 * three of its usual intervals (the gap between its last two reports), and never before 15 s. When the
 * reports stop (the agent or the bridge gone, the stream reconnecting), the figures shown are the last
 * ones known — a load gauge must not keep saying "62 %" of a bus nobody reports on.
 */
const MIN_STALE_MS = 15_000;

export class Freshness {
  private readonly last = new Map<string, { at: number; gap: number | null }>();

  /** A report for `key` came at page time `now` (ms). */
  seen(key: string, now: number): void {
    const prev = this.last.get(key);
    this.last.set(key, { at: now, gap: prev === undefined ? null : now - prev.at });
  }

  /** Milliseconds since the last report when that is stale, else null. */
  staleFor(key: string, now: number): number | null {
    const l = this.last.get(key);
    if (l === undefined) return null;
    const age = now - l.at;
    return age > Math.max(MIN_STALE_MS, 3 * (l.gap ?? 0)) ? age : null;
  }
}
