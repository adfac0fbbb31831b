/**
 * The id filter of the console page (trace, by-id table), of the agent's recordings and of a console's
 * ?ids=. Ids are hex, as every CAN tool writes them (`0x` optional). Terms are separated by commas or
 * spaces; a frame passes when it matches any positive term (or there is none) and no negative one:
 *
 *   7E8              one id
 *   0x100,0x200      a list
 *   7E0-7EF          a range, both ends included
 *   700/7F0          id/mask: (frame id & mask) == (700 & mask), as in SocketCAN filters
 *   7E0:7F0          the same, in candump's `<can_id>:<can_mask>` spelling
 *   7E0~7F0          candump's inverted mask: ids that do NOT match 7E0:7F0 (a selection, as in candump:
 *                    "7E8,7E0~7F0" is 7E8 and every id outside 7E0-7EF)
 *   !7DF  !100-1FF   a leading "!" excludes
 *
 * Standard (11-bit) and extended (29-bit) ids are different frames, also with the same number (OBD's 7E8
 * and a J1939 frame 0x000007E8 on one bus). Every term is of one kind, read as candump writes ids:
 *   - an id written with 8 hex digits is extended (00000123 is the extended 0x123); an id of up to 7
 *     digits is standard when it is at most 7FF, extended above (18DAF110 needs no leading zero);
 *   - a range takes the kind of its ends, and ends of two kinds are refused (the error says which two
 *     entries to write instead);
 *   - id/mask is extended when the id is, or the mask is written with 8 digits, or the mask is above FFF;
 *     otherwise standard;
 *   - numbers above 1FFFFFFF are refused: there sit candump's flags (80000000 extended, 40000000 remote,
 *     20000000 error), which are not read as part of an id. So is candump's `#<error mask>`.
 * A term matches frames of its own kind only: "!123" leaves the extended 0x00000123 in.
 * (The page's send form reads ids in its own way: web/src/state/send-id.ts.)
 *
 * The filter selects data and remote frames by CAN id. An error frame has no CAN id: what sits in its id
 * field is its error class (0x004 is "controller problem"), so matching it would show class 0x004 under
 * the filter "004" and hide every error frame under "7E0-7EF". Error frames are events of the bus and pass
 * every filter (`matchesFrame`): they explain what happened to the frames that were selected.
 */

export type IdTerm =
  | { kind: 'id'; id: number; ext: boolean; negate: boolean }
  | { kind: 'range'; from: number; to: number; ext: boolean; negate: boolean }
  /** `invert`: candump's `~`, every frame the plain id/mask term does not match (the other kind's too): a selection, not an exclusion. */
  | { kind: 'mask'; id: number; mask: number; ext: boolean; negate: boolean; invert: boolean };

export interface IdFilter {
  /** The text as typed, trimmed. */
  text: string;
  terms: IdTerm[];
  /** True when the filter lets every id through (empty text). */
  all: boolean;
  /** Whether a data or remote frame of this id passes; `ext`: the frame has an extended (29-bit) id. */
  matches(id: number, ext: boolean): boolean;
  /** Whether a frame passes: a data or remote frame when its id (and its kind) matches, an error frame always. */
  matchesFrame(id: number, ext: boolean, isError: boolean): boolean;
}

export type FilterParse = { ok: true; filter: IdFilter } | { ok: false; error: string };

/**
 * Entries a filter may have. Each frame shown to a filtering client is checked against its ranges and
 * masks one by one (its plain ids at once): 2,600 entries in a ?ids= cost ~15 µs per event per client.
 * A range or a mask covers many ids in one entry.
 */
export const MAX_FILTER_TERMS = 256;
const MAX_ID = 0x1fffffff;
const MAX_STD = 0x7ff;
/** Masks above this are extended ones even when written short (a standard mask is 7FF, FFF at most). */
const MAX_STD_MASK = 0xfff;

/** A hex number as written: its value and whether it was written with all 8 digits (extended, as in candump). */
interface Hex {
  v: number;
  eight: boolean;
}

const std = (v: number): string => v.toString(16).toUpperCase().padStart(3, '0');
const eff = (v: number): string => v.toString(16).toUpperCase().padStart(8, '0');

function hex(text: string, what: string): Hex | string {
  const m = /^(?:0[xX])?([0-9a-fA-F]{1,8})$/.exec(text);
  if (!m) return `${what} "${text}" is not a hex id (e.g. 7E8 or 0x18DAF110)`;
  const v = parseInt(m[1]!, 16);
  if (v > MAX_ID) {
    // candump and SocketCAN put flags in the top bits (CAN_EFF_FLAG 80000000, CAN_RTR_FLAG 40000000,
    // CAN_ERR_FLAG 20000000): say so rather than read them as part of an id.
    const instead =
      what === 'mask'
        ? `Write the mask without them (${eff(v & MAX_ID)}): a mask of 8 digits is extended already`
        : `Write an extended id with 8 digits (${eff(v & MAX_ID)}); remote frames pass by their id and error frames pass every filter`;
    return `${what} ${text} is larger than 29 bits (1FFFFFFF): the bits above are candump's flags (80000000 extended, 40000000 remote, 20000000 error), which this filter does not take. ${instead}`;
  }
  return { v, eight: m[1]!.length === 8 };
}

