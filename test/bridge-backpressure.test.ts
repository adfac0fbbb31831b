/** Backpressure end to end: a connected peer that falls behind holds the sender's acks, nothing is dropped. */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { startBridgeProcess } from './helpers/bridge-process.js';
import { FakeAgent, numberedFrame } from './helpers/fake-agent.js';

const cleanup: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of cleanup) await c();
});

test('a slow peer holds the sender\'s acks until it catches up; nothing is dropped', async () => {
  const bridge = await startBridgeProcess(['--backlog-max-frames', '100000', '--backlog-max-age-ms', '60000']);
  cleanup.push(() => bridge.proc.stop());
  const ta = await bridge.admin.register('bp-a');
  const tb = await bridge.admin.register('bp-b');
  await bridge.admin.group('bp', 'bp-a', 'bp-b');
  const b = await FakeAgent.connect(bridge.base, { dongle: 'bp-b', token: tb, autoAck: false });
  const a = await FakeAgent.connect(bridge.base, { dongle: 'bp-a', token: ta });
  cleanup.push(() => a.close(), () => b.close());

  // B reads but acknowledges nothing: the in-flight window fills, then frames wait at the bridge.
  let n = 0;
  let last = 0;
  for (let i = 0; i < 40; i++) last = a.sendFrames(Array.from({ length: 1000 }, () => numberedFrame('can0', 0x100, n++)));
  await new Promise((r) => setTimeout(r, 1000));
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
