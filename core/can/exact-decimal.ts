/**
 * Exact decimal numbers (m × 10^e, m a BigInt) for DBC scaling: a factor or offset as the file writes it
 * ("0.001", "1E-7", "-40"), and a physical value raw × factor + offset computed without rounding, written
 * as JavaScript writes numbers. A double holds about 15 significant digits: a 64-bit raw value, or a scale
 * of many digits, gives values it cannot carry (canmatrix computes them with Python's Decimal).
 */

export interface Decimal {
  /** The digits, as an integer; no trailing zero (they are in `e`), 0n for zero. */
  readonly m: bigint;
  readonly e: number;
}

/** Larger exponents are beyond any double (1e-400 reads as 0, 1e400 as Infinity): no DBC scale needs them. */
export const MAX_EXPONENT = 400;
/**
 * More significant digits than any scale is written with or a value needs (the exact expansion of a double
 * has up to 767): bounds the work and the length of a value's text.
 */
export const MAX_DIGITS = 100;

const DECIMAL_RE = /^([-+]?)(\d*)(?:\.(\d*))?(?:[eE]([-+]?\d+))?$/;

function normalized(m: bigint, e: number): Decimal {
  if (m === 0n) return { m: 0n, e: 0 };
  while (m % 10n === 0n) {
    m /= 10n;
    e++;
  }
  return { m, e };
}

/**
 * A number as DBC text writes it (`[-+]digits[.digits][e[-+]digits]`), exactly; undefined when it is not
 * one, or has more than MAX_DIGITS significant digits or an exponent beyond ±MAX_EXPONENT.
 */
export function parseDecimal(text: string): Decimal | undefined {
  const p = DECIMAL_RE.exec(text);
  if (p === null || (p[2] === '' && (p[3] ?? '') === '')) return undefined;
  const frac = p[3] ?? '';
  const digits = (p[2]! + frac).replace(/^0+/, '');
  if (digits.length > MAX_DIGITS) return undefined;
  const exp = p[4] === undefined ? 0 : Number(p[4]);
  if (!Number.isSafeInteger(exp)) return undefined;
  const d = normalized(BigInt(`${p[1] === '-' ? '-' : ''}${digits === '' ? '0' : digits}`), exp - frac.length);
  return d.m !== 0n && Math.abs(d.e + d.m.toString().replace('-', '').length) > MAX_EXPONENT ? undefined : d;
}

/** Significant digits of an integer (0n: 1). */
export function digitCount(m: bigint): number {
  return (m < 0n ? -m : m).toString().length;
}

/** m × 10^(e − to): `d` as a count of 10^to units (`to` ≤ d.e). */
export function inUnits(d: Decimal, to: number): bigint {
  return d.m * 10n ** BigInt(d.e - to);
}

/** raw × factor + offset, exactly (`unit`: min(factor.e, offset.e); `f`, `o`: factor and offset in those units). */
export function scaled(raw: bigint, f: bigint, o: bigint, unit: number): Decimal {
  return normalized(raw * f + o, unit);
}

/**
 * `d` written as JavaScript writes a number (Number.prototype.toString): plain from 1e-7 up to 1e21, else
 * in exponent form ("1.5e-7", "1.2345e+25"). So `String(Number(t)) === t` exactly when the double nearest
 * to `d` is written as `d`: a JSON number that reads back as this very decimal.
 */
export function decimalText(d: Decimal): string {
  if (d.m === 0n) return '0';
  const sign = d.m < 0n ? '-' : '';
  const digits = (d.m < 0n ? -d.m : d.m).toString();
  const k = digits.length;
  // The value is 0.<digits> × 10^n.
  const n = d.e + k;
  let body: string;
  if (k <= n && n <= 21) body = digits + '0'.repeat(n - k);
  else if (0 < n && n <= 21) body = `${digits.slice(0, n)}.${digits.slice(n)}`;
  else if (-6 < n && n <= 0) body = `0.${'0'.repeat(-n)}${digits}`;
  else body = `${digits[0]}${k > 1 ? `.${digits.slice(1)}` : ''}e${n - 1 >= 0 ? '+' : '-'}${Math.abs(n - 1)}`;
  return sign + body;
}
