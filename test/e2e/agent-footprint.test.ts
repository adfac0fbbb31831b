/**
 * A console-only gateway (`agent --sim`, no --bridge, no recording, no DBC) never loads zod or ws: they
 * were ~9 MB of its idle RSS (docs/benchmarks.md, fan-out), and a single static import on the start path
 * brings them back without any other symptom. The agent runs with a module hook (node:module register)
 * that lists every module it resolves; the test serves the console to a client, then reads the list.
 * The same hook proves the check can fail: with --bridge the uplink loads both.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { test } from 'node:test';
import { startBridgeProcess } from '../helpers/bridge-process.js';
import { startAgentProcess } from '../helpers/processes.js';
import { packages, traceModules } from '../helpers/module-trace.js';

/** One console client until its first can_frame event arrives. */
function firstFrame(url: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const r = request(url, { headers: { Accept: 'text/event-stream' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        text += c;
        if (text.includes('event: can_frame')) {
          r.destroy();
          resolve();
        }
      });
    });
    r.on('error', reject);
    r.end();
  });
}

test('agent --sim serving its console loads neither zod nor ws', async () => {
  const trace = traceModules();
  const a = await startAgentProcess(['--sim', '--sim-rate', '200'], { env: trace.env });
  try {
    await firstFrame(a.url);
    const metrics = await fetch(`${a.base}/metrics`).then((r) => r.text());
    assert.match(metrics, /canrelay_/);
    const urls = trace.loaded();
    assert.ok(
      urls.some((u) => u.endsWith('/dist/agent/agent.js')),
      'the hook saw the agent load',
    );
    const pkgs = packages(urls);
    assert.ok(pkgs.has('better-sqlite3') || urls.some((u) => u.includes('better-sqlite3')), `the hook sees packages: ${[...pkgs].join(', ')}`);
    assert.equal(pkgs.has('zod'), false, `zod was loaded: ${urls.filter((u) => u.includes('/zod/'))[0]}`);
    assert.equal(pkgs.has('ws'), false, 'ws was loaded');
  } finally {
    assert.equal(await a.proc.stop(), 0);
  }
});

test('with --bridge the agent loads zod and ws (the check above can fail)', async () => {
  const b = await startBridgeProcess([]);
  const trace = traceModules();
  let a: Awaited<ReturnType<typeof startAgentProcess>> | undefined;
  try {
    const token = await b.admin.register('footprint-gw');
    a = await startAgentProcess(['--sim', '--sim-rate', '200', '--bridge', b.base, '--token', token], { id: 'footprint-gw', env: trace.env });
    await a.proc.waitForLog((l) => l.msg === 'uplink connected');
    const pkgs = packages(trace.loaded());
    assert.ok(pkgs.has('zod'), 'zod loaded with --bridge');
    assert.ok(pkgs.has('ws'), 'ws loaded with --bridge');
  } finally {
    if (a) assert.equal(await a.proc.stop(), 0);
    await b.proc.stop();
  }
});
