/**
 * agent/socketcand/: sends waiting in the shared transmit queue are bounded per connection (256) and for
 * all connections together (1,024), so clients flooding a busy bus cannot fill the queue the bridge's
 * relay and commands use. A real server on loopback; the transmit queue is a stub that never completes, or
 * (sends that outlive their moment or their client) a real TxQueue on a bus that takes nothing.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import type { CanFrame } from '../../../core/can/frame.js';
import type { SendResult } from '../../../agent/sources/source.js';
import { SocketcandServer } from '../../../agent/socketcand/server.js';
import { MAX_SENDS_IN_FLIGHT, MAX_SENDS_IN_FLIGHT_ALL, SEND_MAX_WAIT_MS } from '../../../agent/socketcand/session.js';
import { socketcandTransmit } from '../../../agent/socketcand/start.js';
import { TxQueue } from '../../../agent/tx-queue.js';
import { RawClient } from '../../helpers/socketcand.js';

test('socketcand sends: at most 256 waiting per connection and 1,024 for all; a finished send makes room', async (t) => {
  const waiting: ((r: SendResult) => void)[] = [];
  const server = new SocketcandServer({
    listen: '127.0.0.1:0',
    allow: undefined,
    maxPendingBytes: 1 << 20,
    buses: () => ['can0'],
    transmit: { send: (_f: CanFrame, _sender, done) => void waiting.push(done), withdraw: () => undefined }, // a bus that takes nothing
    log: () => undefined,
  });
  const { port } = await server.start();
  const clients: RawClient[] = [];
  t.after(async () => {
    for (const c of clients) c.socket.destroy();
    await server.close();
  });
  for (let i = 0; i < 5; i++) {
    const c = await RawClient.connect(port);
    clients.push(c);
    for (const deadline = Date.now() + 5000; c.messages.length === 0; await new Promise((r) => setTimeout(r, 10))) assert.ok(Date.now() < deadline, '< hi >');
    assert.equal(await c.request('< open can0 >'), '< ok >');
    assert.equal(await c.request('< rawmode >'), '< ok >');
  }
  // Each of five connections sends 300 at once: 1,024 may wait in all, at most 256 from one connection.
  for (const c of clients) c.send('< send 123 1 01 >'.repeat(300));
  const errors = (c: RawClient): string[] => c.replies().filter((r) => r.startsWith('< error'));
  const refused = 5 * 300 - MAX_SENDS_IN_FLIGHT_ALL;
  for (const deadline = Date.now() + 10_000; clients.reduce((n, c) => n + errors(c).length, 0) < refused; ) {
    assert.ok(Date.now() < deadline, `errors: ${clients.map((c) => errors(c).length).join(', ')}; waiting ${waiting.length}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(waiting.length, MAX_SENDS_IN_FLIGHT_ALL, 'the whole: 1,024 waiting');
  assert.equal(server.stats.sendsRefused, refused);
  for (const c of clients) assert.ok(errors(c).length >= 300 - MAX_SENDS_IN_FLIGHT, 'no connection has more than 256 waiting');
  const all = clients.flatMap(errors);
  assert.ok(all.some((e) => /256 frames of this connection are already waiting/.test(e)));
  assert.ok(all.some((e) => /1024 frames of socketcand clients are already waiting/.test(e)));
  // One send done: room for one more, from a connection with fewer than 256 waiting.
  const lessThanFull = clients.find((c) => errors(c).length > 300 - MAX_SENDS_IN_FLIGHT)!;
  waiting.shift()!({ ok: true, tsUs: 0 });
  const before = lessThanFull.replies().length;
  lessThanFull.send('< send 123 1 02 >');
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(lessThanFull.replies().length, before, 'no error this time');
  assert.equal(waiting.length, MAX_SENDS_IN_FLIGHT_ALL);
});

test('socketcand: a reply queued while raw mode settles is written when it ends, even if its timer fires early', async (t) => {
  const server = new SocketcandServer({ listen: '127.0.0.1:0', allow: undefined, maxPendingBytes: 1 << 20, buses: () => ['can0'], transmit: undefined, log: () => undefined });
  const { port } = await server.start();
  const realNow = performance.now.bind(performance);
  t.after(async () => {
    performance.now = realNow;
    await server.close();
  });
  const c = await RawClient.connect(port);
  t.after(() => c.close());
  for (const deadline = realNow() + 5000; c.messages.length === 0; await new Promise((r) => setTimeout(r, 10))) assert.ok(realNow() < deadline, '< hi >');
  assert.equal(await c.request('< open can0 >'), '< ok >');
  assert.equal(await c.request('< rawmode >'), '< ok >');
  // The settle timer fires while the clock reads before its end (as a timer a millisecond early does).
  performance.now = () => realNow() - 50;
  assert.match(await c.request('< send 123 1 01 >', 3000), /^< error sending is off/);
});

/** A real server over a real TxQueue whose bus takes nothing until `open` (no node acknowledging). */
async function blockedBus(t: TestContext): Promise<{ tx: TxQueue; sent: CanFrame[]; open(): void; client(): Promise<RawClient> }> {
  let busy = true;
  const sent: CanFrame[] = [];
  const tx = new TxQueue((f) => (busy ? { ok: false, busy: true, error: 'ENOBUFS' } : (sent.push(f), { ok: true, tsUs: 0 })), { retryMs: 60_000, maxQueued: 1000 });
  const server = new SocketcandServer({
    listen: '127.0.0.1:0',
    allow: undefined,
    maxPendingBytes: 1 << 20,
    buses: () => ['can0'],
    transmit: socketcandTransmit(tx),
    log: () => undefined,
  });
  const { port } = await server.start();
  t.after(async () => {
    tx.stop();
    await server.close();
  });
  return {
    tx,
    sent,
    open: () => {
      busy = false;
    },
    client: async () => {
      const c = await RawClient.connect(port);
      t.after(() => c.close());
      for (const deadline = Date.now() + 5000; c.messages.length === 0; await new Promise((r) => setTimeout(r, 10))) assert.ok(Date.now() < deadline, '< hi >');
      assert.equal(await c.request('< open can0 >'), '< ok >');
      return c;
    },
  };
}

