/**
 * Requests that offer an upgrade the daemons do not take (`Connection: Upgrade, HTTP2-Settings`,
 * `Upgrade: h2c`, as curl --http2 sends on http://) are answered as the HTTP/1.1 requests they also are,
 * over raw sockets to the real agent and bridge: /healthz, an API route and a console stream (SSE) answer
 * 200 as without the header. The bridge listens for WebSocket upgrades (its uplink) and answered these
 * "no WebSocket endpoint" (core/http/upgrade-requests.ts now serves them); its uplink upgrade still works.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { test } from 'node:test';
import { ADMIN_TOKEN, startBridgeProcess } from '../helpers/bridge-process.js';
import { cleanupAfter } from '../helpers/cleanup.js';
import { startAgentProcess } from '../helpers/processes.js';

const { track } = cleanupAfter();

/** Sends a GET offering h2c and returns what came back until the server closed, `until` matched, or 3 s. */
function offerH2c(base: string, target: string, extra: Record<string, string> = {}, until?: RegExp): Promise<string> {
  const u = new URL(base);
  const head = [
    `GET ${target} HTTP/1.1`,
    `Host: ${u.host}`,
    'Connection: Upgrade, HTTP2-Settings',
    'Upgrade: h2c',
    'HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA',
    ...Object.entries(extra).map(([k, v]) => `${k}: ${v}`),
  ].join('\r\n');
  return new Promise((resolve, reject) => {
    const s = connect(Number(u.port), u.hostname, () => s.write(`${head}\r\n\r\n`));
    let got = '';
    const done = (): void => {
      clearTimeout(t);
      s.destroy();
      resolve(got);
    };
    const t = setTimeout(done, 3000);
    s.setEncoding('utf8');
    s.on('data', (c: string) => {
      got += c;
      if (until?.test(got)) done();
    });
    s.on('close', done);
    s.on('error', reject);
  });
}

test('the agent: /healthz, /api/v1/info and the console stream answer an h2c offer as plain HTTP/1.1', async () => {
  const a = track(await startAgentProcess(['--sim'], { id: 'up-gw' }));
  const health = await offerH2c(a.base, '/healthz');
  assert.match(health, /^HTTP\/1\.1 200 /, health.slice(0, 120));
  assert.match(health, /"status"/);
  assert.match(await offerH2c(a.base, '/api/v1/info'), /^HTTP\/1\.1 200 [\s\S]*"buses"/);
  const sse = await offerH2c(a.base, '/api/v1/streams/dongles/up-gw/console', {}, /\n\n/);
  assert.match(sse, /^HTTP\/1\.1 200 [\s\S]*content-type: text\/event-stream/i, sse.slice(0, 200));
});

test('the bridge: /healthz, the admin API and the fleet stream answer an h2c offer as plain HTTP/1.1; the uplink still upgrades', async () => {
  const b = track(await startBridgeProcess());
  const token = await b.admin.register('up-gw');
  const health = await offerH2c(b.base, '/healthz');
  assert.match(health, /^HTTP\/1\.1 200 /, health.slice(0, 120));
  assert.match(health, /"status"/);
  const dongles = await offerH2c(b.base, '/api/v1/dongles', { Authorization: `Bearer ${ADMIN_TOKEN}` });
  assert.match(dongles, /^HTTP\/1\.1 200 [\s\S]*up-gw/, dongles.slice(0, 200));
  assert.match(await offerH2c(b.base, '/api/v1/dongles'), /^HTTP\/1\.1 401 /, 'the route as it is: no token, 401');
  const fleet = await offerH2c(b.base, '/api/v1/streams/fleet', { Authorization: `Bearer ${ADMIN_TOKEN}` }, /\n\n/);
  assert.match(fleet, /^HTTP\/1\.1 200 [\s\S]*content-type: text\/event-stream/i, fleet.slice(0, 200));
  // The WebSocket upgrade is the uplink's as before: an agent connects.
  const a = track(await startAgentProcess(['--sim', '--bridge', b.base, '--token', token], { id: 'up-gw' }));
  await a.proc.waitForLog((l) => l.msg === 'uplink connected');
  assert.equal(b.proc.exitCode, null, 'the bridge is still running');
});
