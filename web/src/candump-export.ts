/**
 * Writes console can_frame events as a candump log (`candump -L` format), the text every can-utils tool
 * and python-can read back, with the agent's own writer (core/can/candump-format.ts). With `direction`
 * each line ends in ` T` or ` R` as `candump -L -x` writes it.
 */
import { candumpTimestamp as candumpTimestampUs, formatCandumpLine } from '../../core/can/candump-format.js';
import { canFrameOf } from '../../core/console/frame-of-event.js';
import { usFromIso } from '../../core/console/time.js';
import type { CanFrameData } from './events.js';

/** "(1436509052.249713)" from the event's ISO timestamp, keeping its microseconds exactly. */
export function candumpTimestamp(ts: string): string {
  const us = usFromIso(ts);
  return candumpTimestampUs(Number.isFinite(us) ? us : 0);
}

/**
 * One candump line (no newline) for a can_frame event, or null when the event cannot be written. A group
 * console's frame (it names its dongle) is written on `<dongle>-<bus>`: both sides may have a can0, and
 * one file must still say which gateway each frame came from.
 */
export function candumpLine(f: CanFrameData, opts: { direction?: boolean } = {}): string | null {
  const frame = canFrameOf(f);
  if (frame === null) return null;
  if (f.dongle !== undefined) frame.bus = `${f.dongle}-${f.bus}`;
  return formatCandumpLine(frame, opts);
}

/** The whole log: one line per frame, in the given order, each ending in "\n". */
export function candumpLog(frames: Iterable<CanFrameData>, opts: { direction?: boolean } = {}): string {
  const out: string[] = [];
  for (const f of frames) {
    const line = candumpLine(f, opts);
    if (line !== null) out.push(line);
  }
  return out.length === 0 ? '' : out.join('\n') + '\n';
}

/** A file name like "canrelay-gw1-20261127-134702.log". */
export function candumpFileName(source: string, now: Date = new Date()): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  const stamp = `${now.getFullYear()}${p(now.getMonth() + 1)}${p(now.getDate())}-${p(now.getHours())}${p(now.getMinutes())}${p(now.getSeconds())}`;
  return `canrelay-${source.replace(/[^A-Za-z0-9._-]+/g, '_')}-${stamp}.log`;
}
