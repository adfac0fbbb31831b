/**
 * Console events as the history keeps them: compact bytes, turned into SSE text only when a client reads
 * them. A can_frame is kept as its frame fields (~45 bytes instead of ~200 of SSE text); other events
 * (rare) as their one-line JSON. The text is made by the one builder in normalize.ts, so a replayed
 * event is byte for byte what a live client got.
 *
 * An entry never knows its event id: the same entry may be shown on a dongle's and its group's console
 * under different ids. The SSE block's length is known without building it (a client's backlog is
 * measured in the bytes it would receive).
 *
 * Layout (little-endian): u8 kind, u32 length of the data JSON, then
 *  - frame (kind 0): u8 flags, u8 dlc, u8 data length, u32 can id, f64 tsUs, u32 represents (0: none),
 *    u8 bus length, bus, u8 dongle length, dongle, data;
 *  - other events (kind = 1 + index in CONSOLE_EVENT_TYPES): the data JSON (UTF-8).
 */
import type { CanFrame } from '../can/frame.js';
import { CONSOLE_EVENT_TYPES, type ConsoleEventType } from './events.js';
import { canFrameData } from './normalize.js';
import { isoFromUs } from './time.js';

const KIND_FRAME = 0;
const F_EXT = 1,
  F_RTR = 2,
  F_ERR = 4,
  F_FD = 8,
  F_BRS = 16,
  F_ESI = 32,
  F_TX = 64;
const FRAME_HEAD = 26;
/** ISO timestamps of years 0000–9999 are 27 characters ("2026-11-27T13:47:02.123456Z"). */
const ISO_US_MAX = 253_402_300_800_000_000;

/** Decimal digits of a non-negative integer, without making a string (event ids are 13-digit numbers). */
function digits(n: number): number {
  if (n < 1e4) return n < 10 ? 1 : n < 100 ? 2 : n < 1000 ? 3 : 4;
  if (n < 1e8) return n < 1e5 ? 5 : n < 1e6 ? 6 : n < 1e7 ? 7 : 8;
  if (n < 1e12) return n < 1e9 ? 9 : n < 1e10 ? 10 : n < 1e11 ? 11 : 12;
  return n < 1e13 ? 13 : n < 1e14 ? 14 : n < 1e15 ? 15 : String(n).length;
}

/**
 * Length of JSON.stringify(canFrameData(f, represents) + dongle), computed from the fields: a frame on a
 * console without viewers is never turned into text. Only for frames kept compactly: neither error frames
 * (their words vary) nor frames a DBC decodes (ConsoleStream keeps those as text). Names (bus, dongle) are plain ASCII by their rules
 * (core/names.ts), so JSON adds only the quotes. test/unit/core/history-store.test.ts checks it against the builder.
 */
export function frameJsonLength(f: CanFrame, represents: number | undefined, dongle: string | undefined): number {
  const n = f.data.length;
  let len = 79 + (f.tsUs >= 0 && f.tsUs < ISO_US_MAX ? 27 : isoFromUs(f.tsUs).length);
  len += f.bus.length + (f.ext || f.err ? 10 : f.id < 0x1000 ? 5 : (f.id >>> 0).toString(16).length + 2) + (f.ext ? 4 : 5) + digits(f.dlc) + (n === 0 ? 0 : 3 * n - 1);
  if (f.rtr) len += 17;
  if (f.fd) len += 13;
  if (f.brs) len += 11;
  if (f.esi) len += 11;
  if (f.err) len += 16;
  if (represents !== undefined) len += 14 + digits(represents);
  if (dongle !== undefined) len += 12 + dongle.length;
  return len;
}

/** Length of the SSE block `id: <id>\nevent: <type>\ndata: <json>\n\n`. */
export function sseLength(id: number, type: ConsoleEventType, jsonLength: number): number {
  return 21 + digits(id) + type.length + jsonLength;
}

export function sseBlock(id: number, type: ConsoleEventType, json: string): string {
  return `id: ${id}\nevent: ${type}\ndata: ${json}\n\n`;
}

