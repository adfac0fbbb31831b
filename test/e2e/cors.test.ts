/**
 * --cors-origin on the real agent and bridge over loopback: preflights for the Authorization header from
 * a listed origin, the allow headers on reads, writes and the SSE console, nothing for other origins,
 * never `*` nor credentials, and `*` refused as a flag value.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { request, type IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { startBridgeProcess } from '../helpers/bridge-process.js';
import { runCli, startAgentProcess, tempDir } from '../helpers/processes.js';

const ORIGIN = 'https://tools.example.com';
const OTHER = 'https://evil.example.net';
const ADMIN = 'admin-token-0123456789abcdef';
const stops: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const s of stops) await s();
});

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One request; for an event stream only the head and the first bytes. */
function call(method: string, url: string, headers: Record<string, string>): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
        if (String(res.headers['content-type']).startsWith('text/event-stream')) {
          req.destroy();
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
        }
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

const preflight = (url: string, origin: string, method = 'POST'): Promise<Reply> =>
  call('OPTIONS', url, { Origin: origin, 'Access-Control-Request-Method': method, 'Access-Control-Request-Headers': 'authorization,content-type' });

function assertAllowed(r: Reply, what: string): void {
  assert.equal(r.headers['access-control-allow-origin'], ORIGIN, `${what}: allowed for the listed origin`);
  assert.match(String(r.headers.vary), /Origin/, `${what}: Vary: Origin`);
  assert.equal(r.headers['access-control-allow-credentials'], undefined, `${what}: never credentials`);
}

test('agent --cors-origin: preflight with Authorization, reads, writes and the console for the listed origin; nothing for others', async () => {
  const dir = tempDir('canrelay-cors-');
  const tokens = join(dir, 'tokens');
  writeFileSync(tokens, `admin ${ADMIN}\n`);
  const a = await startAgentProcess(['--sim', '--sim-rate', '10', '--local-token-file', tokens, '--console-auth', '--cors-origin', `${ORIGIN},http://127.0.0.1:3000`], {
    stateDir: join(dir, 'state'),
  });
  stops.push(() => a.proc.stop('SIGKILL'));
  const auth = { Authorization: `Bearer ${ADMIN}` };

  const pf = await preflight(`${a.base}/api/v1/recordings`, ORIGIN);
  assert.equal(pf.status, 204);
  assertAllowed(pf, 'preflight');
  assert.match(String(pf.headers['access-control-allow-headers']), /Authorization/);
  assert.match(String(pf.headers['access-control-allow-methods']), /POST/);

  const info = await call('GET', `${a.base}/api/v1/info`, { Origin: ORIGIN, ...auth });
  assert.equal(info.status, 200);
  assertAllowed(info, 'GET /api/v1/info');
  const sse = await call('GET', a.url, { Origin: ORIGIN, ...auth, Accept: 'text/event-stream' });
  assert.equal(sse.status, 200);
  assertAllowed(sse, 'the SSE console');
  // A listed origin is not "another site": its page may write with the admin token.
  const rec = await call('POST', `${a.base}/api/v1/recordings`, { Origin: ORIGIN, ...auth });
  assert.equal(rec.status, 201, rec.body);
  assertAllowed(rec, 'POST /api/v1/recordings');

  const bad = await preflight(`${a.base}/api/v1/recordings`, OTHER);
  assert.equal(bad.status, 403);
  assert.match(bad.body, /not allowed: list it in --cors-origin/);
  assert.equal(bad.headers['access-control-allow-origin'], undefined);
  const otherRead = await call('GET', `${a.base}/api/v1/info`, { Origin: OTHER, ...auth });
  assert.equal(otherRead.headers['access-control-allow-origin'], undefined, 'another origin gets no allow header');
  const otherWrite = await call('POST', `${a.base}/api/v1/recordings`, { Origin: OTHER, ...auth });
  assert.equal(otherWrite.status, 403, 'a write from another site is still refused');
});

test('without --cors-origin the agent sends no CORS headers', async () => {
  const a = await startAgentProcess(['--sim', '--sim-rate', '10']);
  stops.push(() => a.proc.stop('SIGKILL'));
  const pf = await preflight(`${a.base}/api/v1/recordings`, ORIGIN);
  assert.equal(pf.headers['access-control-allow-origin'], undefined);
  assert.notEqual(pf.status, 204);
  const info = await call('GET', `${a.base}/api/v1/info`, { Origin: ORIGIN });
  assert.equal(info.headers['access-control-allow-origin'], undefined);
});

test('bridge --cors-origin: preflight and the admin API and console for the listed origin only', async () => {
  const b = await startBridgeProcess(['--cors-origin', ORIGIN]);
  stops.push(() => b.proc.stop('SIGKILL'));
  const auth = { Authorization: `Bearer ${b.admin.token}` };
  const pf = await preflight(`${b.base}/api/v1/dongles/x1`, ORIGIN, 'PUT');
  assert.equal(pf.status, 204);
  assertAllowed(pf, 'bridge preflight');
  assert.match(String(pf.headers['access-control-allow-methods']), /PUT/);
  const put = await call('PUT', `${b.base}/api/v1/dongles/x1`, { Origin: ORIGIN, ...auth });
  assert.equal(put.status, 201, put.body);
  assertAllowed(put, 'PUT /api/v1/dongles');
  const sse = await call('GET', `${b.base}/api/v1/streams/dongles/x1/console`, { Origin: ORIGIN, ...auth, Accept: 'text/event-stream' });
  assert.equal(sse.status, 200);
  assertAllowed(sse, 'the bridge console');
  const bad = await preflight(`${b.base}/api/v1/dongles/x1`, OTHER, 'PUT');
  assert.equal(bad.status, 403);
  const other = await call('GET', `${b.base}/api/v1/dongles`, { Origin: OTHER, ...auth });
  assert.equal(other.headers['access-control-allow-origin'], undefined);
});

test('--cors-origin refuses "*" and anything that is not an origin (exit 2)', async () => {
  for (const [value, msg] of [
    ['*', /"\*" is refused/],
    ['https://tools.example.com/console', /scheme:\/\/host\[:port\]/],
    ['tools.example.com', /must be origins like/],
  ] as const) {
    for (const cmd of [
      ['agent', '--sim'],
      ['bridge', '--admin-token', 'x'.repeat(20)],
    ]) {
      const p = runCli([
        ...cmd,
        '--cors-origin',
        value,
        '--listen',
        '127.0.0.1:0',
        ...(cmd[0] === 'agent' ? ['--state-dir', tempDir('canrelay-')] : ['--db', join(tempDir('canrelay-'), 'b.sqlite')]),
      ]);
      assert.equal(await p.wait(), 2, `${cmd[0]} --cors-origin ${value}: ${p.stderr}`);
      assert.match(p.stderr, /cors-origin/);
      assert.match(p.stderr, msg);
    }
  }
});
