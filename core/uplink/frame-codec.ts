/**
 * The data plane's binary batches (WebSocket binary messages), shared by agent and bridge.
 * JSON per frame would cost ~10x the bytes and CPU; this costs 20 bytes plus the payload per frame.
 *
 * Batch layout (big-endian):
 *   u8  kind            1 = UP (agent → bridge, frames received on the agent's buses)
 *                       2 = DOWN (bridge → agent, frames to transmit, relayed from a group peer)
 *   u48 batch           link-level batch number, acknowledged by the receiver
 *   f64 clockOffsetMs   add to a frame's tsUs / 1000 to get the bridge's clock (UP: the agent's estimate of
 *                       its own offset; DOWN: the origin agent's, passed through) — see core/uplink/clock.ts
 *   f64 clockErrorMs    the bound of that conversion (half the round trip of the sample it came from)
 *   u8  originLen, origin (UTF-8)   DOWN only: the dongle the frames come from (the loop guard)
 *   u8  busCount, then busCount × (u8 len, name)
 *   u16 frameCount, then frameCount × frame
 * Frame:
 *   u8  bus index
 *   u32 seq             per-bus sequence number assigned by the origin agent (wraps at 2^32)
 *   u32 can_id          id | 0x80000000 extended | 0x40000000 RTR | 0x20000000 error (SocketCAN's flags)
 *   u8  flags           0x01 FD, 0x02 BRS, 0x04 ESI, 0x08 direction tx
 *   u8  dlc
 *   u8  len             payload bytes (0..64)
 *   f64 tsUs            origin receive time, µs since the epoch
 *   len × u8 data
 */
import { CAN_EFF_MASK, frameShapeProblem, type CanFrame } from '../can/frame.js';
import { BUS_RULE, ID_RULE } from '../names.js';
import { clockProblem, type ClockFix } from './clock.js';

export const KIND_UP = 1;
export const KIND_DOWN = 2;
export type BatchKind = typeof KIND_UP | typeof KIND_DOWN;

const EFF = 0x80000000;
const RTR = 0x40000000;
const ERR = 0x20000000;

/** Hard limits a receiver enforces before looking at the content. */
export const MAX_FRAMES_PER_BATCH = 4096;
/** The bus table's count is one byte, and so is a frame's bus index: a batch names at most this many buses. */
export const MAX_BUSES_PER_BATCH = 255;
/** A name's length is one byte (bus names and dongle ids are far shorter: core/names.ts). */
const MAX_NAME_BYTES = 255;
/** Payload bytes of a CAN FD frame, the most a frame's length byte may say. */
const MAX_DATA_BYTES = 64;
export const MAX_BATCH_BYTES = 32 + 256 * 17 + MAX_FRAMES_PER_BATCH * (20 + 64);

export interface SequencedFrame {
  frame: CanFrame;
  seq: number;
}

export interface Batch {
  kind: BatchKind;
  batch: number;
  /** How the frames' tsUs convert to the bridge's clock; absent when encoding: {0, 0} (already on it). */
  clock?: ClockFix;
  origin?: string;
  frames: SequencedFrame[];
  /** Decoded batches: the bus table as sent (every name the batch names, frames or not). Ignored when encoding. */
  buses?: string[];
}

/** What encodeBatch refuses to write (its bytes would not say what was meant): a bug in the caller, never input. */
export class BatchEncodeError extends Error {}

/** Distinct names nameBytes remembers before it starts over (bus names and dongle ids: a fleet has thousands). */
const MAX_CACHED_NAMES = 8192;
const nameCache = new Map<string, Buffer>();

/** A bus name or dongle id as UTF-8, made once per name: a DOWN batch is encoded per relayed UP batch. */
function nameBytes(name: string): Buffer {
  let b = nameCache.get(name);
  if (b === undefined) {
    if (nameCache.size >= MAX_CACHED_NAMES) nameCache.clear();
    nameCache.set(name, (b = Buffer.from(name, 'utf8')));
  }
  return b;
}

/**
 * Encodes a batch. Throws BatchEncodeError rather than write bytes that would not decode to it: more than
 * MAX_FRAMES_PER_BATCH frames or MAX_BUSES_PER_BATCH buses, a name or payload longer than its length byte
 * allows (a count written into one byte wraps, and every bus index after it names the wrong bus), a clock
 * fix the receiver refuses.
 */
