/**
 * Reads a DBC file (Vector's CAN database text format) into plain data: messages, their signals, value
 * tables (VAL_), float types (SIG_VALTYPE_), extended multiplexing (SG_MUL_VAL_) and the CAN FD flag
 * and J1939 flags (BA_ "VFrameFormat", by the names its BA_DEF_ gives the enum's values; BA_ "ProtocolType"
 * "J1939"), and Vector's long names (BA_ "SystemMessageLongSymbol" / "SystemSignalLongSymbol": CANdb++ cuts
 * names to 32 characters in BO_ and SG_ and keeps the whole name there; used instead, as canmatrix and
 * cantools do). Everything else (nodes, comments, other attributes, environment variables and their long
 * names) is read past: a decoder does not need it.
 *
 * Written here rather than taken from npm: the one registry candidate (`candied` 2.2.0) rejects frames
 * over 8 bytes, skips frames whose length differs from the DBC, ignores multiplexing and SIG_VALTYPE_
 * when decoding, and clamps values to [min|max] — each a wrong value on a real bus (docs/signals.md).
 *
 * A statement that cannot be read is a DbcParseError naming file and line. A statement that is readable
 * but unusable (an 11-bit message id above 0x7FF, a VAL_ for an unknown signal, a signal longer than 64
 * bits — J1939 databases describe multi-packet parameters such as the VIN so — or past byte 64) is
 * skipped with a warning carrying file and line, as canmatrix does, so one odd line does not hide a whole
 * database.
 */
import { digitCount, inUnits, MAX_DIGITS, parseDecimal, type Decimal } from './exact-decimal.js';

export interface DbcSignal {
  name: string;
  /** As written in the DBC: the LSB for little-endian (Intel), the MSB for big-endian (Motorola). */
  startBit: number;
  length: number;
  littleEndian: boolean;
  signed: boolean;
  /** SIG_VALTYPE_ 1 = IEEE float (32 bits), 2 = IEEE double (64 bits). */
  valueType: 'int' | 'float32' | 'float64';
  /** The nearest doubles to `exact`: what decoding every frame computes with. */
  factor: number;
  offset: number;
  /** Factor and offset exactly as written, for values a double cannot carry (dbc-decode.ts, shownValue). */
  exact: { factor: Decimal; offset: Decimal };
  min: number;
  max: number;
  unit: string;
  /** VAL_ labels by raw value, as its exact decimal text (64-bit raw values are beyond a double). */
  values: Map<string, string> | undefined;
  /** `M` or `m<n>M`: other signals depend on this one's raw value. */
  isMultiplexer: boolean;
  /** The n of `m<n>` / `m<n>M`, when this signal is multiplexed. */
  muxValue: number | undefined;
  /** From SG_MUL_VAL_: the multiplexer's name and the raw ranges in which this signal is present. */
  muxer: string | undefined;
  muxRanges: Array<[number, number]> | undefined;
  line: number;
}

export interface DbcMessage {
  /** Without the extended flag bit. */
  id: number;
  extended: boolean;
  name: string;
  /** Length in bytes as declared (BO_ … : <size>). */
  size: number;
  fd: boolean;
  /**
   * A J1939 parameter group (VFrameFormat J1939PG, or any extended message of a file whose ProtocolType is
   * J1939): frames match it by PGN, whatever their source address (and destination, for PDU1).
   */
  j1939: boolean;
  signals: DbcSignal[];
  line: number;
}

export interface DbcDatabase {
  file: string;
  messages: DbcMessage[];
  warnings: string[];
}

export class DbcParseError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    what: string,
  ) {
    super(`${file}:${line}: ${what}`);
    this.name = 'DbcParseError';
  }
}

/**
 * Longest message or signal name used (Vector's own tools keep to 32; longer ones come as attributes).
 * A longer one is skipped with a warning: console events carry names up to this (event-schemas.ts).
 */
export const DBC_NAME_MAX = 128;

/** Bit 31 of a BO_ id marks an extended (29-bit) id. */
const EXTENDED_FLAG = 0x80000000;
/** Vector's placeholder message for signals not in any frame. */
const INDEPENDENT_SIGNALS_ID = 0xc0000000;
const MAX_SIGNAL_BITS = 64;
const MAX_FD_BYTES = 64;