/** Standard or extended, as an id is written (see the rule above). */
const isExt = (h: Hex): boolean => h.eight || h.v > MAX_STD;

function term(raw: string): IdTerm | string {
  let t = raw;
  let negate = false;
  if (t.startsWith('!')) {
    negate = true;
    t = t.slice(1);
  }
  if (t === '') return '"!" must be followed by an id, a range or a mask';
  if (t.includes('#')) return `"${raw}": candump's "#<error mask>" is not needed here, error frames pass every id filter`;
  const op = /^([^-/:~]+)([-/:~])([^-/:~]+)$/.exec(t);
  if (!op) {
    if (/[-/:~]/.test(t)) return `"${raw}" is not an id, a range (7E0-7EF) or a mask (700/7F0)`;
    const h = hex(t, 'id');
    return typeof h === 'string' ? h : { kind: 'id', id: h.v, ext: isExt(h), negate };
  }
  const [, left, sym, right] = op;
  const a = hex(left!, sym === '-' ? 'range start' : 'id');
  if (typeof a === 'string') return a;
  const b = hex(right!, sym === '-' ? 'range end' : 'mask');
  if (typeof b === 'string') return b;
  if (sym === '-') {
    if (b.v < a.v) return `range ${raw}: the end is below the start`;
    const ext = isExt(a);
    if (ext !== isExt(b)) {
      // What the range meant before ids had a kind: the standard ids and the extended ids of that span.
      const n = negate ? '!' : '';
      const stdPart = a.v === Math.min(b.v, MAX_STD) ? std(a.v) : `${std(a.v)}-${std(Math.min(b.v, MAX_STD))}`;
      return (
        `range ${raw} mixes a standard id (up to 7FF) and an extended one (8 digits, or above 7FF); a range is one or the other. ` +
        `For both, write two entries: ${n}${stdPart},${n}${eff(a.v)}-${eff(b.v)}`
      );
    }
    return { kind: 'range', from: a.v, to: b.v, ext, negate };
  }
  const ext = isExt(a) || b.eight || b.v > MAX_STD_MASK;
  return { kind: 'mask', id: a.v, mask: b.v, ext, negate, invert: sym === '~' };
}

function termMatches(t: IdTerm, id: number, ext: boolean): boolean {
  switch (t.kind) {
    case 'id':
      return t.ext === ext && id === t.id;
    case 'range':
      return t.ext === ext && id >= t.from && id <= t.to;
    case 'mask': {
      // >>> 0: compare as unsigned, masks of 29 bits stay positive but keep it exact whatever the input.
      const m = t.ext === ext && (id & t.mask) >>> 0 === (t.id & t.mask) >>> 0;
      return t.invert ? !m : m;
    }
  }
}

/** Whether any of `terms` matches: plain ids looked up at once (a list of ids is the common filter), the rest in turn. */
function matcher(terms: readonly IdTerm[]): { none: boolean; any(id: number, ext: boolean): boolean } {
  const std = new Set<number>();
  const ext = new Set<number>();
  const rest: IdTerm[] = [];
  for (const t of terms) {
    if (t.kind === 'id') (t.ext ? ext : std).add(t.id);
    else rest.push(t);
  }
  return {
    none: terms.length === 0,
    any: (id, isExt) => (isExt ? ext : std).has(id) || rest.some((t) => termMatches(t, id, isExt)),
  };
}

export function parseIdFilter(input: string): FilterParse {
  const text = input.trim();
  // Spaces around the operators are allowed: "7E0 - 7EF", "700 / 7F0".
  const compact = text.replace(/\s*([-/:~])\s*/g, '$1').replace(/!\s+/g, '!');
  const parts = compact.split(/[\s,;]+/).filter((p) => p !== '');
  if (parts.length > MAX_FILTER_TERMS)
    return { ok: false, error: `${parts.length} entries: a filter has at most ${MAX_FILTER_TERMS}; a range (7E0-7EF) or a mask (700/7F0) covers many ids in one` };
  const terms: IdTerm[] = [];
  for (const p of parts) {
    const t = term(p);
    if (typeof t === 'string') return { ok: false, error: t };
    terms.push(t);
  }
  const pos = matcher(terms.filter((t) => !t.negate));
  const neg = matcher(terms.filter((t) => t.negate));
  const all = terms.length === 0;
  const matches = (id: number, ext: boolean): boolean => {
    if (all) return true;
    if (!pos.none && !pos.any(id, ext)) return false;
    return neg.none || !neg.any(id, ext);
  };
  return {
    ok: true,
    filter: { text, terms, all, matches, matchesFrame: (id: number, ext: boolean, isError: boolean): boolean => isError || matches(id, ext) },
  };
}

export const MATCH_ALL: IdFilter = (parseIdFilter('') as { ok: true; filter: IdFilter }).filter;

/** "0x7E8" -> 0x7E8 (the console's id strings); NaN when it is not one. */
export function idValue(id: string): number {
  return /^0x[0-9A-Fa-f]{1,8}$/.test(id) ? parseInt(id.slice(2), 16) : NaN;
}
