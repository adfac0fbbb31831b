/**
 * The socketcand protocol's messages (linux-can/socketcand, doc/protocol.md), as text: what the agent
 * writes (frames, `< ok >`, `< error … >`) and what a client's command means. Pure functions, no I/O.
 *
 * Wire formats follow what socketcand itself writes, because that is what clients parse: in raw mode a
 * frame's data is one run of hex digits ("< frame 123 1.000000 11223344 >": python-can and SavvyCAN read
 * the fourth field as the whole payload), ids are 3 hex digits (standard) or 8 (extended: python-can and
 * socketcand tell the two apart by length), and a frame without data still has its field ("… 1.000000  >").
 * In BCM mode socketcand writes each byte followed by a space; so do we.
 */
import { CAN_EFF_MASK, CAN_SFF_MASK, frameProblem, nowUs, type CanFrame } from '../../core/can/frame.js';
import { BYTE_HEX } from '../../core/can/hex.js';
import { BUS_RULE } from '../../core/names.js';

export const HI = '< hi >';
export const OK = '< ok >';
export const ECHO = '< echo >';

/** `< error … >` with a reason a person can act on; angle brackets and control characters cannot reach the wire. */
export function errorMessage(reason: string): string {
  return `< error ${reason.replace(/[<>\x00-\x1f\x7f-\uffff]/g, '?').slice(0, 300)} >`;
}

function idText(f: CanFrame): string {
  return f.ext ? f.id.toString(16).toUpperCase().padStart(8, '0') : f.id.toString(16).toUpperCase().padStart(3, '0');
}

function timeText(tsUs: number): string {
  const us = Math.max(0, Math.floor(tsUs));
  return `${Math.floor(us / 1e6)}.${String(us % 1e6).padStart(6, '0')}`;
}

/**
 * A received frame as raw mode sends it. Classic data frames: `< frame ID SECS.USECS DATA >`; CAN FD:
 * `< fdframe ID FLAGS SECS.USECS DATA >` (FLAGS: 0x01 BRS, 0x02 ESI, 0x04 FDF, as the kernel's
 * canfd_frame.flags); remote frames: `< rtr ID SECS.USECS DLC >`; error frames: `< error CLASS SECS.USECS >`.
 */
export function rawFrameMessage(f: CanFrame): string {
  const t = timeText(f.tsUs);
  if (f.err) return `< error ${f.id.toString(16).toUpperCase().padStart(3, '0')} ${t} >`;
  if (f.rtr) return `< rtr ${idText(f)} ${t} ${f.dlc} >`;
  let data = '';
  for (let i = 0; i < f.data.length; i++) data += BYTE_HEX[f.data[i]!]!;
  if (f.fd) return `< fdframe ${idText(f)} ${BYTE_HEX[(f.brs ? 1 : 0) | (f.esi ? 2 : 0) | 4]} ${t} ${data} >`;
  return `< frame ${idText(f)} ${t} ${data} >`;
}

/**
 * A frame as BCM mode sends it for a subscription: each data byte followed by a space, as socketcand's BCM state
 * does. Error and remote frames never reach a subscription (Session.offer); CAN FD frames keep raw mode's form.
 */
export function bcmFrameMessage(f: CanFrame): string {
  if (f.err || f.rtr || f.fd) return rawFrameMessage(f);
  let data = '';
  for (let i = 0; i < f.data.length; i++) data += BYTE_HEX[f.data[i]!]! + ' ';
  return `< frame ${idText(f)} ${timeText(f.tsUs)} ${data} >`;
}

// ---- client commands ----

export type Command =
  | { kind: 'open'; bus: string }
  | { kind: 'mode'; mode: 'raw' | 'bcm' }
  | { kind: 'echo' }
  | { kind: 'send'; frame: CanFrame }
  | { kind: 'subscribe'; id: number; ext: boolean; intervalUs: number }
  | { kind: 'unsubscribe'; id: number; ext: boolean }
  | { kind: 'unsupported'; what: string }
  | { kind: 'invalid'; error: string };

