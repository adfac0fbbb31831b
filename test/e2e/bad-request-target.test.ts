/**
 * Requests a browser or curl never sends, over raw TCP to the real daemons: a request target that is not
 * a URL (`GET //[`) gets 400 from the agent and the bridge — also as an uplink upgrade, which used to
 * throw out of the bridge's `upgrade` listener and end the process — and HEAD on the agent's console,
 * which used to stream events with no status line or headers, gets 405.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
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
  assert.equal(b.proc.exitCode, null, 'the bridge is still running');
  const h = await fetch(`${b.base}/healthz`);
  assert.equal(h.status, 200, 'and answers');
});

test('the agent: a request target that is not a URL gets 400; HEAD on the console gets 405, never a headerless stream', async () => {
  const a = await startAgentProcess(['--sim', '--sim-rate', '50']);
  stops.push(() => a.proc.stop());
  assert.match(await raw(a.base, 'GET //[ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), /^HTTP\/1\.1 400 .*bad request target/s);
  const path = new URL(a.url).pathname;
  const head = await raw(a.base, `HEAD ${path} HTTP/1.1\r\nHost: x\r\n\r\n`, 1000);
  assert.match(head, /^HTTP\/1\.1 405 /, `a status line first: ${JSON.stringify(head.slice(0, 80))}`);
  assert.match(head, /\r\nAllow: GET\r\n/i);
  assert.doesNotMatch(head, /event: /, 'no stream');
  const r = await fetch(a.url, { method: 'HEAD' });
  assert.equal(r.status, 405);
  assert.equal(a.proc.exitCode, null);
});
