/**
 * Exact on-the-wire length of a CAN frame in bits, for bus load: SOF to EOF plus the 3-bit intermission,
 * with the real stuff bits of this frame's content (the CRC is computed, since its bits are stuffed too),
 * as can-utils' `canbusload -e` counts classic frames (its canframelen.c), so the two agree.
 *
 * Classic CAN (ISO 11898-1): SOF, id (11, or 11+SRR+IDE+18), RTR, IDE/r1, r0, DLC, data (none for RTR),
 * CRC-15 — dynamically stuffed (after five equal bits one complement bit, which starts the next run) —
 * then CRC delimiter, ACK, ACK delimiter, EOF (7) and intermission (3).
 * CAN FD: SOF … BRS at the nominal bitrate; ESI, DLC, data (dynamically stuffed), then the stuff count
 * (4) and CRC-17 (≤ 16 data bytes) or CRC-21 with fixed stuff bits (one before the stuff count and one
 * after every 4 bits: 6 or 7) and the CRC delimiter at the data bitrate when BRS is set; ACK, ACK
 * delimiter, EOF and intermission at the nominal rate. The fixed-stuffed part does not depend on the
 * content, so FD needs no CRC computation. The bit-rate switch happens inside BRS and the CRC delimiter;
 * those two bits are counted in the arbitration and data phase respectively.
 * Error frames (SocketCAN error messages) are reports from the controller, not frames on the wire: 0 bits.
 */
import type { CanFrame } from './frame.js';

/** Bits of one frame at the nominal (arbitration) bitrate and at the FD data bitrate. */
export interface FrameBits {
  nominal: number;
  data: number;
}

/** CRC delimiter, ACK slot, ACK delimiter, EOF (7), intermission (3). */
const CLASSIC_TRAILER = 3 + 7 + 3;
/** ACK slot, ACK delimiter, EOF (7), intermission (3): the nominal-rate tail of an FD frame. */
const FD_TRAILER = 2 + 7 + 3;

// The bit-stream walker: module state instead of an object keeps the per-frame hot path free of allocation.
let crc = 0;
let last = -1;
let run = 0;
let stuffed = 0;

function reset(): void {
  crc = 0;
  last = -1;
  run = 0;
  stuffed = 0;
}

/** Feeds the `n` low bits of `value`, most significant first, through CRC-15 and the stuffing rule. */
function feed(value: number, n: number): void {
  for (let i = n - 1; i >= 0; i--) {
    const bit = (value >>> i) & 1;
    const fb = ((crc >>> 14) ^ bit) & 1;
    crc = (crc << 1) & 0x7fff;
    if (fb) crc ^= 0x4599;
    stuff(bit);
  }
}

/** Stuffing only (bits after the CRC-15 input: the CRC itself, or FD where no CRC is needed). */
function stuff(bit: number): void {
  if (bit === last) {
    if (++run === 5) {
      stuffed++;
      // The stuff bit has the other value and is the first bit of the next run.
      last = bit ^ 1;
      run = 1;
    }
  } else {
    last = bit;
    run = 1;
  }
}

function feedNoCrc(value: number, n: number): void {
  for (let i = n - 1; i >= 0; i--) stuff((value >>> i) & 1);
}

function header(f: CanFrame, rtrOrRrs: number, fdf: number): void {
  feed(0, 1); // SOF
  if (f.ext) {
    feed(f.id >>> 18, 11);
    feed(0b11, 2); // SRR, IDE
    feed(f.id & 0x3ffff, 18);
    feed(rtrOrRrs, 1);
    feed(fdf, 1); // r1 (classic) / FDF
    feed(0, 1); // r0 (classic) / res
  } else {
    feed(f.id, 11);
    feed(rtrOrRrs, 1);
    feed(0, 1); // IDE
    feed(fdf, 1); // r0 (classic) / FDF
    if (fdf) feed(0, 1); // res
  }
}

/** Writes the frame's bit counts into `out` (reused by the caller: no allocation per frame). */
export function countFrameBits(f: CanFrame, out: FrameBits): FrameBits {
  if (f.err) {
    out.nominal = 0;
    out.data = 0;
    return out;
  }
  reset();
  const data = f.data;
  if (!f.fd) {
    header(f, f.rtr ? 1 : 0, 0);
    feed(f.dlc & 0xf, 4);
    if (!f.rtr) for (let i = 0; i < data.length; i++) feed(data[i]!, 8);
    const stuffedBits = (f.ext ? 39 : 19) + (f.rtr ? 0 : data.length * 8);
    feedNoCrc(crc, 15);
    out.nominal = stuffedBits + 15 + stuffed + CLASSIC_TRAILER;
    out.data = 0;
    return out;
  }
  // CAN FD: arbitration phase up to and including BRS.
  header(f, 0, 1);
  feed(f.brs ? 1 : 0, 1);
  const arbBits = f.ext ? 36 : 17; // SOF … BRS
  const arbStuffed = stuffed;
  feed(f.esi ? 1 : 0, 1);
  feed(fdDlcCode(data.length), 4);
  for (let i = 0; i < data.length; i++) feed(data[i]!, 8);
  const crcBits = data.length > 16 ? 21 : 17;
  const fixedStuff = Math.ceil((4 + crcBits) / 4);
  const dataPhase = 1 + 4 + data.length * 8 + (stuffed - arbStuffed) + 4 + crcBits + fixedStuff + 1;
  const arbPhase = arbBits + arbStuffed + FD_TRAILER;
  if (f.brs) {
    out.nominal = arbPhase;
    out.data = dataPhase;
  } else {
    out.nominal = arbPhase + dataPhase;
    out.data = 0;
  }
  return out;
}

function fdDlcCode(len: number): number {
  if (len <= 8) return len;
  if (len <= 24) return 8 + Math.ceil((len - 8) / 4);
  return len <= 32 ? 13 : len <= 48 ? 14 : 15;
}

/** Convenience for tests and one-off use: a fresh result. */
export function frameBits(f: CanFrame): FrameBits {
  return countFrameBits(f, { nominal: 0, data: 0 });
}
