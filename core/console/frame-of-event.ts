/**
 * The inverse of normalize.ts's canFrameData(): a console can_frame event back to a CanFrame, for tools
 * that write what a console showed in a frame format (the page's candump export). Browser-safe.
 */
import { frameProblem, type CanFrame } from '../can/frame.js';
import { parseCanId, parseHexBytes } from '../can/hex.js';
import type { CanFrameData } from './events.js';
import { usFromIso } from './time.js';

/** The frame an event stands for, or null when the event does not describe a valid frame. */
export function canFrameOf(d: CanFrameData): CanFrame | null {
  const id = /^0x[0-9A-Fa-f]{1,8}$/.test(d.id) ? parseCanId(d.id) : null;
  const data = parseHexBytes(d.data_hex);
  const tsUs = usFromIso(d.ts);
  if (id === null || data === null || !Number.isFinite(tsUs)) return null;
  const f: CanFrame = {
    bus: d.bus,
    id,
    ext: d.is_extended,
    rtr: d.is_remote === true,
    err: d.is_error === true,
    fd: d.is_fd === true,
    brs: d.brs === true,
    esi: d.esi === true,
    dlc: d.dlc,
    data,
    tsUs,
    direction: d.direction,
  };
  return frameProblem(f) === null ? f : null;
}
