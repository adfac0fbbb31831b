/**
 * Hostile or careless admin input and token hygiene, against the real bridge process over loopback:
 *  - viewer tokens are listed, revoked (an open console stream of the token is closed) and may expire;
 *  - an admin body over the limit gets 413 — declared, chunked, or announced with Expect: 100-continue —
 *    and never a connection reset;
 *  - keys such as __proto__ get 400 instead of vanishing silently.
 */
import assert from 'node:assert/strict';
import { request, type IncomingMessage } from 'node:http';
import { after, test } from 'node:test';
import { ADMIN_TOKEN, startBridgeProcess, type StartedBridge } from '../helpers/bridge-process.js';
import { SseClient } from '../helpers/sse-client.js';

const procs: StartedBridge[] = [];
const clients: SseClient[] = [];
after(async () => {
  for (const c of clients) c.close();
  for (const p of procs) await p.proc.stop('SIGKILL');
});
async function bridge(): Promise<StartedBridge> {
  const b = await startBridgeProcess();
  procs.push(b);
  return b;
}
async function open(b: StartedBridge, token: string): Promise<SseClient> {
  const c = await SseClient.connect(`${b.base}/api/v1/streams/dongles/gw-v/console`, { Authorization: `Bearer ${token}` });
  clients.push(c);
  return c;
}

test('viewer tokens: listed, revoked (its open console stream is closed), optionally expiring', async () => {
  const b = await bridge();
  await b.admin.register('gw-v');
  const issued = await b.admin.post('/api/v1/viewer-tokens');
  assert.equal(issued.status, 201);
  const { id, token } = issued.body as { id: string; token: string };
  assert.match(id, /^[0-9a-f]{16}$/);
  assert.equal(issued.body.expires_at, null);

  const stream = await open(b, token);
  assert.equal(stream.status, 200);
  const other = await b.admin.post('/api/v1/viewer-tokens');
  const otherStream = await open(b, String(other.body.token));
  const list = await b.admin.get('/api/v1/viewer-tokens');
  const row = (list.body.viewer_tokens as { id: string; open_streams: number; token?: string }[]).find((t) => t.id === id);
  assert.equal(row?.open_streams, 1);
  assert.equal(row?.token, undefined, 'the list never shows a token');

  const revoked = await b.admin.del(`/api/v1/viewer-tokens/${id}`);
  assert.equal(revoked.status, 200);
  assert.equal(revoked.body.streams_closed, 1);
  await stream.waitClosed(5000);
  assert.equal(otherStream.closed, false, "another token's stream stays open");
  assert.equal((await open(b, token)).status, 401, 'the revoked token is refused');
  assert.equal((await b.admin.del(`/api/v1/viewer-tokens/${id}`)).status, 404);
  assert.equal((await b.admin.del('/api/v1/viewer-tokens/not-an-id')).status, 400);

  // An expiring token: its stream is closed once it expires, and it is refused after.
  const short = await b.admin.post('/api/v1/viewer-tokens', { ttl_s: 1 });
  assert.equal(short.status, 201);
  assert.ok(Date.parse(String(short.body.expires_at)) > Date.now());
  const expiring = await open(b, String(short.body.token));
  assert.equal(expiring.status, 200);
  await expiring.waitClosed(10_000);
  assert.equal((await open(b, String(short.body.token))).status, 401);
  const listed = (await b.admin.get('/api/v1/viewer-tokens')).body.viewer_tokens as { id: string; expired: boolean }[];
  assert.equal(listed.find((t) => t.id === short.body.id)?.expired, true);
  assert.equal((await b.admin.post('/api/v1/viewer-tokens', { ttl_s: -5 })).status, 400);
  assert.equal((await b.admin.post('/api/v1/viewer-tokens', { ttl: 5 })).status, 400);
});

interface Answer {
  status: number;
  body: string;
  continued: boolean;
}

/** Sends `size` bytes to an admin route as the client chooses to frame them, and reads the answer. */
function sendLarge(b: StartedBridge, size: number, mode: 'length' | 'chunked' | 'expect'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const u = new URL('/api/v1/dongles/gw-big/commands', b.base);
    const headers: Record<string, string> = { Authorization: `Bearer ${ADMIN_TOKEN}`, 'Content-Type': 'application/json' };
    if (mode !== 'chunked') headers['Content-Length'] = String(size);
    if (mode === 'expect') headers.Expect = '100-continue';
    let continued = false;
    const req = request(u, { method: 'POST', headers });
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    let sent = 0;
    let answered = false;
    const pump = (): void => {
      while (sent < size && !answered) {
        const n = Math.min(chunk.length, size - sent);
        sent += n;
        if (!req.write(chunk.subarray(0, n))) return void req.once('drain', pump);
      }
      if (!answered) req.end();
    };
    req.on('continue', () => {
      continued = true;
      pump();
    });
    req.on('response', (res: IncomingMessage) => {
      answered = true;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, body, continued });
        req.destroy();
      });
    });
    req.on('error', reject);
    if (mode !== 'expect') pump();
    else req.flushHeaders();
  });
}

test('an admin body over the limit gets 413 (declared, chunked, Expect: 100-continue), never a reset', async () => {
  const b = await bridge();
  await b.admin.register('gw-big');
  const tenMb = 10 * 1024 * 1024;
  for (const mode of ['length', 'chunked', 'expect'] as const) {
    const a = await sendLarge(b, tenMb, mode);
    assert.equal(a.status, 413, `${mode}: ${a.body.slice(0, 200)}`);
    assert.match(String((JSON.parse(a.body) as { error: string }).error), /over 64 KiB/);
    if (mode === 'expect') assert.equal(a.continued, false, 'refused before the body was sent');
  }
  // Within the limit, Expect: 100-continue goes through.
  const small = await new Promise<number>((resolve, reject) => {
    const body = JSON.stringify({ ttl_s: 60 });
    const req = request(new URL('/api/v1/viewer-tokens', b.base), {
      method: 'POST',
      headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, 'Content-Type': 'application/json', 'Content-Length': String(body.length), Expect: '100-continue' },
    });
    req.on('continue', () => req.end(body));
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.flushHeaders();
  });
  assert.equal(small, 201);
  assert.equal((await b.admin.get('/healthz')).status, 200, 'the bridge lives on');
});

test('keys such as __proto__ get 400, never a silent {}', async () => {
  const b = await bridge();
  await b.admin.register('gw-p1');
  await b.admin.register('gw-p2');
  const group = await b.admin.call('PUT', '/api/v1/groups/gp', undefined, '{"sides":{"a":"gw-p1","b":"gw-p2"},"bus_map":{"__proto__":{"can0":"can1"}}}');
  assert.equal(group.status, 400);
  assert.match(String(group.body.error), /__proto__/);
  assert.equal((await b.admin.get('/api/v1/groups/gp')).status, 404, 'nothing was created');
  const cmd = await b.admin.call('POST', '/api/v1/dongles/gw-p1/commands', undefined, '{"type":"send_frame","bus":"can0","id":"0x1","constructor":{"prototype":1}}');
  assert.equal(cmd.status, 400);
  const viewer = await b.admin.call('POST', '/api/v1/viewer-tokens', undefined, '{"__proto__":{"ttl_s":1}}');
  assert.equal(viewer.status, 400);
  // The same group without the hostile key is fine.
  assert.equal((await b.admin.put('/api/v1/groups/gp', { sides: { a: 'gw-p1', b: 'gw-p2' }, bus_map: { can0: 'can1' } })).status, 201);
});
