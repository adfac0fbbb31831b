/**
 * The candump log format, as can-utils writes it with `candump -L` (and `-l` files):
 *
 *   (1436509052.249713) can0 123#DEADBEEF
 *   (1436509052.249713) can0 1F334455#R            extended id, remote request
 *   (1436509052.249713) can0 123#R3                remote request for 3 bytes
 *   (1436509052.249713) can0 123#1122334455667788_E classic frame with raw DLC 14
 *   (1436509052.249713) can0 123##5112233          CAN FD, flags nibble (BRS=1, ESI=2, FDF=4)
 *   (1436509052.249713) can0 20000080#0000000000000000  error frame (CAN_ERR_FLAG in the id)
 *   (1436509052.249713) can0 123#DEADBEEF T        direction from `candump -L -x` (T = tx, R = rx)
 *
 * Parsing follows can-utils lib.c parse_canframe(): 3 hex digits = standard id, 8 = extended unless the
 * CAN_ERR_FLAG bit (0x20000000) is set, `R`/`r` = remote, `##` = FD, one optional `.` before each data
 * byte, `_<9-F>` raw DLC after exactly 8 classic bytes. Where can-utils silently ignores garbage (trailing
 * text, a 9th classic byte, an out-of-range raw DLC) we reject the line instead: a replay should say what
 * is wrong with a file rather than guess. CAN XL lines (5-digit prio id) are rejected: CanFrame has no XL.
 *
 * Hot path: the reader decodes chunks as latin1 and parses lines in place with charCodeAt and a lookup
 * table; no regex and no per-line substring except the interned bus name.
 */
import { CAN_ERR_FLAG } from './candump-format.js';
import { type CanFrame, CAN_EFF_MASK, CAN_SFF_MASK, fdLengthToDlc } from './frame.js';
import { HEX_VALUE } from './hex.js';

export { formatCandumpLine, type CandumpFormatOptions } from './candump-format.js';

/** Characters allowed in an interface name; mirrors frameProblem() in frame.ts. */
const BUS_CHAR = new Uint8Array(128);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-') BUS_CHAR[c.charCodeAt(0)] = 1;
const MAX_BUS_LENGTH = 32;

/** Largest whole-second value whose microsecond timestamp is still an exact JS integer. */
const MAX_SECONDS = Math.floor(Number.MAX_SAFE_INTEGER / 1e6);

const SPACE = 32;
const TAB = 9;
const CR = 13;
const LF = 10;
const HASH = 35; // '#'
const DOT = 46; // '.'
const UNDERSCORE = 95; // '_'

function hexAt(s: string, i: number): number {
  const c = s.charCodeAt(i);
  return c < 128 ? HEX_VALUE[c] : -1;
}

function isBlank(c: number): boolean {
  return c === SPACE || c === TAB;
}

/** Quotes one character of the input for an error message. */
function charName(s: string, i: number): string {
  return JSON.stringify(s.charAt(i));
}

export type CandumpParse = { ok: true; frame: CanFrame } | { ok: false; error: string };

/**
 * Scratch state for one parse: the data bytes land here first because the length is only known at the
 * end of the token. Shared by all parses; nothing keeps a reference to it.
 */
const scratch = new Uint8Array(64);

/**
 * Parses one line given as s[start, end) (end excludes the newline). Returns the frame, or an error
 * message. `busCache` interns the bus name so frames do not keep slices of a large chunk string alive.
 */