/** A block that is not in the ring (a snapshot of current state): no id, so EventSource keeps its resume position. */
export function sseBlockWithoutId(type: ConsoleEventType, json: string): string {
  return `event: ${type}\ndata: ${json}\n\n`;
}

export function frameEntrySize(f: CanFrame, dongle: string | undefined): number {
  return FRAME_HEAD + f.bus.length + (dongle?.length ?? 0) + f.data.length;
}

function writeAscii(buf: Buffer, o: number, s: string): number {
  buf[o++] = s.length;
  for (let i = 0; i < s.length; i++) buf[o++] = s.charCodeAt(i);
  return o;
}

/** Writes a frame entry at `o`; `size` from frameEntrySize. */
export function writeFrameEntry(buf: Buffer, o: number, f: CanFrame, represents: number | undefined, dongle: string | undefined, jsonLength: number): void {
  buf[o] = KIND_FRAME;
  buf.writeUInt32LE(jsonLength, o + 1);
  buf[o + 5] = (f.ext ? F_EXT : 0) | (f.rtr ? F_RTR : 0) | (f.err ? F_ERR : 0) | (f.fd ? F_FD : 0) | (f.brs ? F_BRS : 0) | (f.esi ? F_ESI : 0) | (f.direction === 'tx' ? F_TX : 0);
  buf[o + 6] = f.dlc;
  buf[o + 7] = f.data.length;
  buf.writeUInt32LE(f.id >>> 0, o + 8);
  buf.writeDoubleLE(f.tsUs, o + 12);
  buf.writeUInt32LE(represents ?? 0, o + 20);
  o = writeAscii(buf, o + 24, f.bus);
  o = writeAscii(buf, o, dongle ?? '');
  buf.set(f.data, o);
}

export function textEntrySize(json: string): number {
  return 5 + Buffer.byteLength(json);
}

export function writeTextEntry(buf: Buffer, o: number, type: ConsoleEventType, json: string, size: number): void {
  buf[o] = 1 + CONSOLE_EVENT_TYPES.indexOf(type);
  // The JSON's length in characters is its SSE length in bytes only for ASCII; store the byte length.
  buf.writeUInt32LE(size - 5, o + 1);
  buf.write(json, o + 5, size - 5, 'utf8');
}

/** The SSE block length of the entry at `o` when shown with `id`. */
export function entrySseLength(buf: Buffer, o: number, id: number): number {
  return sseLength(id, entryType(buf, o), buf.readUInt32LE(o + 1));
}

export function entryType(buf: Buffer, o: number): ConsoleEventType {
  const k = buf[o]!;
  return k === KIND_FRAME ? 'can_frame' : CONSOLE_EVENT_TYPES[k - 1]!;
}

/** The data JSON of the entry at `o`. */
export function entryJson(buf: Buffer, o: number): string {
  if (buf[o] !== KIND_FRAME) return buf.toString('utf8', o + 5, o + 5 + buf.readUInt32LE(o + 1));
  const flags = buf[o + 5]!;
  const dataLen = buf[o + 7]!;
  let p = o + 24;
  const busLen = buf[p++]!;
  const bus = buf.toString('latin1', p, p + busLen);
  p += busLen;
  const dongleLen = buf[p++]!;
  const dongle = dongleLen === 0 ? undefined : buf.toString('latin1', p, p + dongleLen);
  p += dongleLen;
  const f: CanFrame = {
    bus,
    id: buf.readUInt32LE(o + 8),
    ext: (flags & F_EXT) !== 0,
    rtr: (flags & F_RTR) !== 0,
    err: (flags & F_ERR) !== 0,
    fd: (flags & F_FD) !== 0,
    brs: (flags & F_BRS) !== 0,
    esi: (flags & F_ESI) !== 0,
    dlc: buf[o + 6]!,
    data: buf.subarray(p, p + dataLen),
    tsUs: buf.readDoubleLE(o + 12),
    direction: (flags & F_TX) !== 0 ? 'tx' : 'rx',
  };
  const rep = buf.readUInt32LE(o + 20);
  const data = canFrameData(f, rep === 0 ? undefined : rep);
  if (dongle !== undefined) data.dongle = dongle;
  return JSON.stringify(data);
}
