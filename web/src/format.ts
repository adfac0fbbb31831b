/** Number and time formatting for the page (fixed English locale: "5,000", "10.0 ms"). */
const INT = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

export function formatInt(n: number): string {
  return Number.isFinite(n) ? INT.format(n) : '—';
}

/** Rounds to `digits` significant digits (for "about" figures such as the sampling banner). */
export function roughly(n: number, digits = 2): number {
  if (!Number.isFinite(n) || n === 0) return 0;
  const mag = 10 ** (Math.floor(Math.log10(Math.abs(n))) - digits + 1);
  return mag < 1 ? Math.round(n) : Math.round(n / mag) * mag;
}

/** A rate in Hz: "312", "10.0", "0.98", "—" when unknown. */
export function formatRate(hz: number | null): string {
  if (hz === null || !Number.isFinite(hz)) return '—';
  if (hz >= 100) return INT.format(Math.round(hz));
  if (hz >= 10) return hz.toFixed(1);
  return hz.toFixed(2);
}

/** A period from a rate: "3.2 ms", "100 ms", "1.00 s", "—". */
export function formatPeriod(hz: number | null): string {
  if (hz === null || !Number.isFinite(hz) || hz <= 0) return '—';
  const ms = 1000 / hz;
  if (ms < 10) return ms.toFixed(2) + ' ms';
  if (ms < 100) return ms.toFixed(1) + ' ms';
  if (ms < 1000) return Math.round(ms) + ' ms';
  if (ms < 60_000) return (ms / 1000).toFixed(2) + ' s';
  return (ms / 60_000).toFixed(1) + ' min';
}

const p2 = (n: number): string => String(n).padStart(2, '0');

/** Local wall time with microseconds from the event's ISO timestamp: "13:47:02.123456". */
export function formatClock(ts: string): string {
  const ms = Date.parse(ts);
  if (!Number.isFinite(ms)) return ts;
  const d = new Date(ms);
  const frac = /\.(\d{1,9})Z$/.exec(ts)?.[1]?.slice(0, 6).padEnd(6, '0') ?? String(d.getMilliseconds()).padStart(3, '0') + '000';
  return `${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())}.${frac}`;
}

/** The local date of `d`: "2026-11-28" (year first: no reader mistakes it for another day). */
export function formatDay(d: Date): string {
  return `${d.getFullYear()}-${p2(d.getMonth() + 1)}-${p2(d.getDate())}`;
}

/**
 * The event's time as formatClock, with its local date in front when that is not today's
 * ("2026-11-28 13:47:02.123456"): a time of yesterday must not read like today's.
 */
export function formatWhen(ts: string, now: Date = new Date()): string {
  const ms = Date.parse(ts);
  if (!Number.isFinite(ms)) return ts;
  const day = formatDay(new Date(ms));
  return day === formatDay(now) ? formatClock(ts) : `${day} ${formatClock(ts)}`;
}

/** "5 s ago", "3 min ago" for a past epoch ms. */
export function formatAge(ms: number, now: number = Date.now()): string {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}