function parseSpan(s: string, start: number, end: number, busCache: BusCache): CanFrame | string {
  let i = start;
  while (i < end && isBlank(s.charCodeAt(i))) i++;
  while (end > i && (isBlank(s.charCodeAt(end - 1)) || s.charCodeAt(end - 1) === CR)) end--;

  // --- (seconds.fraction)
  if (s.charCodeAt(i) !== 40 /* ( */) {
    if (s.startsWith('DROPCOUNT', i)) return 'candump DROPCOUNT notice (frames were lost while recording), not a frame';
    return 'line does not start with a "(seconds.microseconds)" timestamp';
  }
  i++;
  let sec = 0;
  let secDigits = 0;
  for (let c = s.charCodeAt(i); c >= 48 && c <= 57; c = s.charCodeAt(++i)) {
    sec = sec * 10 + (c - 48);
    secDigits++;
  }
  if (secDigits === 0 || s.charCodeAt(i) !== DOT) return 'timestamp must be "(seconds.microseconds)", e.g. (1436509052.249713)';
  if (sec > MAX_SECONDS) return `timestamp ${sec} s is out of range`;
  i++;
  // The fraction is decimal: 6 digits as candump writes them; shorter or longer ones are scaled to µs.
  let frac = 0;
  let fracDigits = 0;
  for (let c = s.charCodeAt(i); c >= 48 && c <= 57; c = s.charCodeAt(++i)) {
    if (fracDigits < 6) frac = frac * 10 + (c - 48);
    fracDigits++;
  }
  if (fracDigits === 0 || s.charCodeAt(i) !== 41 /* ) */) {
    return 'timestamp must be "(seconds.microseconds)", e.g. (1436509052.249713)';
  }
  for (let d = fracDigits; d < 6; d++) frac *= 10;
  const tsUs = sec * 1e6 + frac;
  i++;

  // --- interface name (candump right-aligns names with spaces, so allow any run of blanks)
  if (i >= end || !isBlank(s.charCodeAt(i))) return 'expected a space and an interface name after the timestamp';
  while (i < end && isBlank(s.charCodeAt(i))) i++;
  const busStart = i;
  while (i < end && !isBlank(s.charCodeAt(i))) {
    const c = s.charCodeAt(i);
    if (c >= 128 || BUS_CHAR[c] === 0) return `interface name contains ${charName(s, i)}`;
    i++;
  }
  if (i === busStart) return 'missing interface name after the timestamp';
  if (i - busStart > MAX_BUS_LENGTH) return `interface name is longer than ${MAX_BUS_LENGTH} characters`;
  const bus = busCache.get(s, busStart, i);

  // --- frame token
  while (i < end && isBlank(s.charCodeAt(i))) i++;
  if (i >= end) return 'missing frame (e.g. 123#DEADBEEF) after the interface name';
  const tokStart = i;
  while (i < end && !isBlank(s.charCodeAt(i))) i++;
  const tokEnd = i;

  // --- optional direction suffix
  let direction: 'rx' | 'tx' = 'rx';
  while (i < end && isBlank(s.charCodeAt(i))) i++;
  if (i < end) {
    const c = s.charCodeAt(i);
    if (i + 1 === end && (c === 84 /* T */ || c === 82) /* R */) direction = c === 84 ? 'tx' : 'rx';
    else return `unexpected text ${JSON.stringify(s.slice(i, Math.min(end, i + 20)))} after the frame; only a direction " T" or " R" may follow`;
  }

  return parseFrameToken(s, tokStart, tokEnd, bus, tsUs, direction);
}

