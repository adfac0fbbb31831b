/**
 * Turns frame bytes into signal values with a parsed DBC (dbc-parse.ts). Each message is compiled once
 * into per-signal byte chunks (which byte, shift, mask, weight), so decoding a frame is a few typed-array
 * reads per signal with no allocation: fast enough for every frame of a busy bus, unsampled.
 *
 * Bit numbering follows the DBC convention: little-endian (Intel, @1) signals name their least
 * significant bit and grow upwards; big-endian (Motorola, @0) signals name their most significant bit in
 * the "sawtooth" numbering (bit 7 of byte 0 is 7, bit 0 of byte 1 is 8) and continue into the next byte.
 * Values are raw * factor + offset, not clamped to [min|max] (a value outside is information, as in
 * canmatrix). Value-table labels are looked up by raw value, as the DBC format defines them. Decoding
 * computes with doubles; a value is shown (shownValue) exactly: on the decimal grid its factor and offset
 * give it, or, where it can need more digits than a double carries, computed exactly from the raw value.
 */
import type { CanFrame } from './frame.js';
import { DbcParseError, parseDbc, valueGrid, type DbcDatabase, type DbcMessage, type DbcSignal } from './dbc-parse.js';
import { decimalText, scaled } from './exact-decimal.js';

/** Significant digits a double always carries: any decimal of up to 15 reads back from its nearest double. */
const DOUBLE_DIGITS = 15;

export interface CompiledSignal {
  readonly def: DbcSignal;
  /** Index of the multiplexer signal this one depends on, or -1. */
  readonly muxerIndex: number;
  /** Raw multiplexer ranges [lo0, hi0, lo1, hi1, …] in which this signal is present. */
  readonly ranges: Float64Array;
  /** Per chunk: byte index, right shift, mask and 2^weight. */
  readonly bytes: Uint8Array;
  readonly shifts: Uint8Array;
  readonly masks: Uint8Array;
  readonly weights: Float64Array;
  /** Data bytes the signal needs; a shorter frame leaves it undecoded. */
  readonly needBytes: number;
  /** 2^(length-1) and 2^length, for sign extension. */
  readonly half: number;
  readonly full: number;
  /** More than 53 bits, or a double: read exactly through BigInt (rare). */
  readonly wide: boolean;
  /** Integer signals: every value is a multiple of 10^grid (the finer of the factor's and the offset's last digit). */
  readonly grid: number;
  /**
   * Factor and offset in units of 10^grid, for an integer signal whose values can need more than
   * DOUBLE_DIGITS significant digits (a 64-bit counter; a scale of many digits): they are shown computed
   * exactly. Undefined: the double's value, rounded to the grid, is exact.
   */
  readonly exactScale: { readonly f: bigint; readonly o: bigint } | undefined;
}

const scratch = new DataView(new ArrayBuffer(8));

function compileSignal(def: DbcSignal, muxerIndex: number, file: string): CompiledSignal {
  const bytes: number[] = [];
  const shifts: number[] = [];
  const masks: number[] = [];
  const weights: number[] = [];
  let remaining = def.length;
  if (def.littleEndian) {
    let bit = def.startBit;
    let weight = 0;
    while (remaining > 0) {
      const off = bit & 7;
      const n = Math.min(8 - off, remaining);
      bytes.push(bit >> 3);
      shifts.push(off);
      masks.push((1 << n) - 1);
      weights.push(weight);
      weight += n;
      bit += n;
      remaining -= n;
    }
  } else {
    let byte = def.startBit >> 3;
    let top = def.startBit & 7;
    while (remaining > 0) {
      const n = Math.min(top + 1, remaining);
      remaining -= n;
      bytes.push(byte);
      shifts.push(top - n + 1);
      masks.push((1 << n) - 1);
      weights.push(remaining);
      byte++;
      top = 7;
    }
  }
  const needBytes = Math.max(...bytes) + 1;
  if (needBytes > 64) throw new DbcParseError(file, def.line, `signal ${def.name} reaches beyond byte 64`);
  const ranges = new Float64Array((def.muxRanges ?? []).flat());
  const { grid, f, o, digits } = valueGrid(def);
  const exactScale = def.valueType === 'int' && digits > DOUBLE_DIGITS ? { f, o } : undefined;
  return {
    def,
    muxerIndex,
    ranges,
    bytes: Uint8Array.from(bytes),
    shifts: Uint8Array.from(shifts),
    masks: Uint8Array.from(masks),
    weights: Float64Array.from(weights, (w) => 2 ** w),
    needBytes,
    half: 2 ** (def.length - 1),
    full: 2 ** def.length,
    wide: def.length > 53 || def.valueType === 'float64',
    grid,
    exactScale,
  };
}

