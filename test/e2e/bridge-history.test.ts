/**
 * The bridge's console history through the real process: consoles nobody watched still give a viewer
 * who arrives later the right history and ids (all of it, or a ?ids=/?buses= selection), and a small --history-memory-mb is held across many
 * dongles while a resume into forgotten history gets stream_reset, never a gap.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { startBridgeProcess, type StartedBridge } from '../helpers/bridge-process.js';
import { FakeAgent, numberedFrame } from '../helpers/fake-agent.js';
import { getJson, metricValue, SseClient } from '../helpers/sse-client.js';

const cleanup: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => {});
});
async function bridgeWith(args: string[] = []): Promise<StartedBridge> {
  const b = await startBridgeProcess(args);
  cleanup.push(() => b.proc.stop());
  return b;
}
async function agent(b: StartedBridge, id: string): Promise<FakeAgent> {
  const a = await FakeAgent.connect(b.base, { dongle: id, token: await b.admin.register(id) });
  cleanup.push(() => a.close());
  return a;
}
async function viewer(b: StartedBridge, path: string, headers: Record<string, string> = {}): Promise<SseClient> {
  const c = await SseClient.connect(`${b.base}/api/v1/streams/${path}`, { Authorization: `Bearer ${b.admin.token}`, ...headers });
  cleanup.push(async () => c.close());
  return c;
}
const frames = (c: SseClient) => c.ofType('can_frame');
const num = (hex: unknown): number => parseInt(String(hex).replace(/ /g, ''), 16);

test('a viewer who arrives after the frames gets them from the history: right ids, order and data on the dongle, group and peer consoles', async () => {
  const b = await bridgeWith();
  const a = await agent(b, 'ha');
  const peer = await agent(b, 'hb');
  await b.admin.group('hg', 'ha', 'hb');
  for (let k = 0; k < 6; k++) a.sendFrames(Array.from({ length: 10 }, (_, i) => numberedFrame('can0', 0x123, k * 10 + i)));
  await peer.waitFor(() => peer.applied.length === 60, 5000, '60 relayed frames');

  const d = await viewer(b, 'dongles/ha/console?backlog=1000');
  await d.waitFor((evs) => evs.filter((e) => e.event === 'can_frame').length === 60, 5000, '60 frames of history');
  const df = frames(d);
  assert.deepEqual(
    df.map((e) => num(e.json.data_hex)),
    Array.from({ length: 60 }, (_, i) => i),
    'every frame, in order',
  );
  const ids = d.events.map((e) => Number(e.id));
  for (let i = 1; i < ids.length; i++) assert.equal(ids[i], ids[i - 1]! + 1, 'contiguous ids');
  assert.ok(df.every((e) => e.json.dongle === 'ha' && e.json.direction === 'rx' && e.json.id === '0x123'));

  const g = await viewer(b, 'groups/hg/console?backlog=1000');
  await g.waitFor((evs) => evs.filter((e) => e.event === 'can_frame').length === 60, 5000, 'group history');
  assert.deepEqual(
    frames(g).map((e) => e.json.data_hex),
    df.map((e) => e.json.data_hex),
  );

  const p = await viewer(b, 'dongles/hb/console?backlog=1000');
  await p.waitFor((evs) => evs.filter((e) => e.event === 'can_frame').length === 60, 5000, 'peer history');
  assert.ok(
    frames(p).every((e) => e.json.direction === 'tx'),
    'shown on the peer as transmitted',
  );

  // A resume from the middle: exactly the later events, then live.
  const mid = df[29]!.id!;
  const r = await viewer(b, 'dongles/ha/console', { 'Last-Event-ID': mid });
  await r.waitFor((evs) => evs.filter((e) => e.event === 'can_frame').length === 30, 5000, 'the 30 later frames');
  assert.equal(r.ofType('stream_reset').length, 0);
  assert.deepEqual(
    frames(r).map((e) => num(e.json.data_hex)),
    Array.from({ length: 30 }, (_, i) => 30 + i),
  );
  a.sendFrames([numberedFrame('can0', 0x123, 60)]);
  await r.waitFor((evs) => evs.filter((e) => e.event === 'can_frame').length === 31, 5000, 'the live frame');
  assert.equal(Number(frames(r)[30]!.id), Number(frames(r)[29]!.id) + 1);

  // A selection on the bridge's consoles (README "Selecting frames"): the group's 0x7E8 frames on can1 only.
  peer.sendFrames(Array.from({ length: 5 }, (_, i) => numberedFrame('can1', 0x7e8, 100 + i)));
  await a.waitFor(() => a.applied.length === 5, 5000, "the peer's frames relayed");
  const s = await viewer(b, 'groups/hg/console?backlog=1000&ids=7E8&buses=can1');
  await s.waitFor((evs) => evs.filter((e) => e.event === 'can_frame').length === 5, 5000, 'the 5 selected frames');
  await new Promise((res) => setTimeout(res, 200));
  assert.deepEqual(
    frames(s).map((e) => `${String(e.json.dongle)} ${String(e.json.bus)} ${String(e.json.id)} ${num(e.json.data_hex)}`),
    [100, 101, 102, 103, 104].map((n) => `hb can1 0x7E8 ${n}`),
    'only the frames selected, from the history',
  );
  const bad = await getJson(`${b.base}/api/v1/streams/groups/hg/console?ids=7G8`, { Authorization: `Bearer ${b.admin.token}` });
  assert.equal(bad.status, 400);
  assert.match(String(bad.body.error), /^ids: /);
});

test('--history-memory-mb 1 holds across 40 busy dongles; a resume into forgotten history gets stream_reset, then live', async () => {
  const b = await bridgeWith(['--history-memory-mb', '1', '--console-max-rate', '1000000']);
  const agents: FakeAgent[] = [];
  for (let i = 0; i < 40; i++) agents.push(await agent(b, `m${i}`));
  const first = await viewer(b, 'dongles/m0/console');
  agents[0]!.sendFrames([numberedFrame('can0', 0x100, 0)]);
  await first.waitFor((evs) => evs.some((e) => e.event === 'can_frame'), 5000, 'the first frame');
  const firstId = frames(first)[0]!.id!;
  first.close();
  // 40 × 2,000 frames of ~60 bytes kept compactly (~5 MB): five times the budget.
  let maxBytes = 0;
  for (let round = 0; round < 20; round++) {
    for (const a of agents) a.sendFrames(Array.from({ length: 100 }, (_, i) => numberedFrame('can0', 0x100, 1 + round * 100 + i)));
    const m = (await getJson(`${b.base}/metrics`, { Authorization: `Bearer ${b.admin.token}` })).text;
    maxBytes = Math.max(maxBytes, metricValue(m, 'canrelay_bridge_console_history_bytes') ?? Infinity);
  }
  const m = (await getJson(`${b.base}/metrics`, { Authorization: `Bearer ${b.admin.token}` })).text;
  assert.ok(maxBytes <= 1 << 20, `history bytes ${maxBytes} within 1 MiB`);
  assert.ok((metricValue(m, 'canrelay_bridge_console_history_evicted_segments_total') ?? 0) > 0, 'the budget was reached');

  const late = await viewer(b, 'dongles/m0/console', { 'Last-Event-ID': firstId });
  await late.waitFor((evs) => evs.length >= 1, 5000, 'the reset');
  assert.equal(late.events[0]!.event, 'stream_reset');
  assert.equal(late.events[0]!.json.reason, 'too_old');
  const oldest = Number(late.events[0]!.json.oldest_available);
  assert.ok(oldest > Number(firstId));
  // From the oldest kept id on: every event up to the latest, contiguous.
  const kept = await viewer(b, 'dongles/m0/console', { 'Last-Event-ID': String(oldest - 1) });
  const latest = Number(late.events[0]!.json.latest);
  await kept.waitFor((evs) => evs.length > 0 && Number(evs[evs.length - 1]!.id) >= latest, 5000, 'the kept history');
  assert.equal(kept.ofType('stream_reset').length, 0);
  const ids = kept.events.map((e) => Number(e.id));
  assert.equal(ids[0], oldest);
  for (let i = 1; i < ids.length; i++) assert.equal(ids[i], ids[i - 1]! + 1, 'no gap');
  const nums = frames(kept).map((e) => num(e.json.data_hex));
  for (let i = 1; i < nums.length; i++) assert.equal(nums[i], nums[i - 1]! + 1, 'no frame missing');
});
