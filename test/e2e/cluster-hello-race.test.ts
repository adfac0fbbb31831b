/**
 * Cluster mode decides a hello after a JetStream round trip (the dongle's lease): a link that closes
 * meanwhile must not be admitted. It was: the dead link became the dongle's current one, so the agent's
 * next connection was refused as a duplicate (4409) and the fleet counted it connected. The round trip is
 * held open by pausing nats-server (SIGSTOP) while the hello is on its way; real bridge, real NATS and
 * PostgreSQL, a protocol-level agent.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connect } from 'nats';
import { OWNER_BUCKET } from '../../cloud-bridge/cluster/ownership.js';
import { startBridgeProcess } from '../helpers/bridge-process.js';
import { clusterServers, metricsText as metrics } from '../helpers/cluster-servers.js';
import { FakeAgent } from '../helpers/fake-agent.js';
import { metricValue } from '../helpers/sse-client.js';
import { until } from '../helpers/until.js';

const servers = clusterServers();
const { track } = servers;
const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('a link closed while its hello waits on NATS is not admitted: the next connection of that dongle is welcomed', async () => {
  const db = await servers.pg.createDatabase();
  const n1 = track(await startBridgeProcess(['--cluster', servers.nats.url, '--node-id', 'hr1'], { db }));
  const token = await n1.admin.register('hx');
  const first = await FakeAgent.connect(n1.base, { dongle: 'hx', token, hello: false });
  const nats = servers.nats.pid!;
  process.kill(nats, 'SIGSTOP');
  try {
    void first.sayHello(30_000).catch(() => {});
    await pause(500); // the hello reaches the bridge, whose lease request now waits on the paused server
    first.kill();
    await first.closed();
    await pause(300); // the bridge has seen the close
  } finally {
    process.kill(nats, 'SIGCONT');
  }
  await n1.proc.waitForLog((l) => l.msg === 'agent link closed before its hello was decided: not admitted', 20_000);
  // The lease the claim took for the closed link is given back: nothing here would refresh it, and another
  // node whose question to this one came late would refuse the agent against it until it aged.
  const nc = await connect({ servers: servers.nats.url });
  try {
    const kv = await nc.jetstream().views.kv(OWNER_BUCKET);
    const holder = async (): Promise<string | undefined> => {
      const e = await kv.get('hx').catch(() => null);
      return e?.operation === 'PUT' ? (e.json() as { node?: string }).node : undefined;
    };
    await until(async () => (await holder()) === undefined, 10_000, 'the abandoned lease given back');
    const second = await FakeAgent.connect(n1.base, { dongle: 'hx', token, hello: false });
    await second.sayHello(20_000);
    assert.ok(second.welcome, 'the next connection is welcomed, not refused as a duplicate');
    assert.equal(metricValue(await metrics(n1.base), 'canrelay_bridge_agents_connected', { node: 'hr1' }), 1, 'one link: the live one');
    assert.equal(await holder(), 'hr1', "the live link's lease");
    await second.close();
  } finally {
    await nc.close();
  }
});
