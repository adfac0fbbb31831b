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
  return unit !== '' && typeof value === 'number' ? `${v} ${unit}` : v;
}
