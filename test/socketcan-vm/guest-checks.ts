/**
 * Runs INSIDE the qemu guest (see run.sh and agent-guest.sh), where the kernel has SocketCAN and vcan0
 * (mtu 72, FD) and vcan1 are up. Proves the real agent against the real kernel with real can-utils.
 * One node process runs all checks: a node start costs seconds under emulation.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, test } from 'node:test';
import { startBridgeProcess, type StartedBridge } from '../helpers/bridge-process.js';
import { runCli, startAgentProcess, tempDir, type StartedAgent } from '../helpers/processes.js';
import { RawClient } from '../helpers/socketcand.js';
import { getJson, metricValue, SseClient } from '../helpers/sse-client.js';
import { guestTools } from './guest-tools.js';

const { sh, until } = guestTools('guest', 0);

const children: { stop(): unknown }[] = [];
after(async () => {
  for (const c of children) await c.stop();
});

/** candump -L in the background; `lines()` returns what it has printed so far. */
function candump(iface: string): { lines: () => string[]; stop: () => void; proc: ChildProcess } {
  const proc = spawn('candump', ['-L', iface], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  proc.stdout!.setEncoding('utf8');
  proc.stdout!.on('data', (c: string) => (out += c));
  const h = { lines: () => out.split('\n').filter(Boolean), stop: () => proc.kill('SIGINT'), proc };
  children.push(h);
  return h;
}

async function framesTotal(a: StartedAgent, bus: string, direction: string): Promise<number> {
  return metricValue((await getJson(a.base + '/metrics')).text, 'canrelay_can_frames_total', { bus, direction }) ?? 0;
}

let bridge: StartedBridge;
let agentA: StartedAgent;

/**
 * The relay test checks completeness and order on a real kernel, not the age rule (test/faults/relay
 * does): under TCG a flat-out cangen burst waits behind backpressure for seconds, so the age limits at
 * A, at the bridge and at B are all raised — with only A's raised, the bridge and B drop the held frames
 * as too old, correctly, and the count check fails.
 */
const RELAXED_BRIDGE_AGE = ['--backlog-max-age-ms', '120000'];
const RELAXED_AGENT_AGE = ['--relay-max-age-ms', '120000'];

test('frames sent with cansend reach the console with the right id, flags, dlc, data and a kernel timestamp', async () => {
  bridge = await startBridgeProcess(RELAXED_BRIDGE_AGE);
  children.push({ stop: () => bridge.proc.stop() });
  const token = await bridge.admin.register('gw-a');
  agentA = await startAgentProcess(['--can', 'vcan0,vcan1', '--bridge', bridge.base, '--token', token], { id: 'gw-a' });
  children.push({ stop: () => agentA.proc.stop() });
  const c = await SseClient.connect(agentA.url);
  const before = Date.now();
  const sent = ['123#DEADBEEF', '1F334455#1122', '321#R', '321#R3', '456##1' + '00112233445566778899AABB', '7FF#', '20000004#0004000000000000'];
  for (const f of sent) sh('cansend', ['vcan0', f]);
  await c.waitFor((ev) => ev.filter((e) => e.event === 'can_frame').length >= sent.length, 20_000, 'the cansend frames');
  const frames = c.ofType('can_frame').map((e) => e.json);
  const byId = (id: string) => frames.filter((f) => f.id === id);
  assert.deepEqual(
    {
      id: byId('0x123')[0]!.id,
      ext: byId('0x123')[0]!.is_extended,
      dlc: byId('0x123')[0]!.dlc,
      data: byId('0x123')[0]!.data_hex,
      bus: byId('0x123')[0]!.bus,
      dir: byId('0x123')[0]!.direction,
    },
    { id: '0x123', ext: false, dlc: 4, data: 'DE AD BE EF', bus: 'vcan0', dir: 'rx' },
  );
  const ext = byId('0x1F334455')[0]!;
  assert.equal(ext.is_extended, true);
  assert.equal(ext.data_hex, '11 22');
  const rtr = byId('0x321');
  assert.deepEqual(
    rtr.map((f) => [f.is_remote, f.dlc, f.data_hex]),
    [
      [true, 0, ''],
      [true, 3, ''],
    ],
  );
  const fd = byId('0x456')[0]!;
  assert.equal(fd.is_fd, true);
  assert.equal(fd.dlc, 12);
  assert.equal(fd.data_hex, '00 11 22 33 44 55 66 77 88 99 AA BB');
  assert.equal(byId('0x7FF')[0]!.dlc, 0);
  const err = byId('0x00000004')[0]!;
  assert.equal(err.is_error, true, 'an error frame (controller problem class)');
  assert.equal(err.data_hex, '00 04 00 00 00 00 00 00');
  for (const f of frames) {
    const t = Date.parse(String(f.ts));
    assert.ok(t >= before - 1000 && t <= Date.now() + 1000, `kernel timestamp near now: ${f.ts}`);
  }
  assert.equal(await framesTotal(agentA, 'vcan0', 'rx'), sent.length, 'canrelay_can_frames_total counts them exactly');
  c.close();
});

test('a send_frame command is transmitted: candump sees the bytes, the console shows it as tx once', async () => {
  const dump = candump('vcan1');
  await new Promise((r) => setTimeout(r, 300));
  const c = await SseClient.connect(agentA.url);
  const r = await bridge.admin.post('/api/v1/dongles/gw-a/commands', { type: 'send_frame', bus: 'vcan1', id: '0x5A5', data_hex: 'CA FE 01' });
  assert.equal(r.status, 202);
  await c.waitFor((ev) => ev.some((e) => e.event === 'command_status' && e.json.status === 'succeeded'), 20_000, 'succeeded');
  await until(() => dump.lines().some((l) => l.includes('vcan1 5A5#CAFE01')), 5000, 'candump sees the frame');
  // A received frame after the send: once the console has it, a read-back of the transmit would be there too.
  sh('cansend', ['vcan1', '2B2#EE']);
  await c.waitFor((ev) => ev.some((e) => e.event === 'can_frame' && e.json.id === '0x2B2'), 20_000, 'the marker frame');
  const tx = c.ofType('can_frame').filter((e) => e.json.id === '0x5A5');
  assert.equal(tx.length, 1, 'shown once');
  assert.equal(tx[0]!.json.direction, 'tx');
  assert.equal(await framesTotal(agentA, 'vcan1', 'tx'), 1);
  assert.equal(await framesTotal(agentA, 'vcan1', 'rx'), 1, 'only the marker: its own transmit is not read back as rx');
  dump.stop();
  c.close();
});

test('ip link down/up: presence events, the agent keeps running and reads again', async () => {
  const c = await SseClient.connect(agentA.url);
  sh('ip', ['link', 'set', 'vcan1', 'down']);
  await c.waitFor((ev) => ev.some((e) => e.event === 'presence' && e.json.bus === 'vcan1' && (e.json.buses as Record<string, string>)?.vcan1 === 'down'), 10_000, 'down presence');
  sh('ip', ['link', 'set', 'vcan1', 'up']);
  await c.waitFor((ev) => ev.some((e) => e.event === 'presence' && e.json.bus === 'vcan1' && (e.json.buses as Record<string, string>)?.vcan1 === 'up'), 10_000, 'up presence');
  sh('cansend', ['vcan1', '111#01']);
  await c.waitFor((ev) => ev.some((e) => e.event === 'can_frame' && e.json.id === '0x111' && e.json.bus === 'vcan1'), 10_000, 'reading again');
  assert.equal(agentA.proc.exitCode, null);
  c.close();
});

test('socketcand on a real kernel: cansend frames reach a raw-mode client in order; its send is on the wire and shown as tx, not read back', async () => {
  const a = await startAgentProcess(['--can', 'vcan0', '--socketcand-listen', '127.0.0.1:0', '--socketcand-allow-send'], { id: 'sc-vm' });
  children.push({ stop: () => a.proc.stop() });
  const port = Number(
    String((await a.proc.waitForLog((l) => l.msg === 'socketcand listening', 60_000)).listen)
      .split(':')
      .pop(),
  );
  const c = await RawClient.connect(port);
  await until(() => c.messages.length > 0, 20_000, '< hi >');
  assert.equal(await c.request('< open vcan0 >', 20_000), '< ok >');
  assert.equal(await c.request('< rawmode >', 20_000), '< ok >');
  const dump = candump('vcan0');
  await new Promise((r) => setTimeout(r, 300));
  const sent = Array.from({ length: 20 }, (_, i) => i.toString(16).toUpperCase().padStart(2, '0'));
  for (const d of sent) sh('cansend', ['vcan0', `2B0#${d}`]);
  const on2B0 = (): string[] => c.frames().filter((f) => f.startsWith('< frame 2B0 '));
  await until(() => on2B0().length >= sent.length, 30_000, 'the cansend frames on the socketcand client');
  assert.deepEqual(
    on2B0().map((f) => f.split(' ')[4]),
    sent,
    'every frame, in order, its data',
  );
  c.send('< send 5B5 3 CA FE 01 >');
  await until(() => dump.lines().some((l) => l.includes('vcan0 5B5#CAFE01')), 20_000, 'candump to see the socketcand send');
  sh('cansend', ['vcan0', '2B1#FF']); // a received frame after the send: the client has everything before it
  await until(() => c.frames().some((f) => f.startsWith('< frame 2B1 ')), 20_000, 'the marker frame');
  assert.ok(!c.frames().some((f) => f.startsWith('< frame 5B5 ')), 'its own transmit is not sent back as received');
  assert.equal(await framesTotal(a, 'vcan0', 'tx'), 1);
  assert.equal(await framesTotal(a, 'vcan0', 'rx'), sent.length + 1, 'the transmit is not read back as rx');
  dump.stop();
  c.close();
  await a.proc.stop();
});

test('a missing interface: a clear error naming it', async () => {
  const p = runCli(['agent', '--can', 'nosuch0', '--listen', '127.0.0.1:0', '--state-dir', tempDir('canrelay-')]);
  assert.equal(await p.wait(), 1);
  assert.match(p.stderr, /nosuch0/);
  assert.match(p.stderr, /does not exist/);
});

test('group relay on a real kernel: cangen on vcan0 → agent A → bridge → agent B → vcan1, every frame in order, no loop', async () => {
  // Standalone (runs alone with --test-name-pattern=relay): its own dongles, the first agent stopped.
  await agentA?.proc.stop();
  if (!bridge) {
    bridge = await startBridgeProcess(RELAXED_BRIDGE_AGE);
    children.push({ stop: () => bridge.proc.stop() });
  }
  const tokenA = await bridge.admin.register('relay-a');
  const tokenB = await bridge.admin.register('relay-b');
  await bridge.admin.group('g1', 'relay-a', 'relay-b', { vcan0: 'vcan1' });
  const a = await startAgentProcess(['--can', 'vcan0', '--bridge', bridge.base, '--token', tokenA, ...RELAXED_AGENT_AGE], { id: 'relay-a' });
  const b = await startAgentProcess(['--can', 'vcan1', '--bridge', bridge.base, '--token', tokenB, ...RELAXED_AGENT_AGE], { id: 'relay-b' });
  children.push({ stop: () => a.proc.stop() }, { stop: () => b.proc.stop() });
  await a.proc.waitForLog((l) => l.msg === 'uplink connected', 60_000);
  await b.proc.waitForLog((l) => l.msg === 'uplink connected', 60_000);
  const onB = candump('vcan1');
  const onA = candump('vcan0');
  await new Promise((r) => setTimeout(r, 500));
  const N = Number(process.env.RELAY_FRAMES ?? 20_000);
  // -g 0: as fast as the guest can; -I/-L fixed, -D i: an incrementing payload to check order.
  sh('cangen', ['vcan0', '-g', '0', '-n', String(N), '-I', '2A0', '-L', '8', '-D', 'i']);
  try {
    await until(() => onB.lines().length >= N, 180_000, `${N} frames on vcan1`);
  } catch (err) {
    // Say where the frames stopped: each hop's counters, and what the agents complained about.
    for (const [name, base] of [
      ['A', a.base],
      ['bridge', bridge.base],
      ['B', b.base],
    ] as const) {
      const m = (await getJson(base + '/metrics')).text;
      console.log(
        name,
        m
          .split('\n')
          .filter((l) => /frames_total|uplink\{|relayed|dropped|received_total|rejected/.test(l) && !l.startsWith('#'))
          .join('\n'),
      );
    }
    console.log(
      'A warnings',
      a.proc.logs.filter((l) => l.level >= 40).map((l) => l.msg),
    );
    console.log(
      'B warnings',
      b.proc.logs.filter((l) => l.level >= 40).map((l) => l.msg),
    );
    console.log(`vcan1 saw ${onB.lines().length}, vcan0 saw ${onA.lines().length}`);
    throw err;
  }
  await new Promise((r) => setTimeout(r, 1000));
  const lines = onB.lines();
  assert.equal(lines.length, N, 'every frame, none twice');
  const mb0 = (await getJson(b.base + '/metrics')).text;
  const ma0 = (await getJson(a.base + '/metrics')).text;
  const seqCounts = [
    ...['relay_seq_gaps', 'relay_seq_duplicates', 'relay_seq_reordered', 'connects', 'tx_retries'].map((k) => `${k} ${metricValue(mb0, 'canrelay_uplink', { kind: k })}`),
    ...['connects', 'batches_resent'].map((k) => `A ${k} ${metricValue(ma0, 'canrelay_uplink', { kind: k })}`),
  ];
  let prev = -1;
  lines.forEach((l, i) => {
    const m = / vcan1 2A0#([0-9A-F]{16})/.exec(l);
    assert.ok(m, `a relayed frame: ${l}`);
    const counter = parseInt(m[1]!.slice(0, 2), 16);
    // Out of order: say where, what came around it, and what B's sequence checks counted (for the next reader).
    if (counter !== ((prev + 1) & 0xff)) {
      const around = lines.slice(Math.max(0, i - 3), i + 4).map((x) => / 2A0#(\w{2})/.exec(x)?.[1]);
      assert.fail(`in order: frame ${i} of ${N} has counter ${counter}, after ${prev}; around it: ${around.join(' ')}; at B: ${seqCounts.join(', ')}`);
    }
    prev = counter;
  });
  assert.equal(onA.lines().length, N, 'nothing loops back onto vcan0');
  const mb = (await getJson(b.base + '/metrics')).text;
  // The same in counts, which wait for nothing: B sent nothing up, the bridge relayed nothing back to A.
  assert.equal(metricValue(mb, 'canrelay_uplink', { kind: 'frames_sent' }), 0, 'B sent no frame up (its transmits are not read back)');
  const mbr = (await getJson(bridge.base + '/metrics')).text;
  assert.equal(metricValue(mbr, 'canrelay_bridge_frames_relayed_total', { group: 'g1', direction: 'b_to_a' }), 0, 'nothing relayed from B to A');
  assert.ok((metricValue(mbr, 'canrelay_bridge_frames_relayed_total', { group: 'g1', direction: 'a_to_b' }) ?? NaN) >= N, 'the relay A → B was counted');
  assert.equal(metricValue(mb, 'canrelay_uplink', { kind: 'relay_seq_gaps' }), 0);
  assert.equal(metricValue(mb, 'canrelay_can_frames_total', { bus: 'vcan1', direction: 'tx' }), N);
});
