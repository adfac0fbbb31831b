/**
 * Writes a frame as one candump log line (`candump -L`; the grammar is described in candump.ts, which
 * parses it). Browser-safe (no Node imports): the page's log export uses the same writer as the agent.
 */
import type { CanFrame } from './frame.js';
import { BYTE_HEX, HEX_DIGIT } from './hex.js';

/** SocketCAN's error-frame flag in a candump id (an error frame is written as 8 hex digits with it set). */
export const CAN_ERR_FLAG = 0x20000000;

export interface CandumpFormatOptions {
  /** Append ` T` (tx) or ` R` (rx) like `candump -L -x`. Default false: no suffix, which readers take as rx. */
  direction?: boolean;
  /**
   * Set the CANFD_FDF bit (0x4) in the FD flags nibble, as can-utils since 2023 (and Linux >= 6.2) write
   * it: `##4` / `##5` rather than the older `##0` / `##1`. Default true. Both spellings parse the same.
   */
  fdf?: boolean;
}

function pad(n: number, width: number): string {
  const s = String(n);
  return s.length >= width ? s : '0'.repeat(width - s.length) + s;
}

/** "(1436509052.249713)": seconds and microseconds since the epoch. */
export function candumpTimestamp(tsUs: number): string {
  const us = Math.round(tsUs);
  const sec = Math.floor(us / 1e6);
  return '(' + pad(sec, 10) + '.' + pad(us - sec * 1e6, 6) + ')';
}

/** Writes the frame as one candump log line, without a newline. */
export function formatCandumpLine(frame: CanFrame, options: CandumpFormatOptions = {}): string {
  let out = candumpTimestamp(frame.tsUs) + ' ' + frame.bus + ' ';

  if (frame.err) out += pad8Hex(frame.id + CAN_ERR_FLAG);
  else if (frame.ext) out += pad8Hex(frame.id);
  else out += HEX_DIGIT[(frame.id >> 8) & 15]! + BYTE_HEX[frame.id & 0xff]!;
  out += '#';

  const data = frame.data;
  if (frame.rtr && !frame.fd) {
    out += 'R';
    if (frame.dlc > 8) out += '8_' + HEX_DIGIT[frame.dlc & 15];
    else if (frame.dlc > 0) out += HEX_DIGIT[frame.dlc];
  } else {
    if (frame.fd) {
      const flags = (options.fdf === false ? 0 : 4) | (frame.brs ? 1 : 0) | (frame.esi ? 2 : 0);
      out += '#' + HEX_DIGIT[flags];
    }
    for (let k = 0; k < data.length; k++) out += BYTE_HEX[data[k]!]!;
    if (!frame.fd && frame.dlc > 8 && data.length === 8) out += '_' + HEX_DIGIT[frame.dlc & 15];
  }
  if (options.direction) out += frame.direction === 'tx' ? ' T' : ' R';
  return out;
}

function pad8Hex(v: number): string {
  return BYTE_HEX[(v >>> 24) & 0xff]! + BYTE_HEX[(v >>> 16) & 0xff]! + BYTE_HEX[(v >>> 8) & 0xff]! + BYTE_HEX[v & 0xff]!;
}