// Each part of a number matched one way only (`\d+\.?\d*` split a run of digits in n ways: quadratic on a long one).
const NUM = String.raw`[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?`;
const IDENT = '[A-Za-z_][A-Za-z0-9_]*';
const BO_RE = new RegExp(String.raw`^BO_\s+(\d+)\s+(${IDENT})\s*:\s*(\d+)(?:\s+(\S+))?\s*$`);
const SG_RE = new RegExp(
  String.raw`^SG_\s+(${IDENT})\s*(M|m\d+M?)?\s*:\s*(\d+)\s*\|\s*(\d+)\s*@\s*([01])\s*([+-])\s*` +
    String.raw`\(\s*(${NUM})\s*,\s*(${NUM})\s*\)\s*\[\s*(${NUM})\s*\|\s*(${NUM})\s*\]\s*"((?:[^"\\]|\\.)*)"\s*(.*)$`,
);
const VAL_RE = new RegExp(String.raw`^VAL_\s+(\d+)\s+(${IDENT})\s+((?:[-+]?\d+\s+"(?:[^"\\]|\\.)*"\s*)*);$`);
/** `VAL_ <environment variable> <value> "<label>" … ;`: the other form of VAL_ (no message id), read past. */
const VAL_ENV_RE = new RegExp(String.raw`^VAL_\s+${IDENT}\s`);
const VAL_PAIR_RE = /([-+]?\d+)\s+"((?:[^"\\]|\\.)*)"/g;
const VALTYPE_RE = new RegExp(String.raw`^SIG_VALTYPE_\s+(\d+)\s+(${IDENT})\s*:?\s*([0-3])\s*;$`);
const MULVAL_RE = new RegExp(String.raw`^SG_MUL_VAL_\s+(\d+)\s+(${IDENT})\s+(${IDENT})\s+(\d+\s*-\s*\d+(?:\s*,\s*\d+\s*-\s*\d+)*)\s*;$`);
const BA_FRAMEFORMAT_RE = /^BA_\s+"VFrameFormat"\s+BO_\s+(\d+)\s+(\d+)\s*;$/;
const BA_DEF_FRAMEFORMAT_RE = /^BA_DEF_\s+BO_\s+"VFrameFormat"\s+ENUM\s+(.*);$/;
const BA_PROTOCOL_J1939_RE = /^BA_(?:DEF_DEF_)?\s+"ProtocolType"\s+"J1939"\s*;$/;
const BA_LONG_MESSAGE_RE = /^BA_\s+"SystemMessageLongSymbol"\s+BO_\s+(\d+)\s+"((?:[^"\\]|\\.)*)"\s*;$/;
const BA_LONG_SIGNAL_RE = new RegExp(String.raw`^BA_\s+"SystemSignalLongSymbol"\s+SG_\s+(\d+)\s+(${IDENT})\s+"((?:[^"\\]|\\.)*)"\s*;$`);
const WHOLE_IDENT_RE = new RegExp(`^${IDENT}$`);
/** The file's default VFrameFormat, by name (`BA_DEF_DEF_ "VFrameFormat" "J1939PG";`). */
const BA_DEF_DEF_FRAMEFORMAT_RE = /^BA_DEF_DEF_\s+"VFrameFormat"\s+"([^"]*)"\s*;$/;
/** VFrameFormat's values as Vector's CANdb++ defines them, for a file that does not define them itself. */
const VECTOR_FRAME_FORMATS: readonly string[] = ['StandardCAN', 'ExtendedCAN', 'reserved', 'J1939PG', ...Array<string>(10).fill('reserved'), 'StandardCAN_FD', 'ExtendedCAN_FD'];

/** Statements that end at a `;` (and may span lines); everything else ends at the line's end. */
const SEMICOLON_STATEMENTS = new Set([
  'CM_',
  'BA_DEF_',
  'BA_',
  'BA_DEF_DEF_',
  'VAL_',
  'VAL_TABLE_',
  'SIG_VALTYPE_',
  'SG_MUL_VAL_',
  'BO_TX_BU_',
  'BA_DEF_REL_',
  'BA_REL_',
  'BA_DEF_DEF_REL_',
  'SIG_GROUP_',
  'EV_',
  'ENVVAR_DATA_',
  'SGTYPE_',
  'SIG_TYPE_REF_',
  'SGTYPE_VAL_',
  'BA_DEF_SGTYPE_',
  'BA_SGTYPE_',
  'CAT_DEF_',
  'CAT_',
  'FILTER',
  'EV_DATA_',
]);