export function encodeBatch(b: Batch): Buffer {
  if (b.frames.length > MAX_FRAMES_PER_BATCH) throw new BatchEncodeError(`a batch holds at most ${MAX_FRAMES_PER_BATCH} frames`);
  const badClock = b.clock && clockProblem(b.clock);
  if (badClock) throw new BatchEncodeError(badClock);
  // The bus table, in order of first use; a batch names one or a few buses, so a list beats a Map here.
  const busNames: string[] = [];
  let size = 1 + 6 + 16 + 1 + 2;
  const origin = b.kind === KIND_DOWN ? nameBytes(b.origin ?? '') : undefined;
  if (origin) {
    if (origin.length > MAX_NAME_BYTES) throw new BatchEncodeError(`origin dongle id of ${origin.length} bytes; at most ${MAX_NAME_BYTES}`);
    size += 1 + origin.length;
  }
  for (let i = 0; i < b.frames.length; i++) {
    const frame = b.frames[i]!.frame;
    if (!busNames.includes(frame.bus)) {
      if (busNames.length === MAX_BUSES_PER_BATCH) throw new BatchEncodeError(`a batch names at most ${MAX_BUSES_PER_BATCH} buses (frame ${i} is on a further one)`);
      const n = nameBytes(frame.bus).length;
      if (n > MAX_NAME_BYTES) throw new BatchEncodeError(`bus name of ${n} bytes; at most ${MAX_NAME_BYTES}`);
      busNames.push(frame.bus);
      size += 1 + n;
    }
    if (frame.data.length > MAX_DATA_BYTES) throw new BatchEncodeError(`frame ${i} has ${frame.data.length} data bytes; at most ${MAX_DATA_BYTES}`);
    size += 20 + frame.data.length;
  }
  const buf = Buffer.allocUnsafe(size);
  let o = 0;
  buf[o++] = b.kind;
  buf.writeUIntBE(b.batch, o, 6);
  o += 6;
  buf.writeDoubleBE(b.clock?.offsetMs ?? 0, o);
  buf.writeDoubleBE(b.clock?.errorMs ?? 0, o + 8);
  o += 16;
  if (origin) {
    buf[o++] = origin.length;
    origin.copy(buf, o);
    o += origin.length;
  }
  buf[o++] = busNames.length;
  for (const name of busNames) {
    const n = nameBytes(name);
    buf[o++] = n.length;
    n.copy(buf, o);
    o += n.length;
  }
  buf.writeUInt16BE(b.frames.length, o);
  o += 2;
  for (let i = 0; i < b.frames.length; i++) {
    const { frame: f, seq } = b.frames[i]!;
    buf[o++] = busNames.length === 1 ? 0 : busNames.indexOf(f.bus);
    buf.writeUInt32BE(seq >>> 0, o);
    o += 4;
    buf.writeUInt32BE(((f.id & CAN_EFF_MASK) | (f.ext ? EFF : 0) | (f.rtr ? RTR : 0) | (f.err ? ERR : 0)) >>> 0, o);
    o += 4;
    buf[o++] = (f.fd ? 1 : 0) | (f.brs ? 2 : 0) | (f.esi ? 4 : 0) | (f.direction === 'tx' ? 8 : 0);
    buf[o++] = f.dlc;
    buf[o++] = f.data.length;
    buf.writeDoubleBE(f.tsUs, o);
    o += 8;
    buf.set(f.data, o);
    o += f.data.length;
  }
  return buf;
}

/**
 * The frame count of an encoded batch, read from its header alone (for counting what is dropped without
 * decoding it); 0 for a buffer too short to say.
 */
export function batchFrameCount(buf: Buffer): number {
  let o = 1 + 6 + 16;
  if (buf[0] === KIND_DOWN) o += 1 + (buf[o] ?? 0);
  const busCount = buf[o++];
  if (busCount === undefined) return 0;
  for (let i = 0; i < busCount; i++) o += 1 + (buf[o] ?? 0);
  return o + 2 <= buf.length ? buf.readUInt16BE(o) : 0;
}

export class BatchDecodeError extends Error {}

