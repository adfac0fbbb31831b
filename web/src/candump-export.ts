/**
 * Writes console can_frame events as a candump log (`candump -L` format), the text every can-utils tool
 * and python-can read back:
 *
 *   (1436509052.249713) can0 123#DEADBEEF
 *   (1436509052.249713) can0 18DAF110#0210030000000000
 *   (1436509052.249713) can0 123#R  / 123#R3          remote request (for 3 bytes)
 *   (1436509052.249713) can0 123#1122334455667788_E   classic frame with raw DLC 14
 *   (1436509052.249713) can0 123##5112233             CAN FD with its flags nibble (FDF=4, BRS=1, ESI=2)
 *   (1436509052.249713) can0 20000080#00000000…       error frame (CAN_ERR_FLAG in the id)
 *
 * With `direction` each line ends in ` T` or ` R` as `candump -L -x` writes it.
 */
import type { CanFrameData } from './events.js';

const CAN_ERR_FLAG = 0x20000000;

/** "(1436509052.249713)" from the event's ISO timestamp, keeping its microseconds exactly. */
export function candumpTimestamp(ts: string): string {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$/.exec(ts);
  let sec: number;
  let frac: string;
  if (m) {
    sec = Math.floor(Date.parse(m[1] + 'Z') / 1000);
    frac = (m[2] ?? '').slice(0, 6).padEnd(6, '0');
  } else {
    const ms = Date.parse(ts);
    const v = Number.isFinite(ms) ? ms : 0;
    sec = Math.floor(v / 1000);
    frac = String(Math.round((v - sec * 1000) * 1000)).padStart(6, '0');
  }
  return `(${String(sec).padStart(10, '0')}.${frac})`;
}

/** One candump line (no newline) for a can_frame event, or null when the event cannot be written. */
export function candumpLine(f: CanFrameData, opts: { direction?: boolean } = {}): string | null {
  const idNum = /^0x[0-9A-Fa-f]{1,8}$/.test(f.id) ? parseInt(f.id.slice(2), 16) : NaN;
  if (!Number.isFinite(idNum)) return null;
  if (!/^[A-Za-z0-9_.:-]{1,32}$/.test(f.bus)) return null;
  let id: string;
  if (f.is_error) id = ((idNum | CAN_ERR_FLAG) >>> 0).toString(16).toUpperCase().padStart(8, '0');
  else if (f.is_extended) id = idNum.toString(16).toUpperCase().padStart(8, '0');
  else id = idNum.toString(16).toUpperCase().padStart(3, '0');
  const data = f.data_hex.replace(/ /g, '');
  let body: string;
  if (f.is_remote && !f.is_fd) {
    body = 'R';
    if (f.dlc > 8) body += '8_' + f.dlc.toString(16).toUpperCase();
    else if (f.dlc > 0) body += String(f.dlc);
  } else if (f.is_fd) {
    const flags = 4 | (f.brs ? 1 : 0) | (f.esi ? 2 : 0);
    body = '#' + flags.toString(16).toUpperCase() + data;
  } else {
    body = data;
    if (f.dlc > 8 && data.length === 16) body += '_' + f.dlc.toString(16).toUpperCase();
  }
  let line = `${candumpTimestamp(f.ts)} ${f.bus} ${id}#${body}`;
  if (opts.direction) line += f.direction === 'tx' ? ' T' : ' R';
  return line;
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
