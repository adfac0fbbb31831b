/**
 * Prometheus's own checker on the real /metrics: `promtool check metrics` (Debian's `prometheus`
 * package) must pass, lint included, on a real agent and a real bridge with console clients, a group
 * relaying both ways and a recording running, so that most series exist.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, test } from 'node:test';
import { startBridgeProcess } from '../helpers/bridge-process.js';
import { ensureDebs } from '../helpers/deploy.js';
import { startAgentProcess, type StartedAgent } from '../helpers/processes.js';
import { skipOrFail } from '../helpers/skips.js';
import { getJson, metricValue, SseClient } from '../helpers/sse-client.js';
import { until } from '../helpers/until.js';

const PROMTOOL = '/usr/bin/promtool';
const stops: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const s of stops.reverse()) await s();
});

function promtool(text: string): { status: number | null; output: string } {
  const r = spawnSync(PROMTOOL, ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, output: `${r.stdout}${r.stderr}`.trim() };
}

const metrics = async (base: string): Promise<string> => (await getJson(base + '/metrics')).text;

test('promtool check metrics passes on the agent and the bridge (lint included)', async (t) => {
  const skip = ensureDebs('prometheus');
  if (skip) return skipOrFail(t, skip);
  // The checker itself must be able to fail: a gauge named like a counter is what it caught before.
  assert.notEqual(promtool('# HELP x_total a gauge\n# TYPE x_total gauge\nx_total 1\n').status, 0, 'promtool refuses a gauge with _total');

  const bridge = await startBridgeProcess(['--backlog-max-age-ms', '60000']);
  stops.push(() => bridge.proc.stop('SIGKILL'));
  const ta = await bridge.admin.register('prom-a');
  const tb = await bridge.admin.register('prom-b');
  await bridge.admin.group('pg', 'prom-a', 'prom-b');
  const agent = async (id: string, token: string, rate: string): Promise<StartedAgent> => {
    const a = await startAgentProcess(['--sim', '--sim-rate', rate, '--console-max-rate', '20', '--bridge', bridge.base, '--token', token, '--relay-max-age-ms', '60000'], { id });
    stops.push(() => a.proc.stop('SIGKILL'));
    return a;
  };
  const b = await agent('prom-b', tb, '50');
  const a = await agent('prom-a', ta, '400');
  const clients = [
    await SseClient.connect(a.url),
    await SseClient.connect(`${bridge.base}/api/v1/streams/dongles/prom-a/console?access_token=${bridge.admin.token}`),
    await SseClient.connect(`${bridge.base}/api/v1/streams/groups/pg/console?access_token=${bridge.admin.token}`),
  ];
  stops.push(async () => clients.forEach((c) => c.close()));
  const rec = await fetch(a.base + '/api/v1/recordings', { method: 'POST' });
  assert.equal(rec.status, 201, 'a recording runs on agent A');
  await until(
    async () => (metricValue(await metrics(bridge.base), 'canrelay_bridge_frames_relayed_total', { group: 'pg', direction: 'a_to_b' }) ?? 0) > 0,
    60_000,
    'the bridge relays A to B',
  );
  await until(async () => (metricValue(await metrics(b.base), 'canrelay_can_frames_total', { bus: 'can0', direction: 'tx' }) ?? 0) > 0, 60_000, 'B transmits relayed frames');
  await until(async () => (metricValue(await metrics(a.base), 'canrelay_console_sampling') ?? 0) === 1, 60_000, 'A samples its console');

  for (const [name, base] of [
    ['agent A', a.base],
    ['agent B', b.base],
    ['bridge', bridge.base],
  ] as const) {
    const text = await metrics(base);
    assert.match(text, /_console_clients /, `${name}: the console series are there`);
    const r = promtool(text);
    assert.equal(r.output, '', `${name}: promtool check metrics says nothing`);
    assert.equal(r.status, 0, `${name}: promtool check metrics exits 0`);
  }
  // A series that only grows on a database refusing writes is there from the start, at 0.
  assert.equal(metricValue(await metrics(bridge.base), 'canrelay_bridge_command_statuses_dropped_total'), 0);
});
