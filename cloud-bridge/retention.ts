/**
 * What the bridge deletes once it is past its retention, with one cadence and one batching rule:
 * finished commands `--command-retention` after their deadline (commands.ts), expired viewer tokens
 * VIEWER_TOKEN_RETENTION_MS after their expiry (bridge.ts). Each kind is swept at start, then every half
 * of its retention (at least every second, at most every hour), a batch per event-loop turn so a large
 * backlog never holds the loop.
 */

/** Rows deleted per event-loop turn while sweeping. */
export const PRUNE_BATCH = 500;

/**
 * How long an expired viewer token stays listed (`expired: true` in GET /api/v1/viewer-tokens) before it is
 * deleted: an operator looking at yesterday's support session still sees its token; without a bound every
 * token ever issued with `ttl_s` stayed, in the database and, with PostgreSQL, in every node's memory.
 */
export const VIEWER_TOKEN_RETENTION_MS = 86_400_000;

/** The sweep interval for a retention: half of it, within 1 s … 1 h. */
export const sweepEveryMs = (retentionMs: number): number => Math.min(3_600_000, Math.max(1000, retentionMs / 2));

export class RetentionSweep {
  /** Rows deleted since start (metrics). */
  pruned = 0;
  private readonly timer: NodeJS.Timeout;
  private stopped = false;

  /**
   * `prune(before, limit)` deletes up to `limit` rows past the retention (their time before `before`, an
   * ISO time) and returns how many; `swept(n)` is told what one sweep deleted, when it deleted anything.
   */
  constructor(
    private readonly retentionMs: number,
    private readonly prune: (before: string, limit: number) => number,
    private readonly swept: (n: number) => void = () => undefined,
    private readonly now: () => number = Date.now,
  ) {
    this.timer = setInterval(() => this.run(), sweepEveryMs(retentionMs));
    this.timer.unref();
  }

  /** One sweep now (also at start), continued a batch per turn while batches come back full. */
  run(done = 0): void {
    if (this.stopped) return;
    const n = this.prune(new Date(this.now() - this.retentionMs).toISOString(), PRUNE_BATCH);
    this.pruned += n;
    if (n === PRUNE_BATCH) setImmediate(() => this.run(done + n));
    else if (done + n > 0) this.swept(done + n);
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }
}