/**
 * Parses a DBC file and compiles each of its messages once, so that what only compiling finds (a signal
 * past byte 64, multiplexers in a circle) is an error of that file — never of the set it joins, where it
 * disabled every file.
 */
export function parseUsableDbc(text: string, file: string): DbcDatabase {
  const db = parseDbc(text, file);
  for (const msg of db.messages) new MessageDecoder(msg, file);
  return db;
}

/** One message, compiled. `decode()` fills `present`, `raw` and `value` in place. */
export class MessageDecoder {
  readonly signals: CompiledSignal[];
  readonly present: Uint8Array;
  readonly raw: Float64Array;
  readonly value: Float64Array;
  /** Signals present after the last decode(). */
  presentCount = 0;

  constructor(
    readonly msg: DbcMessage,
    file: string,
  ) {
    // Multiplexers before the signals that depend on them, whatever the order in the file.
    const byName = new Map(msg.signals.map((s) => [s.name, s]));
    // Memoised, iteratively: a chain of thousands of multiplexers is walked once, not once per signal.
    const depths = new Map<DbcSignal, number>();
    const depth = (s: DbcSignal): number => {
      const chain: DbcSignal[] = [];
      const onChain = new Set<DbcSignal>();
      let cur: DbcSignal | undefined = s;
      let d = 0;
      while (cur !== undefined) {
        const known = depths.get(cur);
        if (known !== undefined) {
          d = known;
          break;
        }
        if (onChain.has(cur)) throw new DbcParseError(file, s.line, `multiplexers of ${msg.name} depend on each other in a circle (at ${s.name})`);
        chain.push(cur);
        onChain.add(cur);
        cur = cur.muxer === undefined ? undefined : byName.get(cur.muxer);
        if (cur === undefined) d = -1; // the chain's top: its own depth is 0
      }
      for (let i = chain.length - 1; i >= 0; i--) depths.set(chain[i]!, ++d);
      return depths.get(s)!;
    };
    const ordered = [...msg.signals]
      .map((s) => ({ s, d: depth(s) }))
      .sort((a, b) => a.d - b.d)
      .map((x) => x.s);
    const index = new Map<string, number>();
    this.signals = ordered.map((s, i) => {
      index.set(s.name, i);
      return compileSignal(s, s.muxer === undefined ? -1 : index.get(s.muxer)!, file);
    });
    const n = this.signals.length;
    this.present = new Uint8Array(n);
    this.raw = new Float64Array(n);
    this.value = new Float64Array(n);
    this.exact = new Array<bigint | undefined>(n).fill(undefined);
  }

  /**
   * Per signal: the raw value exactly, when it is an integer a double cannot hold (beyond ±2^53: a 64-bit
   * counter or serial number); undefined otherwise (`raw` is exact then).
   */
  readonly exact: (bigint | undefined)[];

  /** Decodes every signal present in `data`. Returns how many are present. */
  decode(data: Uint8Array): number {
    const sigs = this.signals;
    const len = data.length;
    let count = 0;
    for (let i = 0; i < sigs.length; i++) {
      const s = sigs[i]!;
      this.present[i] = 0;
      if (s.needBytes > len) continue;
      if (s.muxerIndex >= 0) {
        if (this.present[s.muxerIndex] === 0) continue;
        const m = this.raw[s.muxerIndex]!;
        const r = s.ranges;
        let hit = false;
        for (let k = 0; k < r.length; k += 2) {
          if (m >= r[k]! && m <= r[k + 1]!) {
            hit = true;
            break;
          }
        }
        if (!hit) continue;
      }
      let raw: number;
      if (s.wide) {
        // Only a wide signal ever has an exact value: the others' stay undefined without a write per frame.
        this.exact[i] = undefined;
        const bits = readWide(s, data);
        if (s.def.valueType === 'float64') {
          scratch.setBigUint64(0, bits);
          raw = scratch.getFloat64(0);
        } else {
          raw = Number(bits);
          if (!Number.isSafeInteger(raw)) this.exact[i] = bits;
        }
      } else {
        raw = 0;
        const b = s.bytes;
        for (let k = 0; k < b.length; k++) raw += ((data[b[k]!]! >> s.shifts[k]!) & s.masks[k]!) * s.weights[k]!;
        if (s.def.valueType === 'float32') {
          scratch.setUint32(0, raw);
          raw = scratch.getFloat32(0);
        } else if (s.def.signed && raw >= s.half) raw -= s.full;
      }
      this.present[i] = 1;
      this.raw[i] = raw;
      this.value[i] = raw * s.def.factor + s.def.offset;
      count++;
    }
    this.presentCount = count;
    return count;
  }

