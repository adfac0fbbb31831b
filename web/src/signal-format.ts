/** How a decoded signal value reads on the page: "864 rpm", "-6.2 deg", "D" (a value-table label). */
// As the agent sends them (tidyValue in core/console/normalize.ts): up to 15 significant digits, which a
// 64-bit or finely scaled signal uses (fewer here rounded 1099511627775 to 1099511628000), and integers
// whole, every digit (no exponent: 1e+22 reads as a number).
const FRACTION = new Intl.NumberFormat('en-US', { maximumSignificantDigits: 15, useGrouping: false });
const WHOLE = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0, useGrouping: false });

/** A signal's unit from an event's `units`: own keys only (a signal named "constructor" must not read Object's). */
export function unitOf(units: Record<string, string> | undefined, name: string): string {
  return units !== undefined && Object.hasOwn(units, name) ? units[name]! : '';
}

export function formatSignal(value: number | string, unit: string): string {
  const v = typeof value === 'number' ? (Number.isInteger(value) ? WHOLE : FRACTION).format(value) : value;
  return unit !== '' && signalNumber(value) !== undefined ? `${v} ${unit}` : v;
}

/**
 * A signal value as a number to plot: a number, or the decimal text the agent sends for an integer a double
 * cannot hold exactly (a 64-bit counter: plotted at double precision, shown exactly); undefined for a
 * value-table label or "NaN".
 */
export function signalNumber(value: number | string): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
  return /^-?\d{16,20}$/.test(value) ? Number(value) : undefined;
}
