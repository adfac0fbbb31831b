/**
 * Command timeouts in a cluster (real nats-server, real PostgreSQL, real bridge processes, protocol-level
 * fake agents that never report a command): a sent command whose agent moved to another node still times
 * out, and a queued command that several nodes know of times out once — one `timed_out` history row, one
 * count in the metrics of all nodes together — not once per node.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startBridgeProcess, type StartedBridge } from '../helpers/bridge-process.js';
import { clusterServers, metricsText as metrics } from '../helpers/cluster-servers.js';
import { FakeAgent } from '../helpers/fake-agent.js';
import { metricValue } from '../helpers/sse-client.js';
import { until } from '../helpers/until.js';

const servers = clusterServers();
const { track } = servers;

async function node(id: string, db: string): Promise<StartedBridge> {
  return track(await startBridgeProcess(['--cluster', servers.nats.url, '--node-id', id, '--uplink-heartbeat-seconds', '1'], { db }));
}

const statusOn = async (n: StartedBridge, id: string): Promise<unknown> => (await n.admin.get(`/api/v1/commands/${id}`)).body.status;
const frame = { type: 'send_frame', bus: 'can0', id: '0x123', data_hex: '01' };

test('a command sent by node 1 whose agent reconnects to node 2 (its state lost, never reporting it) times out, once', async () => {
  const db = await servers.pg.createDatabase();
  const n1 = await node('t1', db);
  const n2 = await node('t2', db);
  const token = await n1.admin.register('tm-a');
  const a1 = await FakeAgent.connect(n1.base, { dongle: 'tm-a', token });
  const r = await n1.admin.post('/api/v1/dongles/tm-a/commands', { ...frame, timeout_s: 1 });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  const id = String(r.body.command_id);
  await a1.waitFor(() => a1.ofType('command').some((m) => m.command_id === id), 10_000, 'the command on the agent');
  // Node 2 must know it was sent before the agent arrives there, or it would deliver it again (queued in its view).
  await until(async () => (await statusOn(n2, id)) === 'sent', 10_000, "'sent' seen on node 2");
  await a1.close();
  // A new agent run (its state wiped): it will never report the command. Refused as a duplicate until node 1's
  // release of the lease is heard on node 2: retried, as an agent does.
  let a2: FakeAgent | undefined;
  await until(
    async () => {
      a2 = await FakeAgent.connect(n2.base, { dongle: 'tm-a', token }, undefined, 'a-new-run').catch(() => undefined);
      return a2 !== undefined;
    },
    20_000,
    'the agent welcomed on node 2',
  );
  if (a2 === undefined) return;
  try {
    // Its deadline (1 s) + the report wait (10 s) counted from the connection on node 2; generous for a loaded machine.
    for (const n of [n1, n2]) await until(async () => (await statusOn(n, id)) === 'timed_out', 60_000, `timed_out on ${n.base}`);
    assert.equal(a2.ofType('command').length, 0, 'not delivered again by node 2');
    const history = ((await n2.admin.get(`/api/v1/commands/${id}`)).body.history as { status: string }[]).map((h) => h.status);
    assert.deepEqual(history, ['queued', 'sent', 'timed_out']);
  } finally {
    await a2?.close();
  }
});

test('queued commands of an offline dongle known to several nodes time out once each, PostgreSQL away at their deadline: one history row, counted once', async () => {
  const db = await servers.pg.createDatabase();
  const n1 = await node('q1', db);
  const n2 = await node('q2', db);
  await n1.admin.register('tm-q');
  const ids: string[] = [];
  for (let i = 0; i < 10; i++) {
    const r = await n1.admin.post('/api/v1/dongles/tm-q/commands', { ...frame, timeout_s: 10 });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    ids.push(String(r.body.command_id));
  }
  // A third node started now loads them from the store as a restarted node does.
  const n3 = await node('q3', db);
  // PostgreSQL stops answering across their deadline: each node decides without hearing the others'.
  const due = Math.max(...(await Promise.all(ids.map(async (id) => Date.parse(String((await n1.admin.get(`/api/v1/commands/${id}`)).body.expires_at))))));
  servers.pg.pause(true);
  try {
    // Not a measurement: time for several 200 ms sweeps past the last deadline, even on a loaded machine.
    await new Promise((r) => setTimeout(r, Math.max(0, due - Date.now()) + 3000));
  } finally {
    servers.pg.pause(false);
  }
  for (const n of [n1, n2, n3]) for (const id of ids) await until(async () => (await statusOn(n, id)) === 'timed_out', 60_000, `${id} timed_out on ${n.base}`);
  let counted = 0;
  for (const n of [n1, n2, n3]) {
    const m = await metrics(n.base);
    counted += metricValue(m, 'canrelay_bridge_command_status_total', { status: 'timed_out', node: /node="([^"]+)"/.exec(m)?.[1] ?? '' }) ?? 0;
  }
  // Stopped (their statuses written), so that nothing more can be added to what the database says.
  for (const n of [n1, n2, n3]) assert.equal(await n.proc.stop('SIGTERM'), 0);
  const rows = await servers.pg.sql(db, "SELECT command_id, count(*)::int AS n FROM command_history WHERE status = 'timed_out' GROUP BY command_id");
  assert.deepEqual(
    rows.map((x) => x.n),
    ids.map(() => 1),
    'one timed_out history row per command',
  );
  assert.equal(counted, ids.length, 'each timeout counted once, all nodes together');
});
