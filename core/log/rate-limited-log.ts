/** Logs a repeating message at most once per interval, with how many were held back, so a fault (or a flood of clients) cannot flood the journal. */
import type { Logger } from 'pino';

export class RateLimitedLog {
  private last = 0;
  private suppressed = 0;

  constructor(
    private readonly log: Logger,
    private readonly intervalMs: number,
  ) {}

  warn(fields: Record<string, unknown>, msg: string): void {
    this.write('warn', fields, msg);
  }

  write(level: 'info' | 'warn' | 'error', fields: Record<string, unknown>, msg: string): void {
    const now = Date.now();
    if (now - this.last < this.intervalMs) {
      this.suppressed++;
      return;
    }
    this.log[level]({ ...fields, suppressed: this.suppressed }, msg);
    this.last = now;
    this.suppressed = 0;
  }
}
