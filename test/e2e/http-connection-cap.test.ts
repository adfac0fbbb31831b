/**
 * --max-connections on both daemons: connections that hold unfinished request headers (~22 KB each for
 * the 66 s headers timeout) cannot take the daemon's memory; past the cap a new connection is closed at
 * once and said in the log (http_connections_full); the open ones, and the relay, go on; once they go,
 * the daemon answers again.
 */
import assert from 'node:assert/strict';
import { get as httpGet } from 'node:http';
import { connect, type Socket } from 'node:net';
import { test } from 'node:test';
import { startBridgeProcess } from '../helpers/bridge-process.js';
import { cleanupAfter } from '../helpers/cleanup.js';
import type { CliProcess } from '../helpers/processes.js';
import { startAgentProcess } from '../helpers/processes.js';

const { track } = cleanupAfter();

/** Opens `n` connections to `base` that each send the start of a request and never finish it. */
async function holdHalfRequests(base: string, n: number): Promise<Socket[]> {
  const u = new URL(base);
  return Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<Socket>((resolve, reject) => {
          const s = connect(Number(u.port), u.hostname, () => {
            s.write(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ${'a'.repeat(1000)}`);
            resolve(s);
          });
          s.on('error', reject);
        }),
    ),
  );
}

/** What a request on a new connection gets: the status, or how the connection ended without one. */
function healthz(base: string): Promise<string> {
  return new Promise((resolve) => {
    const req = httpGet(`${base}/healthz`, { agent: false, timeout: 5000 }, (res) => {
      res.resume();
      resolve(String(res.statusCode));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err: NodeJS.ErrnoException) => resolve(`no answer (${err.code ?? err.message})`));
  });
}

async function checkCap(base: string, proc: CliProcess): Promise<void> {
  assert.equal(await healthz(base), '200');
  const held = await holdHalfRequests(base, 16);
  const refused = await healthz(base);
  assert.match(refused, /^no answer/, `past the cap a new connection is closed: ${refused}`);
  const line = await proc.waitForLog((l) => l.code === 'http_connections_full', 10_000);
  assert.equal(line.max_connections, 16);
  for (const s of held) s.destroy();
  let again = '';
  for (let i = 0; i < 50 && again !== '200'; i++) {
    again = await healthz(base);
    if (again !== '200') await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(again, '200', 'answered again once the held connections are gone');
}

test('agent: past --max-connections a new connection is closed at once and said; the held ones go, it answers again', async () => {
  const a = track(await startAgentProcess(['--sim', '--max-connections', '16']));
  await checkCap(a.base, a.proc);
});

test('bridge: the same, with --max-connections', async () => {
  const b = track(await startBridgeProcess(['--max-connections', '16']));
  await checkCap(b.base, b.proc);
});
