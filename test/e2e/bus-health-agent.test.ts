/**
 * Bus health through the real agent and bridge processes (the simulator, loopback HTTP/SSE/WebSocket):
 * `bus_state` with the --bitrate load reaches the console, the metrics and the bridge's console; a stop
 * never claims `online` on the way out; a bad --bitrate is one clear line.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { startBridgeProcess } from '../helpers/bridge-process.js';
import { runCli, startAgentProcess } from '../helpers/processes.js';
import { getJson, metricValue, SseClient } from '../helpers/sse-client.js';

const stops: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const s of stops) await s();
});

test('bus_state: load from --bitrate on the agent console, in the metrics and mirrored to the bridge', async () => {
  const bridge = await startBridgeProcess();
  stops.push(() => bridge.proc.stop());
  const token = await bridge.admin.register('bh-a');
  const a = await startAgentProcess(['--sim', '--sim-rate', '1000', '--bitrate', 'can0=500000', '--bus-state-interval', '1', '--bridge', bridge.base, '--token', token], {
    id: 'bh-a',
  });
  stops.push(() => a.proc.stop());
  const local = await SseClient.connect(a.url);
  const remote = await SseClient.connect(`${bridge.base}/api/v1/streams/dongles/bh-a/console?access_token=${bridge.admin.token}`);
  const loadedStates = (evs: { event: string; json: Record<string, unknown> }[]) =>
    evs.filter((e) => e.event === 'bus_state' && typeof e.json.load === 'number' && e.json.load > 0);
  const loaded = (evs: { event: string; json: Record<string, unknown> }[]) => loadedStates(evs).length > 0;
  // The second loaded one: the first second's frames began when the simulator did, mid-second.
  await local.waitFor((evs) => loadedStates(evs).length >= 2, 20_000, 'two bus_states with a load');
  const s = loadedStates(local.events)[1]!.json;
  assert.deepEqual(
    { bus: s.bus, link: s.link, state: s.state, bitrate: s.bitrate, src: s.bitrate_source, tec: s.tec },
    { bus: 'can0', link: 'up', state: null, bitrate: 500000, src: 'flag', tec: null },
  );
  // The load is the second's frames at their length on the wire: the simulator's frames are 47-160 bits
  // each (classic, 11-bit ids, 0-8 bytes, stuffing), so load x bitrate / frames lies in that range (~108
  // measured). How many frames a loaded machine simulates in a second varies; this relation does not.
  const load = s.load as number;
  const frames = s.frame_rate as number;
  assert.ok(frames > 0 && load > 0, `load ${load}, frame_rate ${frames}`);
  const bitsPerFrame = (load * 500_000) / frames;
  assert.ok(bitsPerFrame >= 47 && bitsPerFrame <= 160, `load ${load} at ${frames} frames/s is ${bitsPerFrame.toFixed(1)} bits per frame`);
  const m = (await getJson(a.base + '/metrics')).text;
  assert.ok((metricValue(m, 'canrelay_bus_load_ratio', { bus: 'can0' }) ?? 0) > 0);
  assert.equal(metricValue(m, 'canrelay_bus_bitrate_bps', { bus: 'can0' }), 500000);
  assert.equal(metricValue(m, 'canrelay_bus_errors_total', { bus: 'can0', class: 'bus_off' }), 0);
  assert.equal(metricValue(m, 'canrelay_bus_state', { bus: 'can0', state: 'error-active' }), undefined, 'no controller: no state series');
  await remote.waitFor(loaded, 20_000, 'the bus_state mirrored to the bridge');
  assert.equal(remote.ofType('bus_state')[0]!.json.dongle, 'bh-a');
  local.close();
  remote.close();
});

test('stopping: the interface goes down inside the final offline presence, never as "online"', async () => {
  const a = await startAgentProcess(['--sim', '--sim-rate', '50']);
  const c = await SseClient.connect(a.url);
  await c.waitFor((ev) => ev.some((e) => e.event === 'can_frame'), 10_000, 'frames');
  const before = c.ofType('presence').length;
  assert.equal(await a.proc.stop('SIGTERM'), 0);
  await c.waitClosed();
  const after = c
    .ofType('presence')
    .slice(before)
    .map((e) => e.json);
  assert.deepEqual(
    after.map((p) => [p.state, p.buses]),
    [['offline', { can0: 'down' }]],
  );
});

test('bad --bitrate: one clear line and exit code 2', async () => {
  for (const [v, msg] of [
    ['can0', /--bitrate.*bus=bitrate/],
    ['can0=12', /--bitrate/],
    ['can0=500000,can0=250000', /can0 is given twice/],
    ['can0=99000000', /outside 1000-20000000/],
  ] as const) {
    const p = runCli(['agent', '--sim', '--bitrate', v]);
    assert.equal(await p.wait(), 2, `--bitrate ${v} (stderr: ${p.stderr})`);
    assert.match(p.stderr, msg);
  }
});
