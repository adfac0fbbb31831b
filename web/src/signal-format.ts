/** How a decoded signal value reads on the page: "864 rpm", "-6.2 deg", "D" (a value-table label). */
// As the agent sends them (shownValue in core/can/dbc-decode.ts): a number whose text is the exact value,
// shown with every digit of that text (up to 17: 1.999969482421875; fewer rounded 1099511627775 to
// 1099511628000), and integers whole (no exponent: 1e+22 reads as a number, 1.5e-7 as 0.00000015).
const WHOLE = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0, useGrouping: false });

/**
 * A fraction as JavaScript writes it (the shortest text that reads back as it: the value the agent sent),
 * its exponent written out ("1.5e-7" → "0.00000015"). Intl rounds the double's binary expansion instead,
 * which at 17 digits is not always that text.
 */
function fraction(v: number): string {
  const m = /^(-?)(\d)(?:\.(\d+))?e-(\d+)$/.exec(String(v));
  if (m === null) return String(v);
  return `${m[1]}0.${'0'.repeat(Number(m[4]) - 1)}${m[2]}${m[3] ?? ''}`;
}

/** A signal's unit from an event's `units`: own keys only (a signal named "constructor" must not read Object's). */
export function unitOf(units: Record<string, string> | undefined, name: string): string {
  return units !== undefined && Object.hasOwn(units, name) ? units[name]! : '';
}

export function formatSignal(value: number | string, unit: string): string {
  const v = typeof value === 'number' ? (Number.isInteger(value) ? WHOLE.format(value) : fraction(value)) : value;
  return unit !== '' && signalNumber(value) !== undefined ? `${v} ${unit}` : v;
}

/**
 * A signal value as a number to plot: a number, or the exact decimal text the agent sends where no number
 * is exact (16 or more significant digits: a 64-bit counter, "18446744073709551.615"; plotted at double
 * precision, shown exactly); undefined for a value-table label (one of 16 or more digits cannot be told from such a value and is plotted) or "NaN".
 */
export function signalNumber(value: number | string): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
  return /^-?\d+(?:\.\d+)?(?:e[+-]\d+)?$/.test(value) && value.replace(/e.*$/, '').replace(/\D/g, '').length >= 16 ? Number(value) : undefined;
}
