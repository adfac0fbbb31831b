/** The SSE writer over real HTTP on loopback, against an in-process stream. */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, test } from 'node:test';
import { ConsoleStream } from '../../core/console/console-stream.js';
import { HistoryStore } from '../../core/console/history-store.js';
import { MemoryIdStore } from '../../core/console/id-store.js';
import { logData } from '../../core/console/normalize.js';
import { serveConsole } from '../../core/http/console-route.js';
import type { SseWriter } from '../../core/http/sse-writer.js';
import { listen } from '../../core/http/listen.js';
import { SseClient } from '../helpers/sse-client.js';
import { testFrame } from '../helpers/can-frames.js';

const servers: Server[] = [];
after(() => {
  for (const s of servers) {
    s.close();
    s.closeAllConnections();
  }
});

async function serve(opts: { keepAliveMs?: number; maxPendingBytes?: number } = {}): Promise<{ url: string; stream: ConsoleStream }> {
  const stream = new ConsoleStream('dongles/t', { historyEvents: 10_000, historySeconds: 60, maxRate: 1_000_000, ids: new MemoryIdStore(), history: new HistoryStore(16 << 20) });
  const server = createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    serveConsole(req, res, url, stream, { keepAliveMs: opts.keepAliveMs ?? 15_000, retryMs: 2000, maxPendingBytes: opts.maxPendingBytes ?? 1 << 20 });
  });
  servers.push(server);
  const { baseUrl } = await listen(server, '127.0.0.1:0');
  return { url: baseUrl + '/c', stream };
}

test('nothing from outside can inject an SSE field: CR, LF and NUL never reach the wire raw', async () => {
  const { url, stream } = await serve();
  const c = await SseClient.connect(url);
  const evil = 'line one\r\nevent: presence\n\ndata: {"state":"offline"}\n\u0000id: 999999\rretry: 1';
  stream.publish({ type: 'log', data: logData('warn', evil, 'x') });
  stream.publish({ type: 'log', data: logData('info', 'after') });
  await c.waitFor((ev) => ev.length >= 2);
  assert.equal(c.events.length, 2);
  assert.deepEqual(
    c.events.map((e) => e.event),
    ['log', 'log'],
  );
  assert.equal(c.events[0]!.json.message, evil, 'the message arrives intact, as JSON text');
  assert.equal(c.retry, 2000, 'no retry field was injected');
  assert.ok(!/[\r\u0000]/.test(c.raw), 'no raw CR or NUL on the wire');
  c.close();
});

