/**
 * Backpressure end to end: a connected peer that falls behind holds the sender's acks, nothing is
 * dropped; and a real agent replaying at --replay-speed 0 waits while its uplink is backed up (README:
 * "waits while the uplink is backed up"): intake stalls, then resumes, zero frames dropped; and a console
 * client at the bridge that stops reading never slows the relay (README: "a console never slows the data
 * plane"): it is cut off, every frame still crosses, a reading client goes on.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { startBridgeProcess } from '../helpers/bridge-process.js';
import { FakeAgent, numberedFrame } from '../helpers/fake-agent.js';
import { startAgentProcess, tempDir, writeCandumpLog } from '../helpers/processes.js';
import { getJson, metricValue, SseClient } from '../helpers/sse-client.js';
import { until } from '../helpers/until.js';

const cleanup: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of cleanup) await c();
});

test("a slow peer holds the sender's acks until it catches up; nothing is dropped", async () => {
  const bridge = await startBridgeProcess(['--backlog-max-frames', '100000', '--backlog-max-age-ms', '60000']);
  cleanup.push(() => bridge.proc.stop());
  const ta = await bridge.admin.register('bp-a');
  const tb = await bridge.admin.register('bp-b');
  const tc = await bridge.admin.register('bp-c'); // in no group: only its acks matter
  await bridge.admin.group('bp', 'bp-a', 'bp-b');
  const b = await FakeAgent.connect(bridge.base, { dongle: 'bp-b', token: tb, autoAck: false });
  const a = await FakeAgent.connect(bridge.base, { dongle: 'bp-a', token: ta });
  cleanup.push(
    () => a.close(),
    () => b.close(),
  );

  // B reads but acknowledges nothing: the in-flight window fills, then frames wait at the bridge.
  let n = 0;
  let last = 0;
  for (let i = 0; i < 40; i++) last = a.sendFrames(Array.from({ length: 1000 }, () => numberedFrame('can0', 0x100, n++)));
  // Waited for, not slept: the bridge has taken every frame of A; then a third agent's batch is acked, so
  // the bridge's one ack timer (ack-clock.ts) has ticked since — a bridge that did not hold would have
  // acked A's last batch by then — and an event A sends after that is acked at once, so any data_ack
  // written to A before it has reached A (one socket, in order).
  await until(
    async () => metricValue((await getJson(bridge.base + '/metrics')).text, 'canrelay_bridge_frames_received_total', { dongle: 'bp-a' }) === n,
    30_000,
    'every frame of A at the bridge',
  );
  const c = await FakeAgent.connect(bridge.base, { dongle: 'bp-c', token: tc });
  cleanup.push(() => c.close());
  const cb = c.sendFrames([numberedFrame('can0', 0x100, 0)]);
  await c.waitFor(() => c.ackedUp === cb, 10_000, "the third agent's batch acknowledged (an ack tick)");
  a.sendEvent(1, 'log', { ts: new Date().toISOString(), level: 'info', message: 'after the frames' });
  await a.waitFor(() => a.ackedEvents === 1, 10_000, 'the event after the frames acknowledged');
  assert.ok(a.ackedUp < last, `acks held while B is behind (acked ${a.ackedUp} of ${last})`);

  // B catches up: the held acks go out and every frame arrives, once, in order.
  b.autoAck = true;
  b.ackDown(b.appliedBatch);
  await a.waitFor(() => a.ackedUp === last, 10_000, 'every batch acknowledged');
  await b.waitFor(() => b.applied.length === n, 10_000, 'every frame at B');
  assert.deepEqual(
    b.applied.map((f) => f.seq),
    Array.from({ length: n }, (_, i) => i),
  );
  const m = await (await fetch(bridge.base + '/metrics')).text();
  assert.doesNotMatch(m, /canrelay_bridge_frames_dropped_total\{[^}]*\} [1-9]/);
});

test('--replay-speed 0 waits while the uplink is backed up: intake stalls while the peer withholds acks, then resumes; nothing dropped', async (t) => {
  const N = 100_000;
  const bridge = await startBridgeProcess(['--backlog-max-frames', '200000', '--backlog-max-age-ms', '600000']);
  cleanup.push(() => bridge.proc.stop());
  const ta = await bridge.admin.register('rs-a');
  const tb = await bridge.admin.register('rs-b');
  await bridge.admin.group('rs', 'rs-a', 'rs-b');
  const b = await FakeAgent.connect(bridge.base, { dongle: 'rs-b', token: tb, autoAck: false });
  cleanup.push(() => b.close());
  const dir = tempDir('canrelay-replay-bp-');
  writeCandumpLog(join(dir, 'a.log'), N, { bus: 'can0', ids: [0x100, 0x200] });
  // A 30,000-frame uplink buffer for a 100,000-frame file: a replay that did not wait would overflow it
  // while acks are withheld, and the drop counters below would show it.
  const a = await startAgentProcess(
    ['--replay', join(dir, 'a.log'), '--replay-speed', '0', '--bridge', bridge.base, '--token', ta, '--relay-max-age-ms', '600000', '--uplink-buffer-frames', '30000'],
    { id: 'rs-a' },
  );
  cleanup.push(() => a.proc.stop('SIGKILL'));
  const fig = async (): Promise<{ rx: number; buffered: number; dropped: number; connected: number }> => {
    const m = (await getJson(a.base + '/metrics')).text;
    const u = (kind: string): number => metricValue(m, 'canrelay_uplink', { kind }) ?? NaN;
    return {
      rx: metricValue(m, 'canrelay_can_frames_total', { bus: 'can0', direction: 'rx' }) ?? 0,
      buffered: u('frames_buffered'),
      dropped: u('frames_dropped_buffer_full') + u('frames_dropped_too_old') + u('frames_dropped_bad_time'),
      connected: u('connected'),
    };
  };

  // B withholds its acks: the bridge holds A's, A's uplink backs up past its pause mark (20,000 frames),
  // and the replay stops taking frames in — short of the file's end. On a loaded machine the replay can fill
  // A's buffer before A has even connected: the stall counts only once A is connected and B holds batches
  // it has not acknowledged (before that, B has nothing to acknowledge: a data_ack of batch -1 is malformed).
  await until(
    async () => {
      const f = await fig();
      return f.connected === 1 && b.appliedBatch >= 0 && f.buffered > 20_000;
    },
    60_000,
    "A connected, B holding relayed batches unacknowledged, and A's uplink backed up",
  );
  const stalled = await fig();
  t.diagnostic(`backed up: ${stalled.rx} frames taken in, ${stalled.buffered} held for the bridge`);
  assert.ok(stalled.rx < N, `intake stalled short of the end: ${stalled.rx} of ${N} frames taken in`);
  assert.equal(stalled.dropped, 0, 'nothing dropped while waiting');

  // B catches up: the replay resumes and every frame reaches B, once; none dropped anywhere.
  b.autoAck = true;
  b.ackDown(b.appliedBatch);
  await b.waitFor(() => b.applied.length >= N, 120_000, 'every replayed frame at B');
  const done = await fig();
  assert.equal(done.rx, N, 'the whole file was taken in');
  assert.equal(done.dropped, 0, 'no frame dropped by the agent');
  assert.equal(b.applied.length, N, 'each frame once at B');
  const m = (await getJson(bridge.base + '/metrics')).text;
  assert.doesNotMatch(m, /canrelay_bridge_frames_dropped_total\{[^}]*\} [1-9]/, 'no frame dropped by the bridge');
});

test('a bridge console client that stops reading never slows the relay: it is cut off, every frame crosses, a reader goes on', async () => {
  const bridge = await startBridgeProcess(['--console-max-rate', '100000', '--client-max-pending-kib', '256', '--backlog-max-frames', '100000', '--backlog-max-age-ms', '60000']);
  cleanup.push(() => bridge.proc.stop());
  const ta = await bridge.admin.register('sc-a');
  const tb = await bridge.admin.register('sc-b');
  await bridge.admin.group('sc', 'sc-a', 'sc-b');
  const b = await FakeAgent.connect(bridge.base, { dongle: 'sc-b', token: tb });
  const a = await FakeAgent.connect(bridge.base, { dongle: 'sc-a', token: ta });
  cleanup.push(
    () => a.close(),
    () => b.close(),
  );
  const url = `${bridge.base}/api/v1/streams/dongles/sc-a/console?access_token=${bridge.admin.token}`;
  const stuck = await SseClient.connect(url, {}, { paused: true });
  const reader = await SseClient.connect(url);
  cleanup.push(async () => (stuck.close(), reader.close()));

  // A's frames, unsampled on its console: the stuck client passes its 256 KiB bound (and the kernel's
  // buffers) while every frame is relayed to B. Bounded: at most 400 batches of 1,000.
  const cut = async (): Promise<number> => metricValue((await getJson(bridge.base + '/metrics')).text, 'canrelay_bridge_console_clients_cut_total') ?? 0;
  let n = 0;
  let last = 0;
  for (let i = 0; i < 400 && (await cut()) === 0; i++) {
    last = a.sendFrames(Array.from({ length: 1000 }, () => numberedFrame('can0', 0x100, n++)));
    await a.waitFor(() => a.ackedUp >= last - 20, 30_000, 'the relay keeps acknowledging while a console client is stuck');
  }
  assert.equal(await cut(), 1, `the stuck client was cut off (after ${n} frames)`);
  await b.waitFor(() => b.applied.length === n, 30_000, 'every frame at B');
  assert.deepEqual(
    b.applied.map((f) => f.seq),
    Array.from({ length: n }, (_, i) => i),
    'in order, each once',
  );
  const seen = reader.events.length;
  a.sendFrames(Array.from({ length: 100 }, () => numberedFrame('can0', 0x100, n++)));
  await reader.waitFor((ev) => ev.length > seen, 10_000, 'the reading client goes on');
  assert.equal(reader.closed, false);
});