function parseFrameToken(s: string, p: number, e: number, bus: string, tsUs: number, direction: 'rx' | 'tx'): CanFrame | string {
  // Same order of checks as can-utils: '#' at 3 (standard), at 5 (CAN XL), at 8 (extended / error).
  let idDigits: number;
  if (p + 3 < e && s.charCodeAt(p + 3) === HASH) idDigits = 3;
  else if (p + 5 < e && s.charCodeAt(p + 5) === HASH) {
    return 'CAN XL frames (5-digit priority id) are not supported';
  } else if (p + 8 < e && s.charCodeAt(p + 8) === HASH) idDigits = 8;
  else {
    return 'frame must be <id>#<data> with a 3-digit (standard) or 8-digit (extended) hex id, e.g. 123#DEADBEEF';
  }

  let raw = 0;
  for (let k = 0; k < idDigits; k++) {
    const n = hexAt(s, p + k);
    if (n < 0) return `id ${JSON.stringify(s.slice(p, p + idDigits))} is not hexadecimal`;
    raw = raw * 16 + n;
  }
  let id: number;
  let ext = false;
  let err = false;
  if (idDigits === 3) {
    if (raw > CAN_SFF_MASK) {
      return `standard id 0x${raw.toString(16).toUpperCase()} exceeds 0x7FF; write extended ids with 8 digits`;
    }
    id = raw;
  } else if (raw >= 0x40000000) {
    // 0x40000000 / 0x80000000 are the kernel's RTR / EFF flag bits: never printed by candump.
    return `id ${s.slice(p, p + 8)} is larger than 29 bits plus the error flag (first digit must be 0-3)`;
  } else if (raw >= CAN_ERR_FLAG) {
    err = true;
    id = raw - CAN_ERR_FLAG;
  } else {
    ext = true;
    id = raw & CAN_EFF_MASK;
  }

  let i = p + idDigits + 1;
  const c0 = s.charCodeAt(i);

  // --- remote request: R, R<len 0-8>, R8_<raw dlc 9-F>
  if (i < e && (c0 === 82 /* R */ || c0 === 114) /* r */) {
    if (err) return 'error frames cannot be remote requests';
    let dlc = 0;
    i++;
    if (i < e) {
      const n = hexAt(s, i);
      if (n < 0 || n > 8) return `remote request length ${charName(s, i)} must be one digit 0-8`;
      dlc = n;
      i++;
      if (i < e) {
        if (dlc !== 8 || s.charCodeAt(i) !== UNDERSCORE) return `unexpected ${charName(s, i)} after remote request length`;
        const raw8 = i + 2 === e ? hexAt(s, i + 1) : -1;
        if (raw8 < 9) return 'raw DLC suffix must be _9 to _F';
        dlc = raw8;
      }
    }
    return makeFrame(bus, id, ext, true, false, false, false, false, dlc, new Uint8Array(0), tsUs, direction);
  }

  // --- CAN FD: ##<flags nibble><data>
  let fd = false;
  let brs = false;
  let esi = false;
  let maxLen = 8;
  if (i < e && c0 === HASH) {
    if (err) return 'error frames are classic CAN; "##" (CAN FD) is not allowed with the error flag';
    const flags = i + 1 < e ? hexAt(s, i + 1) : -1;
    if (flags < 0) return 'CAN FD frame needs a hex flags digit after "##" (e.g. 123##5DEADBEEF)';
    fd = true;
    brs = (flags & 1) !== 0;
    esi = (flags & 2) !== 0;
    maxLen = 64;
    i += 2;
  }

  // --- data: pairs of hex digits, each optionally preceded by one '.'
  let n = 0;
  while (i < e) {
    if (s.charCodeAt(i) === DOT) {
      i++;
      if (i >= e) break; // a trailing '.' is accepted by can-utils
    }
    const hi = hexAt(s, i);
    if (hi < 0) break; // not data: handled below (raw DLC suffix or an error)
    if (i + 1 >= e) return 'data has odd number of hex digits';
    const lo = hexAt(s, i + 1);
    if (lo < 0) {
      const c = s.charCodeAt(i + 1);
      return c === DOT || c === UNDERSCORE ? 'data has odd number of hex digits' : `data contains non-hex ${charName(s, i + 1)}`;
    }
    if (n === maxLen) {
      return fd ? 'CAN FD frame has more than 64 data bytes' : 'classic CAN frame has more than 8 data bytes (CAN FD frames are written with "##")';
    }
    scratch[n++] = (hi << 4) | lo;
    i += 2;
  }

  let dlc = n;
  if (i < e) {
    const c = s.charCodeAt(i);
    if (c === UNDERSCORE && !fd) {
      if (n !== 8) return `raw DLC suffix ${JSON.stringify(s.slice(i, e))} is only valid after exactly 8 data bytes`;
      const raw8 = i + 2 === e ? hexAt(s, i + 1) : -1;
      if (raw8 < 9) return 'raw DLC suffix must be _9 to _F';
      dlc = raw8;
    } else if (c === DOT) {
      return 'data has two "." separators in a row';
    } else {
      return `data contains non-hex ${charName(s, i)}`;
    }
  }

  if (fd && fdLengthToDlc(n) < 0) {
    return `CAN FD frame has ${n} data bytes; FD lengths are 0-8, 12, 16, 20, 24, 32, 48 or 64`;
  }
  return makeFrame(bus, id, ext, false, err, fd, brs, esi, dlc, scratch.slice(0, n), tsUs, direction);
}

/** One constructor so every frame object has the same hidden class. */
function makeFrame(
  bus: string,
  id: number,
  ext: boolean,
  rtr: boolean,
  err: boolean,
  fd: boolean,
  brs: boolean,
  esi: boolean,
  dlc: number,
  data: Uint8Array,
  tsUs: number,
  direction: 'rx' | 'tx',
): CanFrame {
  return { bus, id, ext, rtr, err, fd, brs, esi, dlc, data, tsUs, direction };
}

/**
 * Interns bus names: a log names one or a few interfaces millions of times, so compare against the last
 * few names in place instead of slicing a new string per line.
 */
class BusCache {
  private names: string[] = [];

  get(s: string, start: number, end: number): string {
    const len = end - start;
    for (const name of this.names) {
      if (name.length === len && s.startsWith(name, start)) return name;
    }
    const name = detach(s.slice(start, end));
    if (this.names.length < 16) this.names.push(name);
    return name;
  }
}

const lineBusCache = new BusCache();

/**
 * A flat copy of a substring. V8 may represent slices as views into the parent; a bus name or a rejected
 * line's text kept by a consumer would then pin the whole (large) chunk string in memory.
 */
function detach(s: string): string {
  return Buffer.from(s, 'latin1').toString('latin1');
}

