/**
 * A cluster node stopped (SIGTERM) while nats-server is frozen (SIGSTOP: its sockets open, no answers) and a
 * group side is offline with a backlog: the NATS connection's drain never ends, so the stop must not wait
 * on it for longer than a bound, and nothing the stop promises may come after that wait. The frames held
 * for the offline side are counted (`bridge_stopped`) and kept in the group's persisted `dropped`, the
 * `bridge stopped` line is logged, and the process exits 0 before the hard stop.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startBridgeProcess, type StartedBridge } from '../helpers/bridge-process.js';
import { clusterServers, metricsText } from '../helpers/cluster-servers.js';
import { FakeAgent, numberedFrame } from '../helpers/fake-agent.js';
import { metricValue } from '../helpers/sse-client.js';
import { until } from '../helpers/until.js';

const servers = clusterServers();
const { track } = servers;
// A test that fails while nats-server is paused must not leave it stopped for the file's cleanup.
servers.onStop(() => servers.nats?.pause(false));

/** Only the stop may drop a frame: the backlog bounds are out of reach. */
const FLAGS = ['--backlog-max-frames', '1000000', '--backlog-max-age-ms', '3600000'];
const HELD = 300;

async function node(db: string, extra: string[] = []): Promise<StartedBridge> {
  return track(await startBridgeProcess(['--cluster', servers.nats.url, '--node-id', 'st1', ...FLAGS, ...extra], { db }));
}
const groupState = async (b: StartedBridge): Promise<Record<string, unknown>> => (await b.admin.get('/api/v1/groups/st')).body;

test('a node stopped while nats-server is frozen: the stop ends (bridge stopped, exit 0) and the frames held for an offline side are in the persisted dropped', async (t) => {
  const db = await servers.pg.createDatabase();
  const n1 = await node(db);
  const ta = await n1.admin.register('st-a');
  await n1.admin.register('st-b'); // never connected: side B is offline
  await n1.admin.group('st', 'st-a', 'st-b');
  const a = await FakeAgent.connect(n1.base, { dongle: 'st-a', token: ta });
  servers.onStop(() => void a.close());
  for (let i = 0; i < 3; i++) a.sendFrames(Array.from({ length: HELD / 3 }, (_, k) => numberedFrame('can0', 0x100, i * (HELD / 3) + k)));
  await until(
    async () => metricValue(await metricsText(n1.base), 'canrelay_bridge_backlog_frames', { group: 'st', side: 'b', node: 'st1' }) === HELD,
    30_000,
    `the node holding ${HELD} frames for B`,
  );
  await a.waitFor(() => a.ackedUp === 3, 30_000, "A's batches acknowledged: only the node holds those frames now");

  servers.nats.pause(true);
  const t0 = performance.now();
  const code = await n1.proc.stop('SIGTERM');
  const took = Math.round(performance.now() - t0);
  t.diagnostic(`SIGTERM to exit with nats-server frozen: ${took} ms (exit ${code})`);
  servers.nats.pause(false);
  const held = n1.proc.logs.find((l) => l.code === 'relay_dropped_at_stop');
  assert.equal(held?.frames, HELD, 'the stopping node logs the frames it drops');

  const again = await node(db);
  // Both facts in one comparison, so a failure shows each.
  assert.deepEqual(
    { stopped_line: n1.proc.logs.some((l) => l.msg === 'bridge stopped'), exit: code, dropped_after_restart: (await groupState(again)).dropped },
    { stopped_line: true, exit: 0, dropped_after_restart: HELD },
    'the stop ran to its end ("bridge stopped", exit 0 before the hard stop) and the next start counts the frames dropped at the stop',
  );
  await a.close();
});
