/**
 * The one in-memory shape of a CAN frame, shared by every source, the console and the relay.
 * Kept flat and allocation-light: a frame is created once per bus event and never copied on the hot path.
 */
import { BUS_RULE } from '../names.js';

export type Direction = 'rx' | 'tx';

export interface CanFrame {
  /** Interface name, e.g. "can0". */
  bus: string;
  /** Arbitration id without flag bits: 11 bits, or 29 bits when `ext`. For error frames: the error class bits. */
  id: number;
  ext: boolean;
  /** Remote transmission request (classic CAN only). */
  rtr: boolean;
  /** Error frame (SocketCAN CAN_ERR_FLAG); `id` then carries the error class mask. */
  err: boolean;
  /** CAN FD frame. */
  fd: boolean;
  /** CAN FD bit-rate switch. */
  brs: boolean;
  /** CAN FD error state indicator. */
  esi: boolean;
  /**
   * Classic: the DLC on the wire, 0..15 (9..15 only with 8 data bytes, as candump's `_9`..`_F`).
   * RTR: the requested length. FD: the data length in bytes (0..64), as python-can does.
   */
  dlc: number;
  /** Payload. Empty for RTR frames. */
  data: Uint8Array;
  /** Time of reception (or transmission) in microseconds since the Unix epoch. */
  tsUs: number;
  direction: Direction;
}

export const CAN_SFF_MASK = 0x7ff;
export const CAN_EFF_MASK = 0x1fffffff;
export const CAN_ERR_MASK = 0x1fffffff;

/** Valid CAN FD payload lengths (ISO 11898-1). */
export const FD_LENGTHS: readonly number[] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64];

/** FD DLC code (0..15) for a payload length, or -1 when the length is not a valid FD length. */
export function fdLengthToDlc(len: number): number {
  return FD_LENGTHS.indexOf(len);
}

/**
 * The frame as this side transmitted it (`tx`), at `tsUs` (default: the frame's own time). A literal, not a
 * spread: it runs per relayed frame. The payload is shared, never copied (frames are immutable once made).
 */
export function transmittedFrame(f: CanFrame, tsUs: number = f.tsUs): CanFrame {
  return { bus: f.bus, id: f.id, ext: f.ext, rtr: f.rtr, err: f.err, fd: f.fd, brs: f.brs, esi: f.esi, dlc: f.dlc, data: f.data, tsUs, direction: 'tx' };
}

/**
 * The wall clock in µs: the clock of SocketCAN's kernel timestamps (CLOCK_REALTIME), and the provisional time
 * of a frame asked to be sent (commands, socketcand), which the transmit replaces with the time it was sent.
 * Generated frames (sim, replay) use monotonicUsClock() below.
 */
export function nowUs(): number {
  return Date.now() * 1000;
}

/**
 * A microsecond clock anchored to the wall clock once and then advanced by the monotonic clock: frame
 * timestamps that never step backwards (NTP corrections) and resolve better than Date.now()'s millisecond.
 */
export function monotonicUsClock(): () => number {
  const wall0 = Date.now() * 1000;
  const perf0 = performance.now();
  return () => Math.floor(wall0 + (performance.now() - perf0) * 1000);
}

/** Checks the invariants every producer must respect; returns a reason when broken, else null. */
export function frameProblem(f: CanFrame): string | null {
  if (!BUS_RULE.test(f.bus)) return `bus name ${JSON.stringify(f.bus)} is not an interface name`;
  return frameShapeProblem(f);
}

/**
 * Why a source cannot transmit this frame, or null: frameProblem, and an error frame is never sent (the
 * CAN controller generates them; one relayed from another bus, or given to a source, is a report, not
 * traffic). Every source's send() asks this.
 */
export function sendProblem(f: CanFrame): string | null {
  if (f.err) return 'error frames cannot be sent: the CAN controller generates them';
  return frameProblem(f);
}

/** frameProblem without the bus name: for a decoder that checked each bus name once (a batch's bus table). */
export function frameShapeProblem(f: CanFrame): string | null {
  if (!Number.isInteger(f.id) || f.id < 0) return `id ${f.id} is not a non-negative integer`;
  if (!f.err && f.id > (f.ext ? CAN_EFF_MASK : CAN_SFF_MASK)) return `id 0x${f.id.toString(16)} does not fit ${f.ext ? 29 : 11} bits`;
  if (f.err && f.id > CAN_ERR_MASK) return `error class 0x${f.id.toString(16)} does not fit 29 bits`;
  if (f.fd) {
    if (f.rtr) return 'CAN FD has no remote frames';
    if (fdLengthToDlc(f.data.length) < 0) return `${f.data.length} bytes is not a CAN FD length (0-8, 12, 16, 20, 24, 32, 48, 64)`;
    if (f.dlc !== f.data.length) return 'FD dlc must equal the data length';
  } else {
    if (f.data.length > 8) return `${f.data.length} data bytes need CAN FD (classic CAN carries at most 8)`;
    if (f.dlc < 0 || f.dlc > 15 || !Number.isInteger(f.dlc)) return `dlc ${f.dlc} is outside 0-15`;
    if (f.rtr) {
      if (f.data.length !== 0) return 'remote frames carry no data';
    } else if (f.dlc <= 8 ? f.dlc !== f.data.length : f.data.length !== 8) {
      return `dlc ${f.dlc} does not match ${f.data.length} data bytes`;
    }
  }
  return null;
}