interface Statement {
  text: string;
  line: number;
}

/** Longest statement read: the longest real ones, comments and value tables, are a few KiB. */
const MAX_STATEMENT_CHARS = 1024 * 1024;
/**
 * Longest message, signal and attribute definition read: real ones are well under 1 KiB. Their patterns
 * have runs of optional whitespace that a long enough hostile line makes slow to refuse.
 */
const MAX_DEFINITION_CHARS = 8 * 1024;
const DEFINITIONS = new Set(['BO_', 'SG_', 'SIG_VALTYPE_', 'SG_MUL_VAL_']);

/** Splits the file into statements, keeping `;`-terminated ones whole even when a string spans lines. */
function* statements(text: string, file: string): Generator<Statement> {
  const lines = text.split(/\r?\n|\r/);
  for (let i = 0; i < lines.length; i++) {
    const first = lines[i]!.trim();
    if (first === '' || first.startsWith('//')) continue;
    const keyword = first.split(/[\s:]/, 1)[0]!;
    // A keyword alone on its line is an entry of the NS_ (new symbols) list, not a statement.
    if (!SEMICOLON_STATEMENTS.has(keyword) || first === keyword) {
      yield { text: first, line: i + 1 };
      continue;
    }
    // Each line is scanned once, where the previous one left off (rescanning the whole statement at
    // every line was quadratic: a comment left open made a 1 MB file take minutes).
    const start = i;
    const scan = new StatementEnd();
    const parts = [cutComment(first, scan.feed(first))];
    let chars = first.length;
    while (!scan.ended) {
      i++;
      if (i >= lines.length) throw new DbcParseError(file, start + 1, `${keyword} statement is not closed with ';' before the end of the file`);
      const line = lines[i]!;
      chars += line.length + 1;
      if (chars > MAX_STATEMENT_CHARS) throw new DbcParseError(file, start + 1, `${keyword} statement runs over ${MAX_STATEMENT_CHARS} characters (a ';' or a '"' missing?)`);
      scan.feed('\n');
      parts.push(cutComment(line, scan.feed(line)));
    }
    yield { text: parts.join('\n').trim(), line: start + 1 };
  }
}

/** `line` without the `//` comment that starts at `at` (-1: none). */
function cutComment(line: string, at: number): string {
  return at < 0 ? line : line.slice(0, at);
}

/**
 * Whether the text fed so far ends with `;` outside a quoted string, fed piece by piece. A `//` comment
 * after that `;` ends the statement too (`CM_ … "text"; // note`): read as part of it, it ran on to the
 * next line ending in `;`, and the messages and signals between were silently gone.
 */
class StatementEnd {
  private inString = false;
  private escaped = false;
  private lastSemicolon = false;

  get ended(): boolean {
    return !this.inString && this.lastSemicolon;
  }

  /** Feeds a piece; returns where a `//` comment after the statement's `;` starts in it, else -1. */
  feed(s: string): number {
    for (let i = 0; i < s.length; i++) {
      const c = s[i];
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === '\\') this.escaped = true;
        else if (c === '"') this.inString = false;
        continue;
      }
      if (c === '"') this.inString = true;
      else if (c === ';') this.lastSemicolon = true;
      else if (c === '/' && this.lastSemicolon && s[i + 1] === '/') return i;
      else if (c !== ' ' && c !== '\t' && c !== '\n' && c !== '\r') this.lastSemicolon = false;
    }
    return -1;
  }
}

/** The last byte a signal's bits reach: Intel counts up from its LSB, Motorola's MSB runs down the bytes. */
function lastByte(startBit: number, length: number, littleEndian: boolean): number {
  if (littleEndian) return (startBit + length - 1) >> 3;
  const inFirst = (startBit & 7) + 1;
  return (startBit >> 3) + Math.ceil(Math.max(0, length - inFirst) / 8);
}

function unescapeDbcText(s: string): string {
  return s.replace(/\\(.)/g, '$1');
}

function num(s: string): number {
  return Number(s);
}

/**
 * An integer signal's values on their decimal grid: raw × f + o units of 10^grid (the finer of the
 * factor's and the offset's last digit), and the most significant digits a value can need.
 */
