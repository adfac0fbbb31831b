/**
 * MemoryHigh=/MemoryMax= of canrelay-agent.service are sized from a measurement; this keeps them honest:
 * an agent on --sim with 50 console clients and its 10,000-event ring full stays well under MemoryHigh=.
 * (Compressed: the console runs at 1,000 events/s so that the ring fills in 10 s instead of 50 s; that is
 * 5× the default traffic to every client, so the figure is on the safe side.) The agent runs with the
 * unit's NODE_OPTIONS (V8 flags), as deployed. A second case: 500 clients at 200 events/s unsampled (the
 * fan-out shape of make bench-fanout), the same bound.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { test } from 'node:test';
import { readUnit, REPO, unitBytes, unitValue } from '../helpers/deploy.js';
import { startAgentProcess } from '../helpers/processes.js';

const CLIENTS = 50;

function rssKiB(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  return { rss: Number(/VmRSS:\s+(\d+)/.exec(s)![1]), hwm: Number(/VmHWM:\s+(\d+)/.exec(s)![1]) };
}

/** The unit's Environment= assignments (NODE_OPTIONS: the V8 flags the agent runs with). */
function unitEnv(unit: ReturnType<typeof readUnit>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const line of unit.Service?.Environment ?? []) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (m) env[m[1]!] = m[2]!;
  }
  return env;
}

test('agent --sim with 50 console clients and a full ring stays under the unit MemoryHigh=', async (t) => {
  const unit = readUnit(join(REPO, 'systemd/canrelay-agent.service'));
  const high = unitBytes(unitValue(unit, 'Service', 'MemoryHigh')!);
  const max = unitBytes(unitValue(unit, 'Service', 'MemoryMax')!);
  const a = await startAgentProcess(['--sim', '--sim-rate', '2000', '--console-max-rate', '1000', '--history-events', '10000'], { env: unitEnv(unit) });
  const reqs: ReturnType<typeof request>[] = [];
  try {
    const pid = a.proc.child.pid!;
    const idle = rssKiB(pid);
    let bytes = 0;
    for (let i = 0; i < CLIENTS; i++) {
      const r = request(a.url, { headers: { Accept: 'text/event-stream' } }, (res) => res.on('data', (c: Buffer) => (bytes += c.length)));
      r.end();
      reqs.push(r);
    }
    await new Promise((r) => setTimeout(r, 12_000));
    const metrics = await fetch(`${a.base}/metrics`).then((r) => r.text());
    const now = rssKiB(pid);
    t.diagnostic(
      `RSS idle ${(idle.rss / 1024).toFixed(0)} MB, with ${CLIENTS} clients ${(now.rss / 1024).toFixed(0)} MB, peak ${(now.hwm / 1024).toFixed(0)} MB; ` +
        `${(bytes / 1e6).toFixed(0)} MB streamed; MemoryHigh ${high / 2 ** 20} MB, MemoryMax ${max / 2 ** 20} MB`,
    );
    assert.match(metrics, /canrelay_/);
    assert.ok(bytes > CLIENTS * 100_000, 'the clients were fed');
    assert.ok(now.hwm * 1024 < high * 0.8, `peak RSS ${(now.hwm / 1024).toFixed(0)} MB is within 20 % of MemoryHigh=${high / 2 ** 20}M: resize the unit`);
  } finally {
    for (const r of reqs) r.destroy();
    assert.equal(await a.proc.stop(), 0);
  }
});

test('agent --sim with 500 console clients at 200 events/s (unsampled) stays under the unit MemoryHigh=', async (t) => {
  const unit = readUnit(join(REPO, 'systemd/canrelay-agent.service'));
  const high = unitBytes(unitValue(unit, 'Service', 'MemoryHigh')!);
  const a = await startAgentProcess(['--sim', '--sim-rate', '200', '--console-max-rate', '1000'], { env: unitEnv(unit) });
  const reqs: ReturnType<typeof request>[] = [];
  try {
    const pid = a.proc.child.pid!;
    const idle = rssKiB(pid);
    let bytes = 0;
    for (let i = 0; i < 500; i++) {
      const r = request(a.url, { headers: { Accept: 'text/event-stream' } }, (res) => res.on('data', (c: Buffer) => (bytes += c.length)));
      r.on('error', () => {}); // destroyed at the end, possibly before its response
      r.end();
      reqs.push(r);
    }
    await new Promise((r) => setTimeout(r, 12_000));
    const now = rssKiB(pid);
    t.diagnostic(`RSS idle ${(idle.rss / 1024).toFixed(0)} MB, with 500 clients ${(now.rss / 1024).toFixed(0)} MB, peak ${(now.hwm / 1024).toFixed(0)} MB; ${(bytes / 1e6).toFixed(0)} MB streamed; MemoryHigh ${high / 2 ** 20} MB`);
    // Fed at all (on a loaded machine the test's own 500 readers lag; the bound is on the agent's memory, not the rate).
    assert.ok(bytes > 500 * 5_000, 'the clients were fed');
    assert.ok(now.hwm * 1024 < high * 0.8, `peak RSS ${(now.hwm / 1024).toFixed(0)} MB is within 20 % of MemoryHigh=${high / 2 ** 20}M: resize the unit`);
  } finally {
    for (const r of reqs) r.destroy();
    assert.equal(await a.proc.stop(), 0);
  }
});