/** Decodes and validates a batch; throws BatchDecodeError with the reason on any malformed input. */
export function decodeBatch(buf: Buffer): Batch {
  if (buf.length > MAX_BATCH_BYTES) throw new BatchDecodeError(`batch of ${buf.length} bytes exceeds ${MAX_BATCH_BYTES}`);
  let o = 0;
  const need = (n: number): void => {
    if (o + n > buf.length) throw new BatchDecodeError(`batch truncated at byte ${o} (needs ${n} more)`);
  };
  need(7);
  const kind = buf[o++]!;
  if (kind !== KIND_UP && kind !== KIND_DOWN) throw new BatchDecodeError(`unknown batch kind ${kind}`);
  const batch = buf.readUIntBE(o, 6);
  o += 6;
  need(16);
  const clock: ClockFix = { offsetMs: buf.readDoubleBE(o), errorMs: buf.readDoubleBE(o + 8) };
  o += 16;
  const badClock = clockProblem(clock);
  if (badClock) throw new BatchDecodeError(badClock);
  let origin: string | undefined;
  if (kind === KIND_DOWN) {
    need(1);
    const len = buf[o++]!;
    need(len);
    origin = buf.toString('utf8', o, o + len);
    if (!ID_RULE.test(origin)) throw new BatchDecodeError(`bad origin dongle id ${JSON.stringify(origin.slice(0, 64))}`);
    o += len;
  }
  need(1);
  const busCount = buf[o++]!;
  const buses: string[] = [];
  for (let i = 0; i < busCount; i++) {
    need(1);
    const len = buf[o++]!;
    need(len);
    const name = buf.toString('utf8', o, o + len);
    if (!BUS_RULE.test(name)) throw new BatchDecodeError(`bad bus name ${JSON.stringify(name)}`);
    buses.push(name);
    o += len;
  }
  need(2);
  const count = buf.readUInt16BE(o);
  o += 2;
  if (count > MAX_FRAMES_PER_BATCH) throw new BatchDecodeError(`batch claims ${count} frames, more than ${MAX_FRAMES_PER_BATCH}`);
  const frames: SequencedFrame[] = new Array(count);
  // One copy of the whole batch, and each frame's data a view into it: the frames outlive the WebSocket's
  // receive buffer (backlogs, windows), but a copy (an ArrayBuffer) per frame would cost an allocation and
  // GC work per frame. A frame kept alone holds its batch's bytes at most (batches leave queues in order).
  const own = count > 0 ? new Uint8Array(buf) : undefined;
  for (let i = 0; i < count; i++) {
    need(20);
    const bi = buf[o++]!;
    const bus = buses[bi];
    if (bus === undefined) throw new BatchDecodeError(`frame ${i} names bus index ${bi} of ${buses.length}`);
    const seq = buf.readUInt32BE(o);
    o += 4;
    const canId = buf.readUInt32BE(o);
    o += 4;
    const flags = buf[o++]!;
    if (flags & ~0x0f) throw new BatchDecodeError(`frame ${i} has unknown flag bits 0x${flags.toString(16)}`);
    const dlc = buf[o++]!;
    const len = buf[o++]!;
    const tsUs = buf.readDoubleBE(o);
    o += 8;
    need(len);
    const frame: CanFrame = {
      bus,
      id: canId & CAN_EFF_MASK,
      ext: (canId & EFF) !== 0,
      rtr: (canId & RTR) !== 0,
      err: (canId & ERR) !== 0,
      fd: (flags & 1) !== 0,
      brs: (flags & 2) !== 0,
      esi: (flags & 4) !== 0,
      dlc,
      data: own!.subarray(o, o + len),
      tsUs,
      direction: flags & 8 ? 'tx' : 'rx',
    };
    o += len;
    if (!Number.isFinite(tsUs)) throw new BatchDecodeError(`frame ${i} has no valid timestamp`);
    // The bus name was checked once, in the bus table.
    const problem = frameShapeProblem(frame);
    if (problem) throw new BatchDecodeError(`frame ${i}: ${problem}`);
    frames[i] = { frame, seq };
  }
  if (o !== buf.length) throw new BatchDecodeError(`${buf.length - o} trailing bytes after ${count} frames`);
  return origin === undefined ? { kind, batch, clock, frames, buses } : { kind, batch, clock, origin, frames, buses };
}