test('keep-alive comments at the configured interval', async () => {
  const { url } = await serve({ keepAliveMs: 100 });
  const t0 = Date.now();
  const c = await SseClient.connect(url);
  const keepAlives = (): number => c.comments.filter((x) => x === 'keep-alive').length;
  // Waited for, bounded (a loaded machine delays timers); timers never fire early, so the count can be
  // bounded above by the elapsed time: at the interval, not faster.
  const deadline = Date.now() + 10_000;
  while (keepAlives() < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const elapsed = Date.now() - t0;
  assert.ok(keepAlives() >= 3, `keep-alives: ${c.comments.join('|')}`);
  assert.ok(keepAlives() <= Math.floor(elapsed / 100) + 1, `${keepAlives()} keep-alives in ${elapsed} ms at a 100 ms interval`);
  c.close();
});

test('a client whose socket dies while it is blocked is released (no leak), others unaffected', async () => {
  const { url, stream } = await serve({ maxPendingBytes: 50 << 20 });
  const stuck = await SseClient.connect(url, {}, { paused: true });
  const ok = await SseClient.connect(url);
  const big = 'x'.repeat(1500);
  for (let i = 0; i < 3000; i++) stream.publish({ type: 'log', data: logData('info', big) });
  await ok.waitFor((ev) => ev.length > 0, 5000, 'events flowing');
  const count = (): number => stream.subscriberCount;
  assert.equal(count(), 2);
  stuck.close(); // dies without ever draining
  const deadline = Date.now() + 3000;
  while (count() !== 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(count(), 1);
  await ok.waitFor((ev) => ev.length === 3000, 5000, 'all events at the reading client');
  ok.close();
});

test('a slow client catches up from the ring after it drains, in order and complete', async () => {
  const { url, stream } = await serve({ maxPendingBytes: 50 << 20 });
  const slow = await SseClient.connect(url, {}, { paused: true });
  for (let i = 0; i < 2000; i++) stream.publish({ type: 'log', data: logData('info', 'y'.repeat(500) + i) });
  await new Promise((r) => setTimeout(r, 50));
  slow.resume();
  await slow.waitFor((ev) => ev.length === 2000, 5000, 'every event');
  const ids = slow.events.map((e) => Number(e.id));
  for (let i = 1; i < ids.length; i++) assert.equal(ids[i], ids[i - 1]! + 1);
  slow.close();
});

test('a client that fell behind further than the ring is cut off, and resumes with a stream_reset', async () => {
  const { url, stream } = await serve({ maxPendingBytes: 50 << 20 });
  const slow = await SseClient.connect(url, {}, { paused: true });
  // 60 MB: more than the kernel's socket buffers take on loopback (events go straight to the socket, so only
  // what the kernel refuses waits) and more than the ring keeps (16 MB), so the client is past the ring.
  for (let i = 0; i < 30_000; i++) stream.publish({ type: 'log', data: logData('info', 'z'.repeat(2000)) });
  slow.resume();
  await slow.waitClosed();
  const last = slow.events.at(-1)?.id ?? String(stream.runStart); // unread bytes die with a reset socket
  const again = await SseClient.connect(url, { 'Last-Event-ID': last });
  stream.publish({ type: 'log', data: logData('info', 'live') });
  await again.waitFor((ev) => ev.length >= 2);
  assert.equal(again.events[0]!.event, 'stream_reset');
  assert.equal(again.events[0]!.json.reason, 'too_old');
  again.close();
});

test('a snapshot is let go once written (a fleet page kept its ~1 MiB for as long as it stayed open); a snapshot that cannot be built fails that request only: its subscription and places are given back', async () => {
  const stream = new ConsoleStream('fleet', { historyEvents: 1000, historySeconds: 60, maxRate: 1_000_000, ids: new MemoryIdStore(), history: new HistoryStore(1 << 20) });
  const writers: SseWriter[] = [];
  const closed: string[] = [];
  let fail = false;
  const server = createServer((req, res) => {
    try {
      const w = serveConsole(req, res, new URL(req.url!, 'http://x'), stream, {
        keepAliveMs: 15_000,
        retryMs: 2000,
        maxPendingBytes: 1 << 20,
        snapshot: () => {
          if (fail) throw new Error('disk I/O error');
          return ['event: fleet_snapshot\ndata: {"n":1}\n\n'];
        },
        onClose: (reason) => closed.push(reason),
      });
      if (w) writers.push(w);
    } catch {
      // What the daemons' server does with a handler's throw once the head went out.
      res.destroy();
    }
  });
  servers.push(server);
  const { baseUrl } = await listen(server, '127.0.0.1:0');
  const c = await SseClient.connect(baseUrl + '/f');
  await c.waitFor((ev) => ev.some((e) => e.event === 'fleet_snapshot'));
  const held = (w: SseWriter): number => (w as unknown as { snapshot: readonly string[] }).snapshot.length;
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(held(writers[0]!), 0, 'the written snapshot is no longer held');
  assert.equal(stream.subscriberCount, 1);
  fail = true;
  const r = await fetch(baseUrl + '/f').then(
    (res) =>
      res.text().then(
        () => 'answered',
        () => 'cut',
      ),
    () => 'cut',
  );
  assert.equal(r, 'cut', 'that request failed');
  assert.deepEqual(closed, ['server_error'], 'its writer ended, onClose told (the places given back)');
  assert.equal(stream.subscriberCount, 1, 'its subscription given back; the first client still reads');
  c.close();
});

test('a replay whose ?ids= matches none of a long history lets the event loop turn (at most 1,000 events looked at per turn), then goes live', async () => {
  const { url, stream } = await serve();
  const first = stream.latest;
  for (let i = 0; i < 10_000; i++) stream.offerFrame(testFrame({ id: 0x100, data: new Uint8Array([i & 0xff]) }));
  assert.equal(stream.latest - first, 10_000, 'every frame is an event in the history');
  // How many ring events the server looks at between two turns of the event loop (test and server share it).
  const after = stream.after.bind(stream);
  let looked = 0;
  let most = 0;
  let turning = true;
  stream.after = (cursor) => {
    const r = after(cursor);
    if (r.event) looked++;
    return r;
  };
  const turn = (): void => {
    most = Math.max(most, looked);
    looked = 0;
    if (turning) setImmediate(turn);
  };
  setImmediate(turn);
  const c = await SseClient.connect(`${url}?backlog=20000&ids=200`);
  stream.offerFrame(testFrame({ id: 0x200, data: new Uint8Array([1]) }));
  await c.waitFor((ev) => ev.some((e) => e.event === 'can_frame'));
  turning = false;
  assert.deepEqual(
    c.events.filter((e) => e.event === 'can_frame').map((e) => e.json.id),
    ['0x200'],
    'none of the history matched; the live frame did',
  );
  assert.ok(most > 0 && most <= 1000, `at most 1,000 events looked at in one turn (saw ${most})`);
  c.close();
  // A filter of more than 256 entries is refused, saying why (each event is checked against every one).
  const tooMany = await fetch(`${url}?ids=${Array.from({ length: 257 }, (_, i) => (0x100 + i).toString(16)).join(',')}`);
  assert.equal(tooMany.status, 400);
  assert.match(((await tooMany.json()) as { error: string }).error, /257 entries: a filter has at most 256/);
});
