/**
 * The send form's id field: what was typed → the id and frame format to send, or why not. The id's
 * written length decides as in can-utils (cansend, candump): 3 hex digits or fewer are a standard 11-bit
 * id, more are an extended 29-bit one (`00000123` is the extended id 0x123, never the standard 0x123;
 * `1234` is extended because it was written so, not because it does not fit). "Extended" ticked makes a
 * short id extended too; a short id above 7FF without it is refused rather than guessed at.
 */

export type SendId = { ok: true; id: number; extended: boolean; canId: string } | { ok: false; error: string };

export function parseSendId(text: string, extendedTicked: boolean): SendId {
  const digits = text.trim().replace(/^0x/i, '');
  if (!/^[0-9a-fA-F]{1,8}$/.test(digits)) return { ok: false, error: 'ID: hex, e.g. 7DF or 18DAF110.' };
  const id = parseInt(digits, 16);
  const extended = extendedTicked || digits.length > 3;
  if (id > 0x1fffffff) return { ok: false, error: 'ID: at most 1FFFFFFF (29 bits).' };
  if (!extended && id > 0x7ff) return { ok: false, error: 'ID: a standard id is at most 7FF; for a 29-bit id write 8 digits (00000800) or tick "Extended".' };
  const canId =
    '0x' +
    id
      .toString(16)
      .toUpperCase()
      .padStart(extended ? 8 : 3, '0');
  return { ok: true, id, extended, canId };
}