/** BCM commands socketcand has and canrelay deliberately does not carry out, with the reason given to the client. */
const UNSUPPORTED: Record<string, string> = {
  add: 'cyclic transmit jobs (add, update, delete) are not supported: the agent never transmits on its own timer',
  update: 'cyclic transmit jobs (add, update, delete) are not supported: the agent never transmits on its own timer',
  delete: 'cyclic transmit jobs (add, update, delete) are not supported: the agent never transmits on its own timer',
  filter: 'content filters are not supported; use subscribe or rawmode',
  muxfilter: 'content filters are not supported; use subscribe or rawmode',
  controlmode: 'control mode (statistics) is not supported; canrelay publishes its statistics on /metrics',
  isotpmode: 'ISO-TP mode is not supported',
  statistics: 'control mode (statistics) is not supported; canrelay publishes its statistics on /metrics',
};

/**
 * An id as clients write it: hex, 1-8 digits. Eight digits, or the kernel's CAN_EFF_FLAG (0x80000000,
 * SavvyCAN sets it), mean extended; so does an id above 0x7FF (python-can writes extended ids unpadded),
 * the same rule as the bridge's send_frame command.
 */
export function parseId(tok: string | undefined): { id: number; ext: boolean } | string {
  if (tok === undefined) return 'the CAN id is missing';
  if (!/^[0-9A-Fa-f]{1,8}$/.test(tok)) return `CAN id ${JSON.stringify(tok.slice(0, 20))} is not 1-8 hex digits`;
  let v = parseInt(tok, 16);
  let ext = tok.length === 8;
  if (v >= 0x80000000) {
    ext = true;
    v -= 0x80000000;
  }
  if (v > CAN_EFF_MASK) return `CAN id ${tok} has the remote or error flag bits set; send remote frames with sendrtr`;
  if (v > CAN_SFF_MASK) ext = true;
  return { id: v, ext };
}

function parseDec(tok: string | undefined, max: number, what: string): number | string {
  if (tok === undefined || !/^\d{1,6}$/.test(tok)) return `${what} ${JSON.stringify((tok ?? '').slice(0, 20))} is not a decimal number`;
  const n = Number(tok);
  return n > max ? `${what} ${n} is above ${max}` : n;
}

function parseBytes(toks: string[], n: number, what: string): Uint8Array | string {
  if (toks.length !== n) return `${what} says ${n} data bytes but ${toks.length} follow`;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    if (!/^[0-9A-Fa-f]{1,2}$/.test(toks[i]!)) return `data byte ${JSON.stringify(toks[i]!.slice(0, 20))} is not 1-2 hex digits`;
    out[i] = parseInt(toks[i]!, 16);
  }
  return out;
}

function sendFrame(bus: string, fields: Omit<CanFrame, 'bus' | 'err' | 'esi' | 'tsUs' | 'direction'>): Command {
  const frame: CanFrame = { bus, err: false, esi: false, tsUs: nowUs(), direction: 'tx', ...fields };
  const problem = frameProblem(frame);
  return problem ? { kind: 'invalid', error: problem } : { kind: 'send', frame };
}

/**
 * Between a command's words: any run of spaces and tabs, as socketcand takes them (it reads commands with
 * sscanf, where a blank matches any run of white space); a hand-typed or tab-separated command was
 * otherwise refused for its layout alone.
 */
const WORD_GAP = /[ \t]+/;

/**
 * The meaning of one `< … >` message. `bus` is the open bus (frames are built for it), undefined before
 * `open`. Every field is checked here; the session decides what the current mode allows.
 */
