/** ISO 8601 UTC with microseconds: CAN timestamps are microsecond-accurate and candump export needs them. */
export function isoFromUs(tsUs: number): string {
  const ms = Math.floor(tsUs / 1000);
  const us = Math.floor(tsUs - ms * 1000);
  const iso = new Date(ms).toISOString(); // "2026-11-27T13:47:02.123Z"
  return iso.slice(0, 23) + String(us).padStart(3, '0') + 'Z';
}

export function isoNow(): string {
  return new Date().toISOString().slice(0, 23) + '000Z';
}

/** Microseconds since the epoch from the ISO form above (or any Date-parsable text); NaN when invalid. */
export function usFromIso(text: string): number {
  const m = /\.(\d{3})(\d{3})Z$/.exec(text);
  const ms = Date.parse(text);
  if (Number.isNaN(ms)) return NaN;
  return ms * 1000 + (m ? Number(m[2]) : 0);
}
