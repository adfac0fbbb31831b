/**
 * Sampling on the bridge's consoles (README, Sampling: the dongle and group consoles thin like the
 * agent's), through a real bridge process and protocol-level agents over loopback: past
 * --console-max-rate the console announces `sampling_on`, shows fewer frames that carry `represents`,
 * every id at least once a second (on a group console per side: the other side's quiet id is not
 * starved by this side's flood) — and the relay underneath stays unsampled, every frame at the peer.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { startBridgeProcess } from '../helpers/bridge-process.js';
import { FakeAgent, numberedFrame } from '../helpers/fake-agent.js';
import { getJson, metricValue, SseClient, type SseEvent } from '../helpers/sse-client.js';

const cleanup: (() => Promise<unknown> | void)[] = [];
after(async () => {
  for (const c of cleanup.reverse()) await c();
});

test('dongle and group consoles sample past --console-max-rate; every id shows; represents; the relay is not sampled', async () => {
  const MAX = 100;
  const bridge = await startBridgeProcess(['--console-max-rate', String(MAX), '--backlog-max-frames', '100000', '--backlog-max-age-ms', '60000']);
  cleanup.push(() => bridge.proc.stop('SIGKILL'));
  const ta = await bridge.admin.register('sm-a');
  const tb = await bridge.admin.register('sm-b');
  await bridge.admin.group('sm', 'sm-a', 'sm-b');
  const b = await FakeAgent.connect(bridge.base, { dongle: 'sm-b', token: tb });
  const a = await FakeAgent.connect(bridge.base, { dongle: 'sm-a', token: ta });
  cleanup.push(
    () => a.close(),
    () => b.close(),
  );
  const q = `access_token=${bridge.admin.token}`;
  const dongle = await SseClient.connect(`${bridge.base}/api/v1/streams/dongles/sm-a/console?${q}`);
  const group = await SseClient.connect(`${bridge.base}/api/v1/streams/groups/sm/console?${q}`);
  cleanup.push(
    () => dongle.close(),
    () => group.close(),
  );

  // Bursts of A's 0x100 (500 at a time, each acknowledged before the next), far above 100/s, until both
  // consoles have shown a frame standing for others (a later second: a frame left out is told by the next
  // one that passes); one frame of A's quiet 0x7E8 in the first burst and B's quiet 0x7E9 beside it.
  // Bounded: at most 100 bursts.
  let N = 0;
  const hasRepresents = (c: SseClient): boolean => c.events.some((e) => e.event === 'can_frame' && e.json.id === '0x100' && Number(e.json.represents) > 1);
  for (let round = 0; round < 100 && !(hasRepresents(dongle) && hasRepresents(group)); round++) {
    const burst = Array.from({ length: 500 }, () => numberedFrame('can0', 0x100, N++));
    if (round === 0) burst.splice(250, 0, numberedFrame('can0', 0x7e8, 0));
    const last = a.sendFrames(burst);
    if (round === 0) b.sendFrames([numberedFrame('can0', 0x7e9, 0)]);
    await a.waitFor(() => a.ackedUp === last, 20_000, "A's burst acknowledged");
  }

  // The relay is the data plane: every frame at B, none sampled.
  await b.waitFor(() => b.applied.length === N + 1, 20_000, 'every frame of A at B');

  const can = (c: SseClient, id: string): SseEvent[] => c.ofType('can_frame').filter((e) => e.json.id === id);
  const sampled = (c: SseClient, name: string): void => {
    const on = c.ofType('log').find((e) => e.json.code === 'sampling_on');
    assert.ok(on, `${name}: a sampling_on log event`);
    const details = on.json.details as Record<string, number>;
    assert.equal(details.output_rate, MAX, `${name}: output rate ${JSON.stringify(details)}`);
    assert.ok(details.input_rate > MAX, `${name}: input rate ${JSON.stringify(details)}`);
    const flood = can(c, '0x100');
    assert.ok(flood.length > 0 && flood.length < N / 2, `${name}: the flood thinned (${flood.length} of ${N} shown)`);
    assert.ok(
      flood.some((e) => Number(e.json.represents) > 1),
      `${name}: sampled frames say how many they stand for`,
    );
    const represented = flood.reduce((s, e) => s + Number(e.json.represents ?? 1), 0);
    assert.ok(represented <= N && represented > flood.length, `${name}: represents (${represented}) stands for more than shown, never more than sent`);
    assert.equal(can(c, '0x7E8').length, 1, `${name}: A's quiet id shows despite the flood`);
  };
  await dongle.waitFor((ev) => ev.some((e) => e.event === 'can_frame' && e.json.id === '0x7E8'), 20_000, "A's quiet id on the dongle console");
  sampled(dongle, 'dongle console');
  await group.waitFor((ev) => ev.some((e) => e.event === 'can_frame' && e.json.id === '0x7E9'), 20_000, "B's quiet id on the group console");
  sampled(group, 'group console');
  const fromB = can(group, '0x7E9');
  assert.equal(fromB.length, 1, "B's one frame is on the group console: the other side's quiet id is not starved");
  assert.equal(fromB[0]!.json.dongle, 'sm-b');
  assert.ok(
    can(group, '0x100').every((e) => e.json.dongle === 'sm-a'),
    'group console frames carry their dongle',
  );

  const m = (await getJson(bridge.base + '/metrics')).text;
  assert.ok((metricValue(m, 'canrelay_bridge_console_frames_sampled_out_total') ?? 0) > 0, 'frames sampled out are counted');
  assert.equal(metricValue(m, 'canrelay_bridge_frames_relayed_total', { group: 'sm', direction: 'a_to_b' }), N + 1, 'every frame relayed');
});