  /** The value-table label for signal i's current raw value, if it has one. */
  label(i: number): string | undefined {
    return labelOf(this.signals[i]!.def, this.raw[i]!, this.exact[i]);
  }

  /** Signal i's current value as events carry it (shownValue). */
  shown(i: number): number | string {
    return shownValue(this.signals[i]!, this.value[i]!, this.raw[i]!, this.exact[i]);
  }
}

/** A signal's value-table label for a raw value (`exact`: the raw value when a double cannot hold it). */
export function labelOf(def: DbcSignal, raw: number, exact: bigint | undefined): string | undefined {
  const values = def.values;
  return values === undefined ? undefined : values.get(exact !== undefined ? exact.toString() : String(raw));
}

/**
 * A signal's physical value as events and `GET /api/v1/signals` carry it (`value`, `raw`, `exact`: as
 * MessageDecoder holds them). Integer signals: a JSON number when its text is the exact value, else the
 * exact decimal text, written as JavaScript writes numbers ("17279655951921914625" where a double says
 * 17279655951921914000; "17279655951921914.625" for a factor of 0.001), as canmatrix computes them with
 * Decimal (cantools gives a Python int for factor 1, offset 0, else a float that loses those digits).
 * Float signals: tidyValue.
 */
export function shownValue(s: CompiledSignal, value: number, raw: number, exact: bigint | undefined): number | string {
  if (s.def.valueType !== 'int') return tidyValue(value);
  const x = s.exactScale;
  if (x === undefined) return onGrid(value, s.grid);
  // An integer raw value is exact in `raw` up to 2^53, in `exact` beyond.
  const text = decimalText(scaled(exact ?? BigInt(raw), x.f, x.o, s.grid));
  const n = Number(text);
  return String(n) === text ? n : text;
}

/**
 * A float signal's value as shown: raw * factor lands on binary fractions (0.1 * 3 = 0.30000000000000004);
 * DOUBLE_DIGITS significant digits drop that noise. NaN and ±Infinity are not JSON numbers: they become the
 * strings "NaN", "Infinity", "-Infinity".
 */
export function tidyValue(v: number): number | string {
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v)) return v;
  return Number(v.toPrecision(DOUBLE_DIGITS));
}

/**
 * `v`, computed in doubles, as the multiple of 10^grid it stands for. Its error is under a third of 10^grid
 * when the values' digits fit a double (exactScale undefined), so rounding at the grid's digit gives the
 * exact decimal — also where an offset cancels most of raw * factor, which rounding to 15 significant
 * digits of the small result did not (0.1000003814697 for 0.1).
 */
function onGrid(v: number, grid: number): number {
  // The common case (integer factor and offset): an integer double is its own exact value.
  if (grid >= 0 && Number.isSafeInteger(v)) return v;
  const a = Math.abs(v);
  // Digits from v's first one down to the grid's; none: v is under one grid step (0 or ±10^grid).
  const k = a === 0 ? 1 : Math.floor(Math.log10(a)) - grid + 1;
  if (k >= 1) return Number(v.toPrecision(Math.min(k, 100)));
  return a < 0.5 * 10 ** grid ? 0 : Math.sign(v) * Number(`1e${grid}`);
}

/** Signals longer than 53 bits and doubles: their bits, exact, through BigInt (signed ones sign-extended). */
function readWide(s: CompiledSignal, data: Uint8Array): bigint {
  let raw = 0n;
  const b = s.bytes;
  for (let k = 0; k < b.length; k++) {
    raw += BigInt((data[b[k]!]! >> s.shifts[k]!) & s.masks[k]!) << BigInt(Math.log2(s.weights[k]!));
  }
  if (s.def.valueType !== 'float64' && s.def.signed && raw >= 1n << BigInt(s.def.length - 1)) raw -= 1n << BigInt(s.def.length);
  return raw;
}