/** Parses one candump log line (no newline, or a trailing "\n" / "\r\n"). */
export function parseCandumpLine(line: string): CandumpParse {
  let end = line.length;
  if (end > 0 && line.charCodeAt(end - 1) === LF) end--;
  const r = parseSpan(line, 0, end, lineBusCache);
  return typeof r === 'string' ? { ok: false, error: r } : { ok: true, frame: r };
}

/** One line of a log: a frame, or a line that could not be parsed (with the reason). Line numbers are 1-based. */
export type CandumpRecord = { ok: true; line: number; frame: CanFrame } | { ok: false; line: number; error: string; text: string };

/** Longest quoted excerpt of a rejected line. */
const MAX_REJECTED_TEXT = 200;

/**
 * Splits a byte stream into lines and parses them. Feed it chunks of any size with push(); call end() at
 * end of input for a last line without newline. Never throws on bad input: malformed lines come back as
 * records with ok=false and their line number. Blank lines and lines starting with '#' are skipped silently
 * (they still count for line numbers).
 */
export class CandumpReader {
  private partial = '';
  /** The pending partial line exceeded maxLineLength: drop its text until the next newline. */
  private overlong = false;
  private lineNo = 0;
  private readonly busCache = new BusCache();

  /** maxLineLength bounds the memory one newline-free garbage file can take. */
  constructor(private readonly maxLineLength = 4096) {}

  /** Number of lines completed so far. */
  get linesRead(): number {
    return this.lineNo;
  }

  /** Forget any partial line and restart line numbering (e.g. when a replay loops). */
  reset(): void {
    this.partial = '';
    this.overlong = false;
    this.lineNo = 0;
  }

  /** Parses every complete line in `chunk` (bytes are read as latin1; candump logs are ASCII). */
  push(chunk: Uint8Array | string): CandumpRecord[] {
    const s = typeof chunk === 'string' ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('latin1');
    const out: CandumpRecord[] = [];
    let pos = 0;
    let nl = s.indexOf('\n');
    if (nl < 0) {
      this.appendPartial(s, 0, s.length);
      return out;
    }
    // First line completes the carried-over partial line.
    if (this.partial.length > 0 || this.overlong) {
      this.appendPartial(s, 0, nl);
      this.finishPartial(out);
      pos = nl + 1;
      nl = s.indexOf('\n', pos);
    }
    while (nl >= 0) {
      this.line(s, pos, nl, out);
      pos = nl + 1;
      nl = s.indexOf('\n', pos);
    }
    this.appendPartial(s, pos, s.length);
    return out;
  }

  /** Flushes a last line that had no newline. */
  end(): CandumpRecord[] {
    const out: CandumpRecord[] = [];
    if (this.partial.length > 0 || this.overlong) this.finishPartial(out);
    return out;
  }

  private appendPartial(s: string, start: number, end: number): void {
    if (start >= end || this.overlong) return;
    if (this.partial.length + (end - start) > this.maxLineLength) {
      this.overlong = true;
      this.partial = (this.partial + s.slice(start, Math.min(end, start + MAX_REJECTED_TEXT))).slice(0, MAX_REJECTED_TEXT);
      return;
    }
    this.partial += s.slice(start, end);
  }

  private finishPartial(out: CandumpRecord[]): void {
    const text = this.partial;
    const overlong = this.overlong;
    this.partial = '';
    this.overlong = false;
    if (overlong) {
      this.lineNo++;
      out.push({ ok: false, line: this.lineNo, error: `line is longer than ${this.maxLineLength} characters`, text: detach(text) });
      return;
    }
    this.line(text, 0, text.length, out);
  }

  private line(s: string, start: number, end: number, out: CandumpRecord[]): void {
    const lineNo = ++this.lineNo;
    // Skip blanks and comments before paying for a parse.
    let i = start;
    while (i < end && isBlank(s.charCodeAt(i))) i++;
    if (i === end) return;
    const c = s.charCodeAt(i);
    if (c === HASH) return;
    if (c === CR && i + 1 === end) return;
    if (end - start > this.maxLineLength) {
      out.push({ ok: false, line: lineNo, error: `line is longer than ${this.maxLineLength} characters`, text: detach(s.slice(start, start + MAX_REJECTED_TEXT)) });
      return;
    }
    const r = parseSpan(s, start, end, this.busCache);
    if (typeof r === 'string') {
      let textEnd = end;
      if (textEnd > start && s.charCodeAt(textEnd - 1) === CR) textEnd--;
      out.push({ ok: false, line: lineNo, error: r, text: detach(s.slice(start, Math.min(textEnd, start + MAX_REJECTED_TEXT))) });
    } else {
      out.push({ ok: true, line: lineNo, frame: r });
    }
  }
}
