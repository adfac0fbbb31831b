/**
 * MemoryHigh=/MemoryMax= of canrelay-agent.service are sized from a measurement; this keeps them honest:
 * an agent on --sim with 50 console clients and its 10,000-event ring full stays well under MemoryHigh=.
 * (Compressed: the console runs at 1,000 events/s so that the ring fills in 10 s instead of 50 s; that is
 * 5× the default traffic to every client, so the figure is on the safe side.) The agent runs with the
 * unit's NODE_OPTIONS (V8 flags), as deployed. A second case: 500 clients at 200 events/s unsampled (the
 * fan-out shape of make bench-fanout), the same bound. A third: the uplink buffer full (a 50,000 frames/s bus,
 * the bridge unreachable), under MemoryHigh=: the unit's --max-old-space-size is what keeps it there.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { test } from 'node:test';
import { readUnit, REPO, unitBytes, unitValue } from '../helpers/deploy.js';
import { freePort, startAgentProcess } from '../helpers/processes.js';
import { until } from '../helpers/until.js';

const CLIENTS = 50;

function rssKiB(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  return { rss: Number(/VmRSS:\s+(\d+)/.exec(s)![1]), hwm: Number(/VmHWM:\s+(\d+)/.exec(s)![1]) };
}

/** The unit's Environment= assignments (NODE_OPTIONS: the V8 flags the agent runs with). */
function unitEnv(unit: ReturnType<typeof readUnit>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const line of unit.Service?.Environment ?? []) {
    // A value with spaces is quoted as a whole: Environment="NODE_OPTIONS=--a --b".
    const m = /^"?([A-Z_][A-Z0-9_]*)=(.*?)"?$/.exec(line.trim());
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
    t.diagnostic(
      `RSS idle ${(idle.rss / 1024).toFixed(0)} MB, with 500 clients ${(now.rss / 1024).toFixed(0)} MB, peak ${(now.hwm / 1024).toFixed(0)} MB; ${(bytes / 1e6).toFixed(0)} MB streamed; MemoryHigh ${high / 2 ** 20} MB`,
    );
    // Fed at all (on a loaded machine the test's own 500 readers lag; the bound is on the agent's memory, not the rate).
    assert.ok(bytes > 500 * 5_000, 'the clients were fed');
    assert.ok(now.hwm * 1024 < high * 0.8, `peak RSS ${(now.hwm / 1024).toFixed(0)} MB is within 20 % of MemoryHigh=${high / 2 ** 20}M: resize the unit`);
  } finally {
    for (const r of reqs) r.destroy();
    assert.equal(await a.proc.stop(), 0);
  }
});

test('agent on a 50,000 frames/s bus with the bridge unreachable (uplink buffer full) stays under the unit MemoryHigh=', async (t) => {
  // The uplink buffer at its bound (--uplink-buffer-frames, 100,000) is the agent's largest live set: without
  // the unit's --max-old-space-size V8 let garbage reach a 274 MB peak before collecting it (past MemoryMax=).
  const unit = readUnit(join(REPO, 'systemd/canrelay-agent.service'));
  const high = unitBytes(unitValue(unit, 'Service', 'MemoryHigh')!);
  const closed = await freePort(); // nothing listens there: every connection attempt is refused
  const a = await startAgentProcess(['--sim', '--sim-rate', '50000', '--bridge', `http://127.0.0.1:${closed}`, '--token', 'memory-test-token-0123456789abcdef'], {
    env: unitEnv(unit),
  });
  try {
    const pid = a.proc.child.pid!;
    const uplink = async (kind: string): Promise<number> => {
      const text = await fetch(`${a.base}/metrics`).then((r) => r.text());
      return Number(new RegExp(`^canrelay_uplink\\{kind="${kind}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? NaN);
    };
    // Full once frames are dropped at the bound; then 1,000,000 more frames through it (bounded: 120 s).
    await until(async () => (await uplink('frames_dropped_buffer_full')) > 0, 60_000, 'the uplink buffer fills');
    const queued0 = await uplink('frames_queued');
    await until(async () => (await uplink('frames_queued')) > queued0 + 1_000_000, 120_000, 'a million more frames through the full buffer');
    const buffered = await uplink('frames_buffered');
    const now = rssKiB(pid);
    t.diagnostic(`uplink buffer ${buffered} frames; RSS ${(now.rss / 1024).toFixed(0)} MB, peak ${(now.hwm / 1024).toFixed(0)} MB; MemoryHigh ${high / 2 ** 20} MB`);
    assert.ok(buffered > 50_000, `the buffer is full (${buffered} frames held)`);
    assert.ok(now.hwm * 1024 < high, `peak RSS ${(now.hwm / 1024).toFixed(0)} MB passes MemoryHigh=${high / 2 ** 20}M: resize the unit or its --max-old-space-size`);
  } finally {
    assert.equal(await a.proc.stop(), 0);
  }
});
