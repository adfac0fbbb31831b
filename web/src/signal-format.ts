/** How a decoded signal value reads on the page: "864 rpm", "-6.2 deg", "D" (a value-table label). */
const NUM = new Intl.NumberFormat('en-US', { maximumSignificantDigits: 10, useGrouping: false });

/** A signal's unit from an event's `units`: own keys only (a signal named "constructor" must not read Object's). */
export function unitOf(units: Record<string, string> | undefined, name: string): string {
  return units !== undefined && Object.hasOwn(units, name) ? units[name]! : '';
}

export function formatSignal(value: number | string, unit: string): string {
  const v = typeof value === 'number' ? NUM.format(value) : value;
  return unit !== '' && typeof value === 'number' ? `${v} ${unit}` : v;
}
