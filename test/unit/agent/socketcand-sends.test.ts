/**
 * agent/socketcand/: sends waiting in the shared transmit queue are bounded per connection (256) and for
 * all connections together (1,024), so clients flooding a busy bus cannot fill the queue the bridge's
 * relay and commands use. A real server on loopback; the transmit queue is a stub that never completes.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CanFrame } from '../../../core/can/frame.js';
import type { SendResult } from '../../../agent/sources/source.js';
import { SocketcandServer } from '../../../agent/socketcand/server.js';
import { MAX_SENDS_IN_FLIGHT, MAX_SENDS_IN_FLIGHT_ALL } from '../../../agent/socketcand/session.js';
import { RawClient } from '../../helpers/socketcand.js';

test('socketcand sends: at most 256 waiting per connection and 1,024 for all; a finished send makes room', async (t) => {
  const waiting: ((r: SendResult) => void)[] = [];
  const server = new SocketcandServer({
    listen: '127.0.0.1:0',
    allow: undefined,
    maxPendingBytes: 1 << 20,
    buses: () => ['can0'],
    transmit: (_f: CanFrame, done) => void waiting.push(done), // a bus that takes nothing
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
  const realNow = Date.now;
  t.after(async () => {
    Date.now = realNow;
    await server.close();
  });
  const c = await RawClient.connect(port);
  t.after(() => c.close());
  for (const deadline = realNow() + 5000; c.messages.length === 0; await new Promise((r) => setTimeout(r, 10))) assert.ok(realNow() < deadline, '< hi >');
  assert.equal(await c.request('< open can0 >'), '< ok >');
  assert.equal(await c.request('< rawmode >'), '< ok >');
  // The settle timer fires while the wall clock reads before its end (as a timer a millisecond early does).
  Date.now = () => realNow() - 50;
  assert.match(await c.request('< send 123 1 01 >', 3000), /^< error sending is off/);
});
