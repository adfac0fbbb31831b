/**
 * The id filter of the console page (trace, by-id table) and of the agent's recordings. Ids are hex, as every CAN tool writes them (`0x`
 * optional). Terms are separated by commas or spaces; a frame passes when it matches any positive term
 * (or there is none) and no negative one:
 *
 *   7E8              one id
 *   0x100,0x200      a list
 *   7E0-7EF          a range, both ends included
 *   700/7F0          id/mask: (frame id & mask) == (700 & mask), as in SocketCAN filters
 *   7E0:7F0          the same, in candump's `<can_id>:<can_mask>` spelling
 *   7E0~7F0          candump's inverted mask: ids that do NOT match 7E0:7F0
 *   !7DF  !100-1FF   a leading "!" excludes
 *
 * The filter selects data and remote frames by CAN id. An error frame has no CAN id: what sits in its id
 * field is its error class (0x004 is "controller problem"), so matching it would show class 0x004 under
 * the filter "004" and hide every error frame under "7E0-7EF". Error frames are events of the bus and pass
 * every filter (`matchesFrame`): they explain what happened to the frames that were selected.
 */

export type IdTerm =
  | { kind: 'id'; id: number; negate: boolean }
  | { kind: 'range'; from: number; to: number; negate: boolean }
  | { kind: 'mask'; id: number; mask: number; negate: boolean };

export interface IdFilter {
  /** The text as typed, trimmed. */
  text: string;
  terms: IdTerm[];
  /** True when the filter lets every id through (empty text). */
  all: boolean;
  matches(id: number): boolean;
  /** Whether a frame passes: a data or remote frame when its id matches, an error frame always. */
  matchesFrame(id: number, isError: boolean): boolean;
}

export type FilterParse = { ok: true; filter: IdFilter } | { ok: false; error: string };

const MAX_ID = 0x1fffffff;

function hex(text: string, what: string): number | string {
  const m = /^(?:0[xX])?([0-9a-fA-F]{1,8})$/.exec(text);
  if (!m) return `${what} "${text}" is not a hex id (e.g. 7E8 or 0x18DAF110)`;
  const v = parseInt(m[1]!, 16);
  if (v > MAX_ID) return `${what} ${text} is larger than 29 bits (1FFFFFFF)`;
  return v;
}

function term(raw: string): IdTerm | string {
  let t = raw;
  let negate = false;
  if (t.startsWith('!')) {
    negate = true;
    t = t.slice(1);
  }
  if (t === '') return '"!" must be followed by an id, a range or a mask';
  const op = /^([^-/:~]+)([-/:~])([^-/:~]+)$/.exec(t);
  if (!op) {
    if (/[-/:~]/.test(t)) return `"${raw}" is not an id, a range (7E0-7EF) or a mask (700/7F0)`;
    const v = hex(t, 'id');
    return typeof v === 'string' ? v : { kind: 'id', id: v, negate };
  }
  const [, left, sym, right] = op;
  const a = hex(left!, sym === '-' ? 'range start' : 'id');
  if (typeof a === 'string') return a;
  const b = hex(right!, sym === '-' ? 'range end' : 'mask');
  if (typeof b === 'string') return b;
  if (sym === '-') {
    if (b < a) return `range ${raw}: the end is below the start`;
    return { kind: 'range', from: a, to: b, negate };
  }
  return { kind: 'mask', id: a, mask: b, negate: sym === '~' ? !negate : negate };
}

function termMatches(t: IdTerm, id: number): boolean {
  switch (t.kind) {
    case 'id':
      return id === t.id;
    case 'range':
      return id >= t.from && id <= t.to;
    case 'mask':
      // >>> 0: compare as unsigned, masks of 29 bits stay positive but keep it exact whatever the input.
      return (id & t.mask) >>> 0 === (t.id & t.mask) >>> 0;
  }
}

export function parseIdFilter(input: string): FilterParse {
  const text = input.trim();
  // Spaces around the operators are allowed: "7E0 - 7EF", "700 / 7F0".
  const compact = text.replace(/\s*([-/:~])\s*/g, '$1').replace(/!\s+/g, '!');
  const parts = compact.split(/[\s,;]+/).filter((p) => p !== '');
  const terms: IdTerm[] = [];
  for (const p of parts) {
    const t = term(p);
    if (typeof t === 'string') return { ok: false, error: t };
    terms.push(t);
  }
  const pos = terms.filter((t) => !t.negate);
  const neg = terms.filter((t) => t.negate);
  const all = terms.length === 0;
  const matches = (id: number): boolean => {
    if (all) return true;
    if (pos.length > 0 && !pos.some((t) => termMatches(t, id))) return false;
    return !neg.some((t) => termMatches(t, id));
  };
  return {
    ok: true,
    filter: { text, terms, all, matches, matchesFrame: (id: number, isError: boolean): boolean => isError || matches(id) },
  };
}

export const MATCH_ALL: IdFilter = (parseIdFilter('') as { ok: true; filter: IdFilter }).filter;

/** "0x7E8" -> 0x7E8 (the console's id strings); NaN when it is not one. */
export function idValue(id: string): number {
  return /^0x[0-9A-Fa-f]{1,8}$/.test(id) ? parseInt(id.slice(2), 16) : NaN;
}
