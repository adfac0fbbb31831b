/**
 * The floor under the bridge's CPU per relayed frame (make bench-fleet with BENCH_FLOOR): the least a relay
 * of canrelay's wire format can do in Node, run as its own process in place of the bridge, side by side
 * with it. It accepts every agent (no token, no database), answers hello with a welcome, and turns each
 * UP batch into a DOWN batch for the other dongle of its pair (fleet-0000 ↔ fleet-0001, …) through the
 * shared codec — no groups, acks, consoles, metrics, history or sequence checks. What the bridge costs
 * above it is canrelay's own work; what the floor costs is the transport's and the codec's.
 *
 *   node build/bench/relay-floor.js ws    the `ws` library, as the bridge uses it
 *   node build/bench/relay-floor.js raw   RFC 6455 framing written here over plain net sockets: one read
 *                                         per data event, one write per DOWN message, no streams in
 *                                         between (what a lean transport would save)
 *
 * Listens on 127.0.0.1, an ephemeral port (the bench finds it through /proc, as for the bridge).
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { decodeBatch, encodeBatch, KIND_DOWN, KIND_UP, MAX_BATCH_BYTES } from '../core/uplink/frame-codec.js';
import { PROTOCOL_VERSION, UPLINK_PATH } from '../core/uplink/messages.js';

/** One connected dongle, whatever the transport: how to send it a message, its DOWN numbering, its pair's id. */
interface Peer {
  send(data: Buffer | string): void;
  nextDown: number;
  pair: string;
}

const mode = process.argv[2] ?? 'ws';
if (mode !== 'ws' && mode !== 'raw') throw new Error(`relay-floor: mode is "ws" or "raw", not ${JSON.stringify(mode)}`);
const peers = new Map<string, Peer>();

/** The other dongle of a bench pair: fleet-0000 ↔ fleet-0001. */
function pairOf(dongle: string): string {
  const m = /^(.*-)(\d+)$/.exec(dongle);
  if (!m) return '';
  return m[1]! + String(Number(m[2]) ^ 1).padStart(m[2]!.length, '0');
}

/** A text message: the hello (anything else an agent sends — acks — is ignored). Returns the dongle. */
function onText(text: string, peer: Peer): string | undefined {
  const m = JSON.parse(text) as { t?: unknown; dongle?: unknown };
  if (m.t !== 'hello' || typeof m.dongle !== 'string') return undefined;
  peers.set(m.dongle, peer);
  peer.pair = pairOf(m.dongle);
  peer.send(JSON.stringify({ t: 'welcome', protocol: PROTOCOL_VERSION, dongle: m.dongle, event_ack: 0, group: 'floor', relay_epoch: 'floor' }));
  return m.dongle;
}

/** An UP batch: decoded (validated) and re-encoded as the peer's next DOWN batch. */
function onBinary(buf: Buffer, from: string | undefined, peer: Peer): void {
  if (from === undefined) return;
  const b = decodeBatch(buf);
  if (b.kind !== KIND_UP) return;
  const to = peers.get(peer.pair);
  if (to === undefined) return;
  to.send(encodeBatch({ kind: KIND_DOWN, batch: ++to.nextDown, clock: b.clock, origin: from, frames: b.frames }));
}

const server = createServer((_req, res) => res.writeHead(404).end());

if (mode === 'ws') {
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_BATCH_BYTES, perMessageDeflate: false, clientTracking: false });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (req.url !== UPLINK_PATH) return void socket.destroy();
    wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      const peer: Peer = { send: (d) => ws.send(d), nextDown: 0, pair: '' };
      let dongle: string | undefined;
      ws.on('message', (data: Buffer, isBinary) => {
        if (isBinary) onBinary(data, dongle, peer);
        else dongle = onText(data.toString('utf8'), peer) ?? dongle;
      });
      ws.on('close', () => dongle !== undefined && peers.get(dongle) === peer && peers.delete(dongle));
      ws.on('error', () => {});
    });
  });
} else {
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const key = req.headers['sec-websocket-key'];
    if (req.url !== UPLINK_PATH || typeof key !== 'string') return void socket.destroy();
    const accept = createHash('sha1')
      .update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11')
      .digest('base64');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    const peer: Peer = { send: (d) => socket.write(frame(typeof d === 'string' ? Buffer.from(d) : d, typeof d === 'string' ? 1 : 2)), nextDown: 0, pair: '' };
    let dongle: string | undefined;
    let pending = head.length > 0 ? head : Buffer.alloc(0);
    const parse = (): void => {
      // Complete frames off the front of what has arrived; a partial one waits for more.
      for (;;) {
        if (pending.length < 2) return;
        const opcode = pending[0]! & 0x0f;
        const masked = (pending[1]! & 0x80) !== 0;
        let len = pending[1]! & 0x7f;
        let at = 2;
        if (len === 126) {
          if (pending.length < 4) return;
          len = pending.readUInt16BE(2);
          at = 4;
        } else if (len === 127) {
          if (pending.length < 10) return;
          len = Number(pending.readBigUInt64BE(2));
          at = 10;
        }
        if (len > MAX_BATCH_BYTES) return void socket.destroy();
        const maskAt = at;
        if (masked) at += 4;
        if (pending.length < at + len) return;
        const payload = pending.subarray(at, at + len);
        if (masked) for (let i = 0; i < len; i++) payload[i]! ^= pending[maskAt + (i & 3)]!;
        pending = pending.subarray(at + len);
        if (opcode === 2) onBinary(payload, dongle, peer);
        else if (opcode === 1) dongle = onText(payload.toString('utf8'), peer) ?? dongle;
        else if (opcode === 8) return void socket.end(frame(Buffer.alloc(0), 8));
        else if (opcode === 9) socket.write(frame(Buffer.from(payload), 10));
      }
    };
    socket.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      parse();
    });
    socket.on('close', () => dongle !== undefined && peers.get(dongle) === peer && peers.delete(dongle));
    socket.on('error', () => {});
    parse();
  });
}

/** One unmasked, unfragmented server frame (header and payload in one buffer: one write). */
function frame(payload: Buffer, opcode: number): Buffer {
  const n = payload.length;
  const head = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const out = Buffer.allocUnsafe(head + n);
  out[0] = 0x80 | opcode;
  if (head === 2) out[1] = n;
  else if (head === 4) {
    out[1] = 126;
    out.writeUInt16BE(n, 2);
  } else {
    out[1] = 127;
    out.writeBigUInt64BE(BigInt(n), 2);
  }
  payload.copy(out, head);
  return out;
}

server.listen(0, '127.0.0.1');