test('socketcand: frames still waiting for a busy bus when their client disconnects are never transmitted', async (t) => {
  const bus = await blockedBus(t);
  const c = await bus.client();
  c.send('< send 101 1 01 >< send 102 1 02 >< send 103 1 03 >');
  for (const deadline = Date.now() + 5000; bus.tx.length < 3; await new Promise((r) => setTimeout(r, 10))) assert.ok(Date.now() < deadline, 'three frames queued');
  c.socket.destroy();
  for (const deadline = Date.now() + 5000; bus.tx.length > 0; await new Promise((r) => setTimeout(r, 10))) assert.ok(Date.now() < deadline, 'withdrawn');
  bus.open(); // the bus wakes: nothing of the gone client goes out
  const other = await bus.client();
  other.send('< send 1FF 1 FF >');
  for (const deadline = Date.now() + 5000; bus.sent.length === 0; await new Promise((r) => setTimeout(r, 10))) assert.ok(Date.now() < deadline, 'the other client sends');
  assert.deepEqual(
    bus.sent.map((f) => f.id),
    [0x1ff],
  );
  assert.equal(bus.tx.stats.droppedSenderGone, 3);
});

test('socketcand: a send that waits more than 1 s for the bus is not transmitted, and its client is told', async (t) => {
  const bus = await blockedBus(t);
  const c = await bus.client();
  c.send('< send 101 1 01 >');
  const reply = await c.request('< echo >'); // the send has no reply when it is queued
  assert.equal(reply, '< echo >');
  await new Promise((r) => setTimeout(r, SEND_MAX_WAIT_MS + 200));
  bus.open();
  c.send('< send 102 1 02 >');
  for (const deadline = Date.now() + 5000; bus.sent.length === 0; await new Promise((r) => setTimeout(r, 10))) assert.ok(Date.now() < deadline, 'the later send');
  assert.deepEqual(
    bus.sent.map((f) => f.id),
    [0x102],
    'the late one never went out',
  );
  for (const deadline = Date.now() + 5000; !c.replies().some((r) => r.startsWith('< error')); await new Promise((r) => setTimeout(r, 10)))
    assert.ok(Date.now() < deadline, 'an error');
  assert.match(c.replies().find((r) => r.startsWith('< error'))!, /^< error could not transmit on can0: waited 1000 ms for the bus/);
});
