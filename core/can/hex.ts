/** Hex helpers for the hot path: table lookups, no per-byte toString/padStart. The one home of the hex tables. */

/** nibble -> upper-case hex digit. */
export const HEX_DIGIT = '0123456789ABCDEF';
/** byte -> two upper-case hex digits. */
export const BYTE_HEX: readonly string[] = Array.from({ length: 256 }, (_, b) => HEX_DIGIT[b >> 4]! + HEX_DIGIT[b & 15]!);
/** ASCII code -> nibble value, -1 when not a hex digit (parsers index it with charCodeAt). */
export const HEX_VALUE: Int8Array = (() => {
  const t = new Int8Array(128).fill(-1);
  for (let i = 0; i < 10; i++) t[48 + i] = i;
  for (let i = 0; i < 6; i++) {
    t[65 + i] = 10 + i;
    t[97 + i] = 10 + i;
  }
  return t;
})();

/** "02 10 03" — upper case, single spaces, "" for no bytes. */
export function bytesToSpacedHex(data: Uint8Array): string {
  const n = data.length;
  if (n === 0) return '';
  let s = BYTE_HEX[data[0]!]!;
  for (let i = 1; i < n; i++) s += ' ' + BYTE_HEX[data[i]!]!;
  return s;
}

/** "021003" — upper case, no separators. */
export function bytesToHex(data: Uint8Array): string {
  let s = '';
  for (let i = 0; i < data.length; i++) s += BYTE_HEX[data[i]!]!;
  return s;
}

/** "0x7E8" for standard ids, "0x18DAF110" for extended ids and error classes. */
export function canIdToString(id: number, wide: boolean): string {
  return (
    '0x' +
    id
      .toString(16)
      .toUpperCase()
      .padStart(wide ? 8 : 3, '0')
  );
}

/**
 * Parses hex bytes written with or without separators ("02 10 03", "021003", "02:10:03", "0210 03").
 * Returns null when the text is not whole bytes of hex: each run between separators must be whole bytes,
 * so "1 2 3 4" is refused rather than read as 12 34 (what is given is what is sent, or refused).
 */
export function parseHexBytes(text: string): Uint8Array | null {
  const runs = text.split(/[\s:.-]+/).filter((r) => r !== '');
  if (runs.some((r) => r.length % 2 !== 0)) return null;
  const compact = runs.join('');
  if (!/^[0-9a-fA-F]*$/.test(compact)) return null;
  const out = new Uint8Array(compact.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(compact.substr(i * 2, 2), 16);
  return out;
}

/** Parses "0x7E8", "7E8" or "2024" (hex, as every CAN tool writes ids). Null when it is not hex. */
export function parseCanId(text: string): number | null {
  const m = /^(?:0[xX])?([0-9a-fA-F]{1,8})$/.exec(text.trim());
  return m ? parseInt(m[1]!, 16) : null;
}