export function parseCommand(message: string, bus: string | undefined): Command {
  const inner = message.slice(1, -1);
  // Printable ASCII and tabs only: other control characters (CR, LF) and non-ASCII are refused, not taken as gaps.
  if (!/^[\x20-\x7e\t]*$/.test(inner)) return { kind: 'invalid', error: 'commands are printable ASCII' };
  const t = inner.split(WORD_GAP).filter((w) => w !== '');
  const name = t[0];
  if (name === undefined) return { kind: 'invalid', error: 'empty command' };
  switch (name) {
    case 'open': {
      const b = t[1];
      if (t.length !== 2 || b === undefined || !BUS_RULE.test(b)) return { kind: 'invalid', error: 'open takes one bus name, e.g. "open can0"' };
      return { kind: 'open', bus: b };
    }
    case 'rawmode':
    case 'bcmmode':
      if (t.length !== 1) return { kind: 'invalid', error: `${name} takes no arguments` };
      return { kind: 'mode', mode: name === 'rawmode' ? 'raw' : 'bcm' };
    case 'echo':
      return t.length === 1 ? { kind: 'echo' } : { kind: 'invalid', error: 'echo takes no arguments' };
    case 'send':
    case 'sendrtr':
    case 'fdsend': {
      if (bus === undefined) return { kind: 'invalid', error: 'open a bus first ("open can0")' };
      const id = parseId(t[1]);
      if (typeof id === 'string') return { kind: 'invalid', error: id };
      if (name === 'sendrtr') {
        if (t.length !== 3) return { kind: 'invalid', error: 'sendrtr takes an id and a dlc, e.g. "sendrtr 123 2"' };
        const dlc = parseDec(t[2], 8, 'dlc');
        if (typeof dlc === 'string') return { kind: 'invalid', error: dlc };
        return sendFrame(bus, { ...id, rtr: true, fd: false, brs: false, dlc, data: new Uint8Array(0) });
      }
      if (name === 'send') {
        const dlc = parseDec(t[2], 8, 'dlc');
        if (typeof dlc === 'string') return { kind: 'invalid', error: `${dlc} (classic CAN carries 0-8 bytes; CAN FD: fdsend)` };
        const data = parseBytes(t.slice(3), dlc, 'dlc');
        if (typeof data === 'string') return { kind: 'invalid', error: data };
        return sendFrame(bus, { ...id, rtr: false, fd: false, brs: false, dlc, data });
      }
      const flags = t[2] !== undefined && /^[0-9A-Fa-f]{1,2}$/.test(t[2]) ? parseInt(t[2], 16) : -1;
      if (flags < 0) return { kind: 'invalid', error: 'fdsend takes id, flags (hex: 1 = BRS), length and the data bytes' };
      const len = parseDec(t[3], 64, 'length');
      if (typeof len === 'string') return { kind: 'invalid', error: len };
      const data = parseBytes(t.slice(4), len, 'length');
      if (typeof data === 'string') return { kind: 'invalid', error: data };
      return sendFrame(bus, { ...id, rtr: false, fd: true, brs: (flags & 1) !== 0, dlc: len, data });
    }
    case 'subscribe': {
      if (t.length !== 4) return { kind: 'invalid', error: 'subscribe takes secs, usecs and an id, e.g. "subscribe 0 0 123"' };
      const s = parseDec(t[1], 86_400, 'seconds');
      if (typeof s === 'string') return { kind: 'invalid', error: s };
      const us = parseDec(t[2], 999_999, 'microseconds');
      if (typeof us === 'string') return { kind: 'invalid', error: us };
      const id = parseId(t[3]);
      if (typeof id === 'string') return { kind: 'invalid', error: id };
      return { kind: 'subscribe', ...id, intervalUs: s * 1e6 + us };
    }
    case 'unsubscribe': {
      if (t.length !== 2) return { kind: 'invalid', error: 'unsubscribe takes an id, e.g. "unsubscribe 123"' };
      const id = parseId(t[1]);
      if (typeof id === 'string') return { kind: 'invalid', error: id };
      return { kind: 'unsubscribe', ...id };
    }
    default: {
      const why = UNSUPPORTED[name];
      if (why !== undefined) return { kind: 'unsupported', what: why };
      if (t.length >= 2 && /^[BC]$/.test(t[1]!))
        return { kind: 'unsupported', what: 'bus configuration (bit timing, control mode) is not supported: the gateway configures its interfaces' };
      return { kind: 'invalid', error: `unknown command ${JSON.stringify(name.slice(0, 20))}` };
    }
  }
}
