/**
 * The NATS message that carries DOWN batches from one node to another (SUBJECTS.down): every batch one
 * node queues for dongles connected to another during one event-loop turn, in one message, each with the
 * stream it belongs to (remote-sides.ts: side instance and seq, so the receiver forwards no hole). One
 * message per batch cost a NATS message's handling on both nodes for every batch (headers, subject,
 * parse, dispatch); bundled, that cost is shared by the turn's batches (make bench-cluster).
 *
 * Layout (big-endian): u8 version=2, u8 from-node length, from-node UTF-8, then records until the end:
 *   u8 dongle length, dongle UTF-8, u8 side length, side UTF-8, u8 rev length, rev, u32 seq,
 *   u32 batch length, batch bytes.
 * `rev` is the relay revision (group-relay.ts relayRevision) the sending node addressed the batch under:
 * the receiving node forwards it only under the same revision (remote-sides.ts), so a node whose view of
 * a group lags cannot put a former peer's frames, or frames mapped to another bus, on a bus. Version 1
 * (no revision) is refused: the nodes of a cluster run one canrelay version.
 * The batch bytes are an encoded DOWN batch (core/uplink/frame-codec.ts), unchanged: the receiving agent
 * validates them like any DOWN batch. The names (node, dongle, side stream) must follow the id rule
 * (core/names.ts) like every id from the network: a confused node's message is refused whole.
 */
import { ID_RULE } from '../../core/names.js';

const VERSION = 2;
const REV_RULE = /^[A-Za-z0-9_-]{0,64}$/;
/**
 * A bundle is closed once past this size, so it holds at most this plus one batch (a CAN FD batch can be
 * ~350 KB): up to ~610 KB, within NATS's default max_payload of 1 MiB, which a cluster must keep.
 */
export const BUNDLE_MAX_BYTES = 256 * 1024;

export interface BundledBatch {
  dongle: string;
  /** The sending side's stream id and the batch's place in it (0, 1, 2 …). */
  side: string;
  /** The relay revision of the target's group on the sending node ('' when it saw none). */
  rev: string;
  seq: number;
  batch: Buffer;
}

/** Builds one bundle; `bytes` tells when to close it. */
export class BundleWriter {
  private readonly parts: Buffer[] = [];
  bytes: number;

  constructor(from: string) {
    const f = Buffer.from(from, 'utf8');
    if (f.length > 255) throw new Error('node id too long for a DOWN bundle');
    this.parts.push(Buffer.from([VERSION, f.length]), f);
    this.bytes = 2 + f.length;
  }

  add(b: BundledBatch): void {
    const d = Buffer.from(b.dongle, 'utf8');
    const s = Buffer.from(b.side, 'utf8');
    const r = Buffer.from(b.rev, 'utf8');
    if (d.length > 255 || s.length > 255 || !REV_RULE.test(b.rev)) throw new Error('dongle, side or revision too long for a DOWN bundle');
    const head = Buffer.allocUnsafe(1 + d.length + 1 + s.length + 1 + r.length + 8);
    let o = head.writeUInt8(d.length, 0);
    o += d.copy(head, o);
    o = head.writeUInt8(s.length, o);
    o += s.copy(head, o);
    o = head.writeUInt8(r.length, o);
    o += r.copy(head, o);
    o = head.writeUInt32BE(b.seq >>> 0, o);
    head.writeUInt32BE(b.batch.length, o);
    this.parts.push(head, b.batch);
    this.bytes += head.length + b.batch.length;
  }

  get empty(): boolean {
    return this.parts.length === 2;
  }

  finish(): Buffer {
    return Buffer.concat(this.parts, this.bytes);
  }
}

/** The sender and batches of a bundle; throws on anything malformed (the message is then ignored and counted). */
export function readBundle(data: Uint8Array): { from: string; batches: BundledBatch[] } {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  let o = 0;
  const need = (n: number): void => {
    if (o + n > buf.length) throw new Error('DOWN bundle truncated');
  };
  const str = (what: string): string => {
    need(1);
    const n = buf.readUInt8(o++);
    need(n);
    const s = buf.toString('utf8', o, o + n);
    o += n;
    if (s !== '' && !ID_RULE.test(s)) throw new Error(`DOWN bundle with a bad ${what} id ${JSON.stringify(s.slice(0, 80))}`);
    return s;
  };
  need(1);
  if (buf.readUInt8(o++) !== VERSION) throw new Error('DOWN bundle of an unknown version');
  const from = str('node');
  if (from === '') throw new Error('DOWN bundle without its sender');
  const batches: BundledBatch[] = [];
  while (o < buf.length) {
    const dongle = str('dongle');
    const side = str('side stream');
    need(1);
    const revLen = buf.readUInt8(o++);
    need(revLen);
    const rev = buf.toString('utf8', o, o + revLen);
    o += revLen;
    if (!REV_RULE.test(rev)) throw new Error('DOWN bundle with a bad relay revision');
    need(8);
    const seq = buf.readUInt32BE(o);
    const len = buf.readUInt32BE(o + 4);
    o += 8;
    need(len);
    if (dongle === '' || side === '' || len === 0) throw new Error('DOWN bundle record without dongle, side or batch');
    // A copy: the bytes are written to an agent's socket later, and NATS may reuse its read buffer.
    batches.push({ dongle, side, rev, seq, batch: Buffer.from(buf.subarray(o, o + len)) });
    o += len;
  }
  return { from, batches };
}
