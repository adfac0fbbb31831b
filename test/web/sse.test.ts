/**
 * The page's console connection (web/src/sse.ts, built to dist/web/sse.js) run in Node against a real
 * agent: Node 20 has the same fetch, streams and AbortController as the browser. A TCP proxy in between
 * lets the test cut the connection the way a Wi-Fi drop does, without restarting the agent.
 */
import assert from 'node:assert/strict';
import { createServer as createHttpServer } from 'node:http';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { WEB_JS } from '../helpers/browser.js';
import { untilValue } from '../helpers/until.js';
import { startAgentProcess, tempDir, type CliProcess } from '../helpers/processes.js';

interface Status {
  state: string;
  detail: string;
  reconnects: number;
  resets: number;
  lastEventId: string;
}
interface Msg {
  type: string;
  data: string;
  lastEventId: string;
}
interface Conn {
  start(): void;
  stop(): void;
  reconnectNow(): void;
  readonly lastEventId: string;
}
const { ConsoleConnection, SseParser } = (await import(pathToFileURL(join(WEB_JS, 'sse.js')).href)) as {
  ConsoleConnection: new (o: {
    url: string;
    token?: string;
    backlog?: number;
    onMessage: (m: Msg) => void;
    onStatus: (s: Status) => void;
    maxBackoffMs?: number;
    fetchImpl?: typeof fetch;
  }) => Conn;
  SseParser: new () => { lastEventId: string; feed(chunk: string): Msg[]; reset(): void };
};

const cleanup: (() => unknown)[] = [];
after(async () => {
  for (const f of cleanup.reverse()) await f();
});

/** Pipes `client` to a new connection to `port`; when either side ends or fails, both go. */
function join2(client: Socket, port: number, sockets: Set<Socket>): void {
  const up = connect(port, '127.0.0.1');
  for (const s of [client, up]) {
    sockets.add(s);
    s.on('close', () => {
      sockets.delete(s);
      client.destroy();
      up.destroy();
    });
    s.on('error', () => {});
  }
  client.pipe(up).pipe(client);
}