export function valueGrid(s: Pick<DbcSignal, 'exact' | 'length' | 'signed'>): { grid: number; f: bigint; o: bigint; digits: number } {
  const { factor, offset } = s.exact;
  const grid = Math.min(factor.e, offset.e);
  const f = inUnits(factor, grid);
  const o = inUnits(offset, grid);
  const abs = (x: bigint): bigint => (x < 0n ? -x : x);
  const mostRaw = s.signed ? 1n << BigInt(s.length - 1) : (1n << BigInt(s.length)) - 1n;
  return { grid, f, o, digits: digitCount(mostRaw * abs(f) + abs(o)) };
}

/** A signal's factor or offset: as a double, and exactly. One beyond a double (1e400, or 1e-400, read as 0) is an error. */
function scaleNumber(text: string, what: string, signal: string, file: string, line: number): { value: number; exact: Decimal } {
  const value = num(text);
  const exact = parseDecimal(text);
  if (!Number.isFinite(value) || exact === undefined || (value === 0 && exact.m !== 0n))
    throw new DbcParseError(file, line, `signal ${signal} has ${what} ${text.slice(0, 40)}: beyond a double, or more digits than any scale is written with`);
  return { value, exact };
}

export function parseDbc(text: string, file: string): DbcDatabase {
  const messages: DbcMessage[] = [];
  const warnings: string[] = [];
  const byRawId = new Map<number, DbcMessage>();
  let current: DbcMessage | undefined;
  /** A skipped BO_: its SG_ lines are skipped too. */
  let skipping = false;
  const warn = (line: number, what: string): void => {
    warnings.push(`${file}:${line}: ${what}`);
  };
  /** VFrameFormat's value names (the file's BA_DEF_, else Vector's), its BA_ values, ProtocolType J1939. */
  let frameFormatNames = VECTOR_FRAME_FORMATS;
  const frameFormats: { msg: DbcMessage; index: number }[] = [];
  let protocolJ1939 = false;
  let defaultFormat: string | undefined;
  const longNames: LongName[] = [];
  /** Each message's signals by name (a message may have thousands: no linear search per line). */
  const signalsByName = new Map<DbcMessage, Map<string, DbcSignal>>();
  const signalOf = (rawId: string, name: string, line: number, what: string): DbcSignal | undefined => {
    const m = byRawId.get(Number(rawId));
    const s = m === undefined ? undefined : signalsByName.get(m)?.get(name);
    if (s === undefined) warn(line, `${what} for unknown signal ${rawId} ${name}: ignored`);
    return s;
  };

  for (const st of statements(text, file)) {
    const t = st.text;
    if (t.length > MAX_DEFINITION_CHARS && (DEFINITIONS.has(t.split(/[\s:]/, 1)[0]!) || t.startsWith('BA_ "VFrameFormat"') || t.startsWith('BA_ "System'))) {
      throw new DbcParseError(file, st.line, `${t.split(/\s/, 1)[0]} statement of ${t.length} characters, longer than any real one (${MAX_DEFINITION_CHARS}): ${t.slice(0, 80)}`);
    }
    if (t.startsWith('BO_ ') || t.startsWith('BO_\t')) {
      current = undefined;
      skipping = false;
      const m = BO_RE.exec(t);
      if (m === null) throw new DbcParseError(file, st.line, `cannot read message definition (expected "BO_ <id> <name>: <size> <sender>"): ${t.slice(0, 80)}`);
      const raw = Number(m[1]);
      if (raw === INDEPENDENT_SIGNALS_ID) {
        skipping = true;
        continue;
      }
      if (m[2]!.length > DBC_NAME_MAX) {
        warn(st.line, `message name of ${m[2]!.length} characters (${m[2]!.slice(0, 40)}…), over ${DBC_NAME_MAX}: skipped`);
        skipping = true;
        continue;
      }
      const extended = raw >= EXTENDED_FLAG;
      const id = extended ? raw - EXTENDED_FLAG : raw;
      const size = Number(m[3]);
      if ((extended && id > 0x1fffffff) || (!extended && id > 0x7ff)) {
        warn(st.line, `message ${m[2]} has id ${raw}, beyond ${extended ? '29' : '11'} bits${extended ? '' : ' without the extended flag (bit 31)'}: skipped`);
        skipping = true;
        continue;
      }
      if (size > MAX_FD_BYTES) throw new DbcParseError(file, st.line, `message ${m[2]} is ${size} bytes; CAN FD allows at most 64`);
      if (byRawId.has(raw)) {
        warn(st.line, `message id ${raw} defined twice: the second (${m[2]}) is skipped`);
        skipping = true;
        continue;
      }
      current = { id, extended, name: m[2]!, size, fd: size > 8, j1939: false, signals: [], line: st.line };
      signalsByName.set(current, new Map());
      messages.push(current);
      byRawId.set(raw, current);
      continue;
    }
    if (t.startsWith('SG_ ') || t.startsWith('SG_\t')) {
      if (skipping) continue;
      const m = SG_RE.exec(t);
      if (m === null)
        throw new DbcParseError(
          file,
          st.line,
          `cannot read signal definition (expected 'SG_ <name> [M|m<n>] : <start>|<length>@<0|1><+|-> (<factor>,<offset>) [<min>|<max>] "<unit>" <receivers>'): ${t.slice(0, 100)}`,
        );
      if (current === undefined) throw new DbcParseError(file, st.line, `signal ${m[1]} is outside any message (SG_ must follow its BO_)`);
      if (m[1]!.length > DBC_NAME_MAX) {
        warn(st.line, `signal name of ${m[1]!.length} characters (${m[1]!.slice(0, 40)}…) in ${current.name}, over ${DBC_NAME_MAX}: skipped`);
        continue;
      }
      const length = Number(m[4]);
      const startBit = Number(m[3]);
      if (length < 1) throw new DbcParseError(file, st.line, `signal ${m[1]} has length ${length}; 1 to 64 bits`);
      if (length > MAX_SIGNAL_BITS) {
        warn(
          st.line,
          `signal ${m[1]} of ${current.name} is ${length} bits long (a parameter sent over several frames, such as a J1939 transport): only 1 to 64 bits can be read from a frame: skipped`,
        );
        continue;
      }
      if (lastByte(startBit, length, m[5] === '1') >= MAX_FD_BYTES) {
        warn(st.line, `signal ${m[1]} of ${current.name} (start bit ${startBit}, ${length} bits) reaches past byte 64, beyond any CAN frame: skipped`);
        continue;
      }
      const factor = scaleNumber(m[7]!, 'factor', m[1]!, file, st.line);
      const offset = scaleNumber(m[8]!, 'offset', m[1]!, file, st.line);
      const exact = { factor: factor.exact, offset: offset.exact };
      const digits = valueGrid({ exact, length, signed: m[6] === '-' }).digits;
      if (digits > MAX_DIGITS) {
        // Its exact values would be texts longer than events carry (factor 1e300 with offset 1e-300).
        warn(st.line, `signal ${m[1]} of ${current.name}: its factor and offset give values of up to ${digits} significant digits (at most ${MAX_DIGITS}): skipped`);
        continue;
      }
      const mux = m[2];
      const byName = signalsByName.get(current)!;
      if (byName.has(m[1]!)) {
        warn(st.line, `signal ${m[1]} defined twice in ${current.name}: the second is skipped`);
        continue;
      }
      const signal: DbcSignal = {
        name: m[1]!,
        startBit,
        length,
        littleEndian: m[5] === '1',
        signed: m[6] === '-',
        valueType: 'int',
        factor: factor.value,
        offset: offset.value,
        exact,
        min: num(m[9]!),
        max: num(m[10]!),
        unit: unescapeDbcText(m[11]!),
        values: undefined,
        isMultiplexer: mux?.endsWith('M') === true,
        muxValue: mux?.startsWith('m') ? parseInt(mux.slice(1), 10) : undefined,
        muxer: undefined,
        muxRanges: undefined,
        line: st.line,
      };
      current.signals.push(signal);
      byName.set(signal.name, signal);
      continue;
    }
    current = undefined;
    skipping = false;
    if (t.startsWith('VAL_ ')) {
      const m = VAL_RE.exec(t);
      if (m === null && VAL_ENV_RE.test(t)) continue; // an environment variable's value table: not a signal's
      if (m === null) throw new DbcParseError(file, st.line, `cannot read value table (expected 'VAL_ <message id> <signal> <value> "<label>" … ;'): ${t.slice(0, 100)}`);
      const s = signalOf(m[1]!, m[2]!, st.line, 'VAL_');
      if (s === undefined) continue;
      s.values = new Map();
      for (const p of m[3]!.matchAll(VAL_PAIR_RE)) s.values.set(BigInt(p[1]!).toString(), unescapeDbcText(p[2]!));
    } else if (t.startsWith('SIG_VALTYPE_ ')) {
      const m = VALTYPE_RE.exec(t);
      if (m === null) throw new DbcParseError(file, st.line, `cannot read SIG_VALTYPE_ (expected 'SIG_VALTYPE_ <message id> <signal> : <0|1|2>;'): ${t.slice(0, 100)}`);
      const s = signalOf(m[1]!, m[2]!, st.line, 'SIG_VALTYPE_');
      if (s === undefined) continue;
      const kind = m[3];
      if (kind === '1' || kind === '2') {
        const bits = kind === '1' ? 32 : 64;
        if (s.length !== bits) throw new DbcParseError(file, st.line, `signal ${s.name} is ${s.length} bits but SIG_VALTYPE_ ${kind} needs ${bits}`);
        s.valueType = kind === '1' ? 'float32' : 'float64';
      }
    } else if (t.startsWith('SG_MUL_VAL_ ')) {
      const m = MULVAL_RE.exec(t);
      if (m === null)
        throw new DbcParseError(file, st.line, `cannot read SG_MUL_VAL_ (expected 'SG_MUL_VAL_ <message id> <signal> <multiplexer> <lo>-<hi>, … ;'): ${t.slice(0, 100)}`);
      const s = signalOf(m[1]!, m[2]!, st.line, 'SG_MUL_VAL_');
      if (s === undefined) continue;
      s.muxer = m[3]!;
      s.muxRanges = m[4]!.split(',').map((r) => {
        const [lo, hi] = r.split('-').map((x) => Number(x.trim()));
        return [lo!, hi!] as [number, number];
      });
    } else if (t.startsWith('BA_ "VFrameFormat"')) {
      const m = BA_FRAMEFORMAT_RE.exec(t);
      const msg = m === null ? undefined : byRawId.get(Number(m[1]));
      if (msg !== undefined) frameFormats.push({ msg, index: Number(m![2]) });
    } else if (t.startsWith('BA_ "SystemSignalLongSymbol"')) {
      const m = BA_LONG_SIGNAL_RE.exec(t);
      const s = m === null ? undefined : signalOf(m[1]!, m[2]!, st.line, 'SystemSignalLongSymbol');
      if (m === null) warn(st.line, `cannot read a signal's long name (expected 'BA_ "SystemSignalLongSymbol" SG_ <message id> <signal> "<name>";'): ignored`);
      else if (s !== undefined) longNames.push({ msg: byRawId.get(Number(m[1]))!, item: s, name: unescapeDbcText(m[3]!), line: st.line });
    } else if (t.startsWith('BA_ "SystemMessageLongSymbol"')) {
      const m = BA_LONG_MESSAGE_RE.exec(t);
      const msg = m === null ? undefined : byRawId.get(Number(m[1]));
      if (m === null) warn(st.line, `cannot read a message's long name (expected 'BA_ "SystemMessageLongSymbol" BO_ <message id> "<name>";'): ignored`);
      else if (msg === undefined) warn(st.line, `SystemMessageLongSymbol for unknown message ${m[1]}: ignored`);
      else longNames.push({ msg, item: msg, name: unescapeDbcText(m[2]!), line: st.line });
    } else if (t.startsWith('BA_DEF_ ')) {
      const m = BA_DEF_FRAMEFORMAT_RE.exec(t);
      if (m !== null) frameFormatNames = [...m[1]!.matchAll(/"([^"]*)"/g)].map((x) => x[1]!);
    } else if (t.startsWith('BA_DEF_DEF_ "VFrameFormat"')) {
      defaultFormat = BA_DEF_DEF_FRAMEFORMAT_RE.exec(t)?.[1];
    } else if ((t.startsWith('BA_ "ProtocolType"') || t.startsWith('BA_DEF_DEF_ "ProtocolType"')) && BA_PROTOCOL_J1939_RE.test(t)) protocolJ1939 = true;
  }
  // A message's format: its own BA_ (by the file's enum names: BA_DEF_ may follow the BA_ that use them in
  // hand-edited files; canmatrix's J1939 database numbers J1939PG 4, Vector's list 3), else the file's
  // default. A J1939 file (ProtocolType, set or by default) makes the extended messages without a format
  // parameter groups; one marked ExtendedCAN stays a plain message.
  const formats = new Map<DbcMessage, string>();
  for (const { msg, index } of frameFormats) formats.set(msg, frameFormatNames[index] ?? '');
  for (const msg of messages) {
    const name = formats.get(msg) ?? defaultFormat;
    if (name?.endsWith('_FD')) msg.fd = true;
    if (msg.extended && (name === 'J1939PG' || (name === undefined && protocolJ1939))) msg.j1939 = true;
  }
  checkMultiplexing(messages, file, warnings);
  useLongNames(longNames, warn);
  return { file, messages, warnings };
}

