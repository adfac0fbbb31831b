/**
 * Requests a browser or curl never sends, over raw TCP to the real daemons: a request target that is not
 * a URL (`GET //[`) gets 400 from the agent and the bridge — also as an uplink upgrade, which used to
 * throw out of the bridge's `upgrade` listener and end the process — and HEAD on the agent's console,
 * which used to stream events with no status line or headers, gets 405. A refused uplink upgrade whose
 * client never closes its side is closed by the bridge all the same (it held the socket for ever, one
 * descriptor per attempt, from anyone), and the refusals are logged once a second, not once each. A path
 * the URL parser would change (`..`, `\`) gets 400: served as the path it becomes, it passed a proxy's rules.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, test } from 'node:test';
import { startBridgeProcess } from '../helpers/bridge-process.js';
import { startAgentProcess } from '../helpers/processes.js';

const stops: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const s of stops) await s();
});

/** Sends `head` as written and returns what the server answered within `ms` (until it closed, or `ms`). */
function raw(base: string, head: string, ms = 2000): Promise<string> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const s = connect(Number(u.port), u.hostname, () => s.write(head));
    let got = '';
    const done = (): void => {
      clearTimeout(t);
      s.destroy();
      resolve(got);
    };
    const t = setTimeout(done, ms);
    s.setEncoding('utf8');
    s.on('data', (c: string) => (got += c));
    s.on('end', done);
    s.on('error', reject);
  });
}

const upgrade = (target: string): string =>
  `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`;

test('the bridge: a request target that is not a URL gets 400, as a request and as an upgrade, and the bridge lives on', async () => {
  const b = await startBridgeProcess();
  stops.push(() => b.proc.stop());
  assert.match(await raw(b.base, upgrade('//[')), /^HTTP\/1\.1 400 .*bad request target/s);
  assert.match(await raw(b.base, 'GET //[ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), /^HTTP\/1\.1 400 .*bad request target/s);
  // A path the URL parser would change (`\\` read as `/`, `..` resolved) is refused, not served as the
  // path a proxy in front never saw: nginx lets `/x/..\\metrics` through to the bridge, which read it as
  // /metrics (loopback-only there) and answered without a token.
  for (const target of ['/x/..\\metrics', '/a/../metrics', '/%2e%2e/metrics']) {
    const got = await raw(b.base, `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    assert.match(got, /^HTTP\/1\.1 400 .*not in its plain form/s, `${target}: ${got.slice(0, 60)}`);
    assert.doesNotMatch(got, /canrelay_bridge/, 'no metrics');
  }
  assert.equal((await fetch(`${b.base}/metrics`)).status, 200, 'the plain path still answers (nginx restricts it to loopback)');
  assert.match(await raw(b.base, 'GET http://x/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), /^HTTP\/1\.1 200 /, 'the absolute form too (HTTP/1.1)');
  assert.equal(b.proc.exitCode, null, 'the bridge is still running');
  const h = await fetch(`${b.base}/healthz`);
  assert.equal(h.status, 200, 'and answers');
});

test('the agent: a request target that is not a URL gets 400; HEAD on the console gets 405, never a headerless stream', async () => {
  const a = await startAgentProcess(['--sim', '--sim-rate', '50']);
  stops.push(() => a.proc.stop());
  assert.match(await raw(a.base, 'GET //[ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), /^HTTP\/1\.1 400 .*bad request target/s);
  const path = new URL(a.url).pathname;
  const head = await raw(a.base, `HEAD ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`, 1000);
  assert.match(head, /^HTTP\/1\.1 405 /, `a status line first: ${JSON.stringify(head.slice(0, 80))}`);
  assert.match(head, /\r\nAllow: GET\r\n/i);
  assert.doesNotMatch(head, /event: /, 'no stream');
  const r = await fetch(a.url, { method: 'HEAD' });
  assert.equal(r.status, 405);
  assert.equal(a.proc.exitCode, null);
});

/** A client that never closes its side: resolves once the server has closed its socket (a write is reset). */
function halfOpenRefusal(base: string, head: string, ms: number): Promise<{ answer: string; reset: boolean }> {
  const u = new URL(base);
  return new Promise((resolve) => {
    let answer = '';
    const s: Socket = connect({ port: Number(u.port), host: u.hostname, allowHalfOpen: true }, () => s.write(head));
    s.setEncoding('utf8');
    s.on('data', (c: string) => (answer += c));
    const deadline = Date.now() + ms;
    // After the answer, keep writing now and then: accepted while the server still holds its socket, reset once it is gone.
    const probe = setInterval(() => {
      if (Date.now() > deadline) finish(false);
      else if (answer !== '') s.write('x');
    }, 200);
    const finish = (reset: boolean): void => {
      clearInterval(probe);
      s.destroy();
      resolve({ answer, reset });
    };
    s.on('error', () => finish(true));
  });
}

test('the bridge: a refused upgrade is closed even when the client keeps its side open; refusals are logged once a second', async () => {
  const b = await startBridgeProcess();
  stops.push(() => b.proc.stop());
  const bad = upgrade('/api/v1/agents/connect').replace('\r\n\r\n', '\r\nAuthorization: Bearer not-a-token\r\n\r\n');
  const attempts = await Promise.all(Array.from({ length: 20 }, () => halfOpenRefusal(b.base, bad, 15_000)));
  for (const r of attempts) {
    assert.match(r.answer, /^HTTP\/1\.1 401 /);
    assert.ok(r.reset, 'the bridge closed its socket: the client was reset');
  }
  const lines = b.proc.logs.filter((l) => l.msg === 'uplink refused: not an agent token');
  assert.ok(lines.length >= 1 && lines.length < 20, `${lines.length} log lines for 20 refusals`);
  assert.equal((await fetch(`${b.base}/healthz`)).status, 200);
});
