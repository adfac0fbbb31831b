/**
 * Is the console sampling, and by how much? Two sources agree: the `log` events with code
 * `sampling_on` / `sampling_off` (which carry input/output rates), and the frames themselves — a
 * can_frame carries `represents` exactly while its stream samples. The frames win, because a page that
 * connects while sampling is already on never saw the `sampling_on` log.
 */
import type { CanFrameData, LogData } from '../events.js';

export class SamplingTracker {
  active = false;
  /** Rates from the last sampling_on log, until measured ones are known. */
  announced: { input: number; output: number; max: number } | null = null;
  version = 0;

  onFrame(f: CanFrameData): void {
    const sampled = f.represents !== undefined;
    if (sampled !== this.active) {
      this.active = sampled;
      this.version++;
    }
  }

  onLog(l: LogData): void {
    if (l.code === 'sampling_on') {
      const d = l.details ?? {};
      const num = (k: string): number => (typeof d[k] === 'number' ? (d[k] as number) : NaN);
      this.announced = { input: num('input_rate'), output: num('output_rate'), max: num('max_rate') };
      this.active = true;
      this.version++;
    } else if (l.code === 'sampling_off') {
      this.active = false;
      this.announced = null;
      this.version++;
    }
  }
}

/** Events per second by arrival time, over the last few seconds (1 s buckets). */
export class RateMeter {
  private readonly buckets = new Float64Array(8);
  private bucketSec = 0;
  private firstSec = 0;

  constructor(private readonly spanSec = 3) {}

  add(n: number, nowMs: number): void {
    this.roll(nowMs);
    const i = this.bucketSec % this.buckets.length;
    this.buckets[i] = this.buckets[i]! + n;
  }

  /**
   * Average over the last `spanSec` whole seconds (the current, partial second excluded); over fewer
   * while the meter is younger than that, so a fresh page does not show a rate ramping up from zero.
   */
  rate(nowMs: number): number {
    this.roll(nowMs);
    const n = Math.min(this.spanSec, this.bucketSec - this.firstSec);
    if (n <= 0) {
      const elapsed = (nowMs - this.firstSec * 1000) / 1000;
      return elapsed > 0.25 ? this.buckets[this.bucketSec % this.buckets.length]! / elapsed : 0;
    }
    let sum = 0;
    for (let k = 1; k <= n; k++) sum += this.buckets[(this.bucketSec - k + this.buckets.length * 4) % this.buckets.length]!;
    return sum / n;
  }

  private roll(nowMs: number): void {
    const sec = Math.floor(nowMs / 1000);
    if (this.bucketSec === 0) this.bucketSec = this.firstSec = sec;
    if (sec - this.bucketSec >= this.buckets.length) this.buckets.fill(0);
    else for (let s = this.bucketSec + 1; s <= sec; s++) this.buckets[s % this.buckets.length] = 0;
    if (sec > this.bucketSec) this.bucketSec = sec;
  }
}