/** A long name (BA_ "SystemMessageLongSymbol" / "SystemSignalLongSymbol") for a message or one of its signals. */
interface LongName {
  msg: DbcMessage;
  item: DbcMessage | DbcSignal;
  name: string;
  line: number;
}

/**
 * Renames messages and signals to their long names, once every statement naming them by their short name
 * (VAL_, SIG_VALTYPE_, SG_MUL_VAL_: they may follow the BA_) has been read. A long name that is not a name
 * events can carry (an identifier of up to DBC_NAME_MAX characters), or that another signal of the message
 * already has, is not used (a warning says why): the short name stays.
 */
function useLongNames(longNames: LongName[], warn: (line: number, what: string) => void): void {
  // Multiplexed signals name their multiplexer: each message's pairs, taken before its first rename.
  const muxers = new Map<DbcMessage, [DbcSignal, DbcSignal][]>();
  for (const { msg, item, name, line } of longNames) {
    const what = item === msg ? `message ${msg.name}` : `signal ${item.name} of ${msg.name}`;
    if (!WHOLE_IDENT_RE.test(name) || name.length > DBC_NAME_MAX) {
      warn(line, `the long name of ${what} is not a name of up to ${DBC_NAME_MAX} letters, digits and '_' (${JSON.stringify(name.slice(0, 40))}): the short name is used`);
      continue;
    }
    if (item === msg) {
      msg.name = name;
      continue;
    }
    if (name !== item.name && msg.signals.some((s) => s.name === name)) {
      warn(line, `the long name of ${what}, ${name}, is another signal's name: the short name is used`);
      continue;
    }
    if (!muxers.has(msg)) {
      const byName = new Map(msg.signals.map((s) => [s.name, s]));
      muxers.set(
        msg,
        msg.signals.flatMap((s) => {
          const muxer = s.muxer === undefined ? undefined : byName.get(s.muxer);
          return muxer === undefined ? [] : [[s, muxer] as [DbcSignal, DbcSignal]];
        }),
      );
    }
    item.name = name;
  }
  for (const pairs of muxers.values()) for (const [s, muxer] of pairs) s.muxer = muxer.name;
}