/** A DBC file and the bus it applies to (undefined: every bus). */
export interface BoundDatabase {
  bus: string | undefined;
  db: DbcDatabase;
}

/** Map key for an id: extended ids are kept apart from standard ones with the same number. */
function idKey(id: number, ext: boolean): number {
  return ext ? id + 0x20000000 : id;
}

/**
 * The J1939 parameter group number of a 29-bit id: EDP, DP, PF and — for PDU2 (PF ≥ 240), where it is the
 * group extension — PS; for PDU1 PS is the destination address and not part of the PGN. Priority and
 * source address are not either (SAE J1939-21; canmatrix's ArbitrationId.pgn).
 */
export function j1939Pgn(id: number): number {
  const pf = (id >> 16) & 0xff;
  return (id >> 8) & (pf >= 240 ? 0x3ffff : 0x3ff00);
}

/**
 * Every loaded DBC, looked up by bus and id. A file bound to a bus wins over a bare file for that bus;
 * between files of the same binding, the first to define an id wins (and a warning says so).
 */
export class SignalDecoder {
  private readonly global = new Map<number, MessageDecoder>();
  private readonly perBus = new Map<string, Map<number, MessageDecoder>>();
  /** J1939 messages by PGN: a frame no id matches exactly matches its parameter group from any source. */
  private readonly globalPgn = new Map<number, MessageDecoder>();
  private readonly perBusPgn = new Map<string, Map<number, MessageDecoder>>();
  readonly warnings: string[] = [];
  readonly messageCount: number;
  /** Whether any file has a J1939 message: without one, an unknown extended id costs no PGN lookups. */
  private readonly anyPgn: boolean;

  constructor(readonly databases: readonly BoundDatabase[]) {
    let count = 0;
    for (const { bus, db } of databases) {
      const target = bus === undefined ? this.global : (this.perBus.get(bus) ?? new Map<number, MessageDecoder>());
      if (bus !== undefined) this.perBus.set(bus, target);
      const pgns = bus === undefined ? this.globalPgn : (this.perBusPgn.get(bus) ?? new Map<number, MessageDecoder>());
      if (bus !== undefined) this.perBusPgn.set(bus, pgns);
      for (const msg of db.messages) {
        const key = idKey(msg.id, msg.extended);
        const had = target.get(key);
        if (had !== undefined) {
          this.warnings.push(`${db.file}:${msg.line}: ${msg.name} has the id of ${had.msg.name} from an earlier file${bus ? ` for ${bus}` : ''}: the earlier one is used`);
          continue;
        }
        const dec = new MessageDecoder(msg, db.file);
        target.set(key, dec);
        count++;
        // The first message of a PGN answers for its other sources (one defined per source address, as some
        // files do, still matches its own id exactly).
        if (msg.j1939 && !pgns.has(j1939Pgn(msg.id))) pgns.set(j1939Pgn(msg.id), dec);
      }
    }
    this.messageCount = count;
    this.anyPgn = this.globalPgn.size > 0 || [...this.perBusPgn.values()].some((m) => m.size > 0);
  }

  /**
   * The message decoder for a frame, or undefined when no DBC describes it: its exact id, else (extended
   * ids) the J1939 parameter group of its PGN — the same engine message from source address 0x00 or 0x01,
   * as CANalyzer and SavvyCAN match it. A file bound to the bus wins over a bare one at each step.
   */
  lookup(bus: string, id: number, ext: boolean): MessageDecoder | undefined {
    const key = idKey(id, ext);
    if (this.perBus.size > 0) {
      const own = this.perBus.get(bus)?.get(key);
      if (own !== undefined) return own;
    }
    const exact = this.global.get(key);
    if (exact !== undefined || !ext || !this.anyPgn) return exact;
    const pgn = j1939Pgn(id);
    return this.perBusPgn.get(bus)?.get(pgn) ?? this.globalPgn.get(pgn);
  }

  /**
   * Decodes a frame when a DBC describes it and returns its decoder, whose arrays then hold this frame's
   * values (until the next decode of the same message). Remote and error frames carry no signals.
   */
  decodeFrame(f: CanFrame): MessageDecoder | undefined {
    if (f.rtr || f.err) return undefined;
    const dec = this.lookup(f.bus, f.id, f.ext);
    if (dec !== undefined) dec.decode(f.data);
    return dec;
  }
}