/** A TCP proxy to `port` whose connections can all be cut at once. */
async function proxy(port: number): Promise<{ port: number; cut: () => void; server: Server; connections: () => number }> {
  const sockets = new Set<Socket>();
  let count = 0;
  const server = createServer((client) => {
    count++;
    join2(client, port, sockets);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(() => new Promise((r) => server.close(r)));
  cleanup.push(() => sockets.forEach((s) => s.destroy()));
  return {
    port: (server.address() as { port: number }).port,
    server,
    cut: () => sockets.forEach((s) => s.destroy()),
    connections: () => count,
  };
}

function track(url: string, extra: { token?: string; backlog?: number } = {}): { conn: Conn; msgs: Msg[]; states: Status[] } {
  const msgs: Msg[] = [];
  const states: Status[] = [];
  const conn = new ConsoleConnection({ url, ...extra, maxBackoffMs: 1000, onMessage: (m) => msgs.push(m), onStatus: (s) => states.push({ ...s }) });
  cleanup.push(() => conn.stop());
  conn.start();
  return { conn, msgs, states };
}

const ids = (msgs: Msg[]): number[] => msgs.map((m) => Number(m.lastEventId));

test('a connection cut in the middle of an event: the resume asks for that event again (its id counts only once it is complete)', () => {
  const p = new SseParser();
  const got = p.feed('id: 1\nevent: log\ndata: {"a":1}\n\nid: 2\nevent: log\n');
  assert.deepEqual(
    got.map((m) => m.lastEventId),
    ['1'],
  );
  assert.equal(p.lastEventId, '1', 'event 2 is not complete');
  p.reset(); // the connection ended
  assert.equal(p.lastEventId, '1', 'the resume asks for what follows event 1: event 2 again');
  assert.deepEqual(
    p.feed('id: 2\nevent: log\ndata: {"a":2}\n\n').map((m) => m.lastEventId),
    ['2'],
  );
});

test('"Reconnect now" while an attempt is on its way opens no second stream (every event would show twice)', async () => {
  let calls = 0;
  const fetchImpl = ((_url: string, init: { signal: AbortSignal }) => {
    calls++;
    // The first answers and ends at once (the stream is lost); later ones stay pending until aborted.
    if (calls === 1) return Promise.resolve(new Response('retry: 60000\n\n', { status: 200, headers: { 'Content-Type': 'text/event-stream' } }));
    return new Promise((_resolve, reject) => init.signal.addEventListener('abort', () => reject(new Error('aborted'))));
  }) as unknown as typeof fetch;
  const states: Status[] = [];
  const conn = new ConsoleConnection({ url: 'http://127.0.0.1:1/x', fetchImpl, onMessage: () => {}, onStatus: (st) => states.push({ ...st }) });
  cleanup.push(() => conn.stop());
  conn.start();
  await untilValue(() => states.some((st) => st.state === 'reconnecting'), 'reconnecting');
  conn.reconnectNow(); // skips the backoff: attempt 2 is on its way
  assert.equal(calls, 2);
  conn.reconnectNow(); // clicked again while it is pending
  conn.reconnectNow();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(calls, 2, 'no second stream while one attempt is pending');
  conn.stop();
});

test('a dropped connection resumes with Last-Event-ID: no gap, no duplicate, state "resumed"', async () => {
  const a = await startAgentProcess(['--sim', '--sim-rate', '150']);
  cleanup.push(() => a.proc.stop('SIGKILL'));
  const agentPort = Number(new URL(a.base).port);
  const p = await proxy(agentPort);
  const path = new URL(a.url).pathname;
  const t = track(`http://127.0.0.1:${p.port}${path}`, { backlog: 20 });
  await untilValue(() => t.msgs.length >= 60, '60 events');
  assert.equal(t.states.at(-1)!.state, 'live');
  const firstIds = ids(t.msgs);
  assert.ok(firstIds[0]! > 0, 'backlog replayed first');
  p.cut();
  await untilValue(() => t.states.some((s) => s.state === 'reconnecting'), 'reconnecting');
  const atCut = t.msgs.length;
  await untilValue(() => t.states.some((s) => s.state === 'resumed'), 'resumed', 10_000);
  await untilValue(() => t.msgs.length >= atCut + 60, 'events after the resume');
  const all = ids(t.msgs);
  for (let i = 1; i < all.length; i++) assert.equal(all[i], all[i - 1]! + 1, `consecutive ids across the reconnect at ${i}: ${all[i - 1]} then ${all[i]}`);
  assert.ok(!t.msgs.some((m) => m.type === 'stream_reset'), 'no reset on a clean resume');
  const resumed = t.states.find((s) => s.state === 'resumed')!;
  assert.equal(resumed.reconnects, 1);
  assert.equal(p.connections(), 2);
  assert.match(t.states.find((s) => s.state === 'reconnecting')!.detail, /\S/, 'the reason is given');
});

test('an agent restarted with the same state: stream_reset first, state "reset"', async () => {
  const stateDir = tempDir('canrelay-web-sse-');
  let a = await startAgentProcess(['--sim', '--sim-rate', '100'], { stateDir });
  let proc: CliProcess = a.proc;
  cleanup.push(() => proc.stop('SIGKILL'));
  const p = await proxy(Number(new URL(a.base).port));
  const t = track(`http://127.0.0.1:${p.port}${new URL(a.url).pathname}`);
  await untilValue(() => t.msgs.length >= 20, 'events');
  const before = Number(t.conn.lastEventId);
  await a.proc.stop('SIGKILL');
  // The proxy keeps its port; the new agent gets another, and the proxy follows it.
  a = await startAgentProcess(['--sim', '--sim-rate', '100'], { stateDir });
  proc = a.proc;
  p.server.removeAllListeners('connection');
  const sockets = new Set<Socket>();
  cleanup.push(() => sockets.forEach((s) => s.destroy()));
  p.server.on('connection', (client: Socket) => join2(client, Number(new URL(a.base).port), sockets));
  await untilValue(() => t.states.some((s) => s.state === 'reset'), 'reset', 15_000);
  const i = t.msgs.findIndex((m) => m.type === 'stream_reset');
  assert.ok(i > 0);
  const reset = JSON.parse(t.msgs[i]!.data) as { reason: string; requested: number };
  assert.equal(reset.reason, 'previous_run');
  assert.equal(reset.requested, Number(t.msgs[i - 1]!.lastEventId), 'asked to resume after the last event received');
  assert.ok(reset.requested >= before);
  await untilValue(() => t.msgs.length > i + 5, 'live events after the reset');
  assert.ok(Number(t.msgs.at(-1)!.lastEventId) > before, 'ids keep increasing over a restart');
  assert.equal(t.states.find((s) => s.state === 'reset')!.resets, 1);
});

test('401 is "refused" with the server\'s reason and no retry; the token goes as a Bearer header', async () => {
  let requests = 0;
  let auth: string | undefined;
  const server = createHttpServer((req, res) => {
    requests++;
    auth = req.headers.authorization;
    res.writeHead(401, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ error: 'missing or wrong token' }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(() => new Promise((r) => server.close(r)));
  const port = (server.address() as { port: number }).port;
  const t = track(`http://127.0.0.1:${port}/api/v1/streams/dongles/x/console`, { token: 'wrong-token-0123456789' });
  await untilValue(() => t.states.some((s) => s.state === 'refused'), 'refused');
  const s = t.states.find((x) => x.state === 'refused')!;
  assert.equal(s.detail, 'HTTP 401: missing or wrong token');
  assert.equal(auth, 'Bearer wrong-token-0123456789');
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(requests, 1, 'a refused token is not retried');
});

test('other HTTP errors and unreachable servers are retried with backoff', async () => {
  let requests = 0;
  const server = createHttpServer((_req, res) => {
    requests++;
    res.writeHead(404, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ error: 'dongle "x" is not registered on this bridge' }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(() => new Promise((r) => server.close(r)));
  const port = (server.address() as { port: number }).port;
  const t = track(`http://127.0.0.1:${port}/api/v1/streams/dongles/x/console`);
  await untilValue(() => requests >= 2, 'a retry', 5000);
  const s = t.states.find((x) => x.state === 'reconnecting')!;
  assert.equal(s.detail, 'HTTP 404: dongle "x" is not registered on this bridge');
  t.conn.stop();
  const n = requests;
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(requests, n, 'stop() ends the retries');
});