/** Every SG_MUL_VAL_ names a multiplexer of its own message, and `m<n>` signals have an `M` to follow. */
function checkMultiplexing(messages: DbcMessage[], file: string, warnings: string[]): void {
  for (const msg of messages) {
    const top = msg.signals.filter((s) => s.isMultiplexer && s.muxValue === undefined);
    const byName = new Map(msg.signals.map((x) => [x.name, x]));
    for (const s of msg.signals) {
      if (s.muxer !== undefined) {
        const muxer = byName.get(s.muxer);
        if (muxer === undefined || !muxer.isMultiplexer) {
          throw new DbcParseError(file, s.line, `SG_MUL_VAL_ makes ${s.name} depend on ${s.muxer}, which is not a multiplexer (M) of ${msg.name}`);
        }
      } else if (s.muxValue !== undefined) {
        if (top.length !== 1) {
          throw new DbcParseError(
            file,
            s.line,
            `signal ${s.name} is multiplexed (m${s.muxValue}) but ${msg.name} has ${top.length} multiplexer signals (M) and no SG_MUL_VAL_ says which`,
          );
        }
        s.muxer = top[0]!.name;
        s.muxRanges = [[s.muxValue, s.muxValue]];
      }
    }
    if (msg.signals.some((s) => s.muxer === s.name)) warnings.push(`${file}:${msg.line}: ${msg.name} has a signal multiplexed by itself`);
  }
}
