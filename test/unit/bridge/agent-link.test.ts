/**
 * cloud-bridge/agent-link.ts with a stand-in socket: the heartbeat judges silence on the monotonic clock (a
 * step of the bridge's wall clock neither cuts a live link nor keeps a dead one), and the UP position is
 * stored within a second of the last ack also when traffic stops.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import { pino } from 'pino';
import WebSocket from 'ws';
import { AgentLink, type LinkHandler, type Welcome } from '../../../cloud-bridge/agent-link.js';
import type { BatchPosition } from '../../../core/uplink/batch-dedupe.js';
import { encodeBatch, KIND_UP } from '../../../core/uplink/frame-codec.js';
import { PROTOCOL_VERSION } from '../../../core/uplink/messages.js';
import { testFrame } from '../../helpers/can-frames.js';
import { BridgeStats } from '../../../cloud-bridge/metrics.js';

class StandInSocket extends EventEmitter {
  readyState: number = WebSocket.OPEN;
  answering = true;
  terminated = false;
  ping(): void {
    if (this.answering) setImmediate(() => this.emit('pong'));
  }
  terminate(): void {
    if (this.terminated) return;
    this.terminated = true;
    this.readyState = WebSocket.CLOSED;
    setImmediate(() => this.emit('close', 1006, Buffer.alloc(0)));
  }
  close(): void {
    this.terminate();
  }
  readonly sent: string[] = [];
  bufferedAmount = 0;
  send(data: string | Buffer): void {
    if (typeof data === 'string') this.sent.push(data);
  }
}

test('a live link survives the wall clock stepped forward by a minute; a silent one is cut after 2.5 heartbeats whatever the wall clock says', async (t) => {
  const realNow = Date.now;
  t.after(() => (Date.now = realNow));
  const ws = new StandInSocket();
  const link = new AgentLink(
    ws as unknown as WebSocket,
    'gw',
    { closed: () => undefined, savePosition: () => undefined } as unknown as LinkHandler,
    new BridgeStats(),
    pino({ level: 'silent' }),
    {
      helloTimeoutMs: 60_000,
      // Wide enough that a stall of the test process (a loaded machine) does not cut the live link itself.
      pingMs: 100,
      deadAfterMs: 1000,
    },
  );
  t.after(() => link.terminate());
  await new Promise((r) => setTimeout(r, 150));
  Date.now = () => realNow() + 60_000; // NTP steps the bridge's clock
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(ws.terminated, false, 'answering its pings: kept');
  Date.now = () => realNow() - 60_000; // and back past where it was
  ws.answering = false; // the agent's link went dead (a half-open TCP connection)
  await new Promise((r) => setTimeout(r, 1600));
  assert.equal(ws.terminated, true, 'silent for 2.5 heartbeats: cut');
});

test('a link already dead by the heartbeat rule when its data is read (the process was frozen past it) takes none of it: cut, nothing relayed', async (t) => {
  const ws = new StandInSocket();
  const relayed: number[] = [];
  const handler = {
    hello: (): Welcome => ({ eventAck: 0, group: null, relayEpoch: 'epoch', position: { stream: 'run-00000001', batch: -1 } }),
    welcomed: () => undefined,
    frames: (_l: AgentLink, b: { batch: number }) => void relayed.push(b.batch),
    peerBehind: () => false,
    savePosition: () => undefined,
    closed: () => undefined,
  } as unknown as LinkHandler;
  // The ping timer will not run in this test: what a frozen process does not run before it reads the socket.
  const link = new AgentLink(ws as unknown as WebSocket, 'gw', handler, new BridgeStats(), pino({ level: 'silent' }), { helloTimeoutMs: 60_000, pingMs: 60_000, deadAfterMs: 200 });
  t.after(() => link.terminate());
  ws.emit('message', Buffer.from(JSON.stringify({ t: 'hello', protocol: PROTOCOL_VERSION, dongle: 'gw', run: 'run-00000001', version: 'test', buses: ['can0'] })), false);
  const batch = (n: number): Buffer =>
    encodeBatch({ kind: KIND_UP, batch: n, clock: { offsetMs: 0, errorMs: 2 }, frames: [{ frame: testFrame({ tsUs: Date.now() * 1000 }), seq: n + 1 }] });
  ws.emit('message', batch(0), true);
  assert.deepEqual(relayed, [0], 'a live link relays');
  await new Promise((r) => setTimeout(r, 300)); // silent past deadAfterMs
  ws.emit('message', batch(1), true);
  assert.deepEqual(relayed, [0], 'the batch read after the link was dead is not relayed');
  assert.equal(ws.terminated, true, 'and the link is cut');
});

test('the UP position is stored within a second of the last ack when traffic stops, not only when the link closes', async (t) => {
  const ws = new StandInSocket();
  const saved: number[] = [];
  const handler = {
    hello: (): Welcome => ({ eventAck: 0, group: null, relayEpoch: 'epoch', position: { stream: 'run-00000001', batch: -1 } }),
    welcomed: () => undefined,
    frames: () => undefined,
    peerBehind: () => false,
    savePosition: (_l: AgentLink, p: BatchPosition) => void saved.push(p.batch),
    closed: () => undefined,
  } as unknown as LinkHandler;
  const link = new AgentLink(ws as unknown as WebSocket, 'gw', handler, new BridgeStats(), pino({ level: 'silent' }), {
    helloTimeoutMs: 60_000,
    pingMs: 60_000,
    deadAfterMs: 150_000,
  });
  t.after(() => link.terminate());
  ws.emit('message', Buffer.from(JSON.stringify({ t: 'hello', protocol: PROTOCOL_VERSION, dongle: 'gw', run: 'run-00000001', version: 'test', buses: ['can0'] })), false);
  assert.equal(link.ready, true, ws.sent.join(' | '));
  // One batch every 100 ms for 1.9 s, then silence (the agent's link half-open from here on).
  for (let n = 0; n < 19; n++) {
    ws.emit('message', encodeBatch({ kind: KIND_UP, batch: n, clock: { offsetMs: 0, errorMs: 2 }, frames: [{ frame: testFrame({ tsUs: Date.now() * 1000 }), seq: n + 1 }] }), true);
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, 1500));
  const acked = ws.sent.map((m) => JSON.parse(m) as { t: string; batch?: number }).filter((m) => m.t === 'data_ack');
  assert.equal(acked.at(-1)?.batch, 18, 'every batch acknowledged');
  assert.equal(saved.at(-1), 18, `the stored position caught up with the acks (saves: ${saved.join(', ')})`);
  assert.ok(saved.length <= 5, `still at most about once a second: ${saved.length} saves`);
});

test('a recording answer the bridge cannot read fails that request with 502; the link stays up (it was closed, cutting the relay)', async (t) => {
  const ws = new StandInSocket();
  const stats = new BridgeStats();
  const handler = {
    hello: (): Welcome => ({ eventAck: 0, group: null, relayEpoch: 'epoch', position: { stream: 'run-00000001', batch: -1 } }),
    welcomed: () => undefined,
    savePosition: () => undefined,
    closed: () => undefined,
  } as unknown as LinkHandler;
  const link = new AgentLink(ws as unknown as WebSocket, 'gw', handler, stats, pino({ level: 'silent' }), { helloTimeoutMs: 60_000, pingMs: 60_000, deadAfterMs: 150_000 });
  t.after(() => link.terminate());
  ws.emit('message', Buffer.from(JSON.stringify({ t: 'hello', protocol: PROTOCOL_VERSION, dongle: 'gw', run: 'run-00000001', version: 'test', buses: ['can0'] })), false);
  assert.equal(link.ready, true);
  const answer = link.recordings.ask({ t: 'rec_list' });
  const asked = JSON.parse(ws.sent.at(-1)!) as { t: string; req: number };
  assert.equal(asked.t, 'rec_list');
  // A listing whose recording's error is longer than the schema allows (as a long --record-dir made it).
  ws.emit('message', Buffer.from(JSON.stringify({ t: 'rec_listing', req: asked.req, recordings: [{ id: 'x', error: 'e'.repeat(400) }] })), false);
  const r = await answer;
  assert.equal(r.t, 'rec_error');
  assert.equal(r.t === 'rec_error' ? r.status : 0, 502);
  assert.match(r.t === 'rec_error' ? r.error : '', /the dongle's answer could not be read/);
  assert.equal(ws.terminated, false, 'the link is not closed');
  assert.equal(link.ready, true);
  assert.equal(stats.rejected.get('malformed'), 1, 'counted');
  // One for a request no longer waiting (it timed out: a stalled SD card) is ignored too.
  ws.emit('message', Buffer.from(JSON.stringify({ t: 'rec_listing', req: 999, recordings: 'no' })), false);
  assert.equal(ws.terminated, false);
  assert.equal(stats.rejected.get('malformed'), 2);
  // Another malformed message is still a protocol error: the link is closed.
  ws.emit('message', Buffer.from(JSON.stringify({ t: 'data_ack', batch: 'x' })), false);
  assert.equal(ws.terminated, true);
});
