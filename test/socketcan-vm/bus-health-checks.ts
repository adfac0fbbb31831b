/**
 * Bus health on real CAN controller drivers, INSIDE the qemu guest (agent-guest.sh): four emulated Kvaser
 * PCIcan boards (SJA1000, kvaser_pci driver) at 500 kbit/s — can0+can1 on one emulated bus, can2+can3 on
 * another — and vcan2 for error frames (vcan takes them from cansend; a controller only makes them).
 *  - load: the agent on can0 while cangen loads can1 at three rates, with can-utils' `canbusload -e`
 *    side by side: the bits canbusload counted equal the exact bits of every frame candump saw, the
 *    agent counted every frame and reported a load in each phase (the two tools' loads are reported in
 *    bus-health.json, not compared: emulated timing is too irregular, see below);
 *  - the kernel's bit timing and controller state reach bus_state and the metrics; a real transition
 *    (interface down: stopped, and back) is published at once;
 *  - each error class injected on vcan2 is decoded in words and counted per class;
 *  - the relay A (can0) → bridge → B (can2) with the driver's one-frame transmit buffer and 10-frame
 *    queue: ENOBUFS retried, every frame on can3 in order, counts exact.
 * Figures go to $SOCKETCAN_VM_RESULTS/bus-health.json.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { frameBits } from '../../core/can/bit-count.js';
import { parseCandumpLine } from '../../core/can/candump.js';
import { startBridgeProcess, type StartedBridge } from '../helpers/bridge-process.js';
import { startAgentProcess, type StartedAgent } from '../helpers/processes.js';
import { getJson, metricValue, SseClient } from '../helpers/sse-client.js';

const children: { stop(): unknown }[] = [];
after(async () => {
  for (const c of children.reverse()) await c.stop();
});
const figures: Record<string, unknown> = {};
after(() => {
  const dir = process.env.SOCKETCAN_VM_RESULTS;
  if (dir) writeFileSync(join(dir, 'bus-health.json'), JSON.stringify(figures, null, 2));
});

/** The test runner prints a file's results only at its end: progress goes to the results share (on the host while the VM runs). */
function progress(msg: string): void {
  const dir = process.env.SOCKETCAN_VM_RESULTS;
  if (dir) appendFileSync(join(dir, 'bus-health-progress.log'), `${new Date().toISOString()} ${msg}\n`);
}

function sh(cmd: string, args: string[]): string {
  progress(`${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/** A long-running tool; `lines()` returns what it printed so far, each with its arrival time. */
function tool(cmd: string, args: string[]): { lines: () => { t: number; text: string }[]; stop: () => Promise<void>; proc: ChildProcess } {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const out: { t: number; text: string }[] = [];
  let part = '';
  proc.stdout!.setEncoding('utf8');
  proc.stdout!.on('data', (c: string) => {
    const all = (part + c).split('\n');
    part = all.pop()!;
    const t = Date.now();
    for (const text of all) if (text.trim()) out.push({ t, text });
  });
  const h = {
    lines: () => out,
    // SIGINT, and SIGKILL if that did not end it within 3 s: a stuck tool must not hang the run.
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
        const kill = setTimeout(() => proc.kill('SIGKILL'), 3000);
        proc.once('exit', () => {
          clearTimeout(kill);
          resolve();
        });
        proc.kill('SIGINT');
      }),
    proc,
  };
  children.push(h);
  return h;
}

async function until(pred: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  progress(`waiting for ${what}`);
  const deadline = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function mean(xs: number[]): number {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN;
}

let bridge: StartedBridge;
let gw: StartedAgent;

test('bus load on a real controller: exact bits equal canbusload -e, every frame counted', { timeout: 240_000 }, async () => {
  progress('test: bus load on a real controller: exact bits equal canbusload -');
  gw = await startAgentProcess(['--can', 'can0,vcan2', '--bus-state-interval', '1'], { id: 'bh-gw' });
  children.push({ stop: () => gw.proc.stop() });
  const c = await SseClient.connect(gw.url);
  const dump = tool('candump', ['-L', 'can0']);
  // canbusload prints one line per second per interface: "can0@500000 <frames> <bits> <payload bits> <n>%".
  // -t: each second's block starts with "canbusload <date> <time> (exact bitstuffing)"; its output
  // reaches us in bursts, so that time (not the arrival) places each line.
  const cbl = tool('stdbuf', ['-oL', 'canbusload', '-t', '-e', 'can0@500000']);
  await new Promise((r) => setTimeout(r, 1500));
  // Three rates (the guest runs under TCG, so cangen's real rate is below 1000/gap), three kinds of content.
  const phases = [
    { name: 'gap 10 ms, id 123, 8 counting bytes', args: ['-g', '10', '-n', '400', '-I', '123', '-L', '8', '-D', 'i'] },
    { name: 'gap 3 ms, random extended ids, lengths and data', args: ['-g', '3', '-n', '1200', '-e'] },
    { name: 'gap 1 ms, id 7E8, 8 zero bytes (most stuff bits)', args: ['-g', '1', '-n', '3000', '-I', '7E8', '-L', '8', '-D', '0000000000000000'] },
  ];
  const spans: { name: string; from: number; to: number }[] = [];
  let sent = 0;
  for (const p of phases) {
    const from = Date.now();
    progress(`phase ${p.name}: candump has ${dump.lines().length}, canbusload printed ${cbl.lines().length} lines`);
    sh('cangen', ['can1', '-p', '1000', ...p.args]);
    spans.push({ name: p.name, from, to: Date.now() });
    sent += Number(p.args[p.args.indexOf('-n') + 1]);
    await new Promise((r) => setTimeout(r, 2500));
  }
  // The emulated controller can overrun at the top rate (a real driver's finding: counted by the kernel
  // as rx_overruns): wait until candump's count stops growing, then compare what both tools received.
  let seen = -1;
  await until(async () => {
    const n = dump.lines().length;
    const stable = n === seen;
    seen = n;
    if (!stable) await new Promise((r) => setTimeout(r, 2500));
    return stable;
  }, 60_000, 'candump to settle');
  // canbusload prints a second's figures only when the next frame arrives after it: markers (id 7FF, no
  // data) 1.2 s apart flush its last real second. They are left out of candump's list and accounted below.
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setTimeout(r, 1200));
    sh('cansend', ['can1', '7FF#']);
  }
  await new Promise((r) => setTimeout(r, 1500));
  await cbl.stop();
  await dump.stop();
  progress(`tools stopped: candump ${dump.lines().length} of ${sent} sent, canbusload ${cbl.lines().length} lines`);
  const isMarker = (text: string): boolean => / can0 7FF#$/.test(text);
  const received = dump.lines().filter((l) => !isMarker(l.text)).length;

  // 1. Exact: every frame's bits (core/can/bit-count.ts) summed = every bit canbusload counted.
  let exactBits = 0;
  for (const l of dump.lines()) {
    if (isMarker(l.text)) continue;
    const r = parseCandumpLine(l.text);
    assert.ok(r.ok, `candump line ${l.text}`);
    exactBits += frameBits(r.frame).nominal;
  }
  let printedAt = 0;
  const rows: { t: number; frames: number; bits: number }[] = [];
  for (const l of cbl.lines()) {
    const time = /^canbusload (\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)/.exec(l.text.trim());
    if (time) printedAt = Date.parse(`${time[1]}T${time[2]}Z`); // the guest runs in UTC
    const m = /can0@500000\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)%/.exec(l.text);
    if (m) rows.push({ t: printedAt, frames: Number(m[1]), bits: Number(m[2]) });
  }
  const cblFrames = rows.reduce((s, r) => s + r.frames, 0);
  const cblBits = rows.reduce((s, r) => s + r.bits, 0);
  // canbusload printed every real frame and 0-3 of the markers (which it counts in the second they arrive).
  const markers = cblFrames - received;
  assert.ok(markers >= 0 && markers <= 3, `canbusload counted ${cblFrames} frames, candump ${received} (+3 markers)`);
  assert.ok(received >= sent * 0.9, `candump received ${received} of ${sent} frames`);
  const agentRx = metricValue((await getJson(gw.base + '/metrics')).text, 'canrelay_can_frames_total', { bus: 'can0', direction: 'rx' });
  assert.equal(agentRx, dump.lines().length, 'the agent counted every frame the controller delivered (markers too)');
  const markerBits = frameBits({ bus: 'can0', id: 0x7ff, ext: false, rtr: false, err: false, fd: false, brs: false, esi: false, dlc: 0, data: new Uint8Array(), tsUs: 0, direction: 'rx' }).nominal;
  assert.equal(exactBits + markers * markerBits, cblBits, 'the exact bits of every frame = the bits canbusload -e counted');

  // 2. Per second: the agent's loads (bus_state every second) against canbusload's, per phase, as the mean
  //    over the seconds inside the phase (the two tools' seconds are not aligned, and frames come in
  //    bursts under emulation, so single seconds differ more than the means).
  const states = c.ofType('bus_state').map((e) => e.json).filter((d) => d.bus === 'can0' && typeof d.load === 'number');
  const perPhase = spans.map((s) => {
    // canbusload's time has whole seconds and marks the end of its window.
    const inside = (t: number) => t >= s.from + 2000 && t <= s.to;
    const agent = mean(states.filter((d) => inside(Date.parse(String(d.ts)))).map((d) => d.load as number));
    const reference = mean(rows.filter((r) => inside(r.t)).map((r) => r.bits / 500_000));
    progress(`${s.name}: ${states.filter((d) => inside(Date.parse(String(d.ts)))).length} agent seconds, ${rows.filter((r) => inside(r.t)).length} canbusload lines; agent ts ${states.slice(0, 2).map((d) => d.ts).join(',')}; rows t ${rows.slice(0, 2).map((r) => new Date(r.t).toISOString()).join(',')}; span ${new Date(s.from).toISOString()}-${new Date(s.to).toISOString()}; ${states.length} states`);
    return { phase: s.name, seconds: (s.to - s.from) / 1000, agent_load: agent, canbusload_load: reference };
  });
  const last = states.at(-1)?.counters as Record<string, number> | undefined;
  figures.load = { sent, received, rx_overruns: last?.rx_overruns, rx_dropped: last?.rx_dropped, exact_bits: exactBits, canbusload_bits: cblBits, phases: perPhase };
  console.log(JSON.stringify(figures.load, null, 1));
  progress(JSON.stringify(figures.load));
  // The agent's loads against canbusload's, over the whole loaded stretch and per phase: REPORTED, not
  // asserted. Under TCG on a loaded host the agent's windows are irregular and frames come in bursts;
  // the whole-run means were 7 % apart in one run and 36 % in another (agent lower), so no bound here
  // would be honest. What is asserted: the exact bits (the agent's own counter) = canbusload's, and the
  // agent counted every frame; the load arithmetic is unit-tested (test/unit/agent/bus-health-units.test.ts).
  const whole = (t: number) => t >= spans[0]!.from + 2000 && t <= spans.at(-1)!.to;
  const agentAll = mean(states.filter((d) => whole(Date.parse(String(d.ts)))).map((d) => d.load as number));
  const cblAll = mean(rows.filter((r) => whole(r.t)).map((r) => r.bits / 500_000));
  figures.load_whole_run = { agent_load: agentAll, canbusload_load: cblAll };
  progress(JSON.stringify(figures.load_whole_run));
  for (const p of perPhase) {
    assert.ok(Number.isFinite(p.agent_load) && p.agent_load > 0 && Number.isFinite(p.canbusload_load), `the agent reported a load during ${p.phase}`);
    // Reported only (see above). The exact proof is the bit equality, with the agent's own bit counter;
    // the load arithmetic is unit-tested (test/unit/agent/bus-health-units.test.ts).
  }
  c.close();
});

test("the kernel's bit timing and controller state reach bus_state and the metrics; a real transition at once", { timeout: 120_000 }, async () => {
  progress("test: the kernel's bit timing and controller state reach bus_state");
  const c = await SseClient.connect(gw.url);
  await c.waitFor((ev) => ev.some((e) => e.event === 'bus_state' && e.json.bus === 'can0'), 10_000, 'bus_state can0');
  const s = c.ofType('bus_state').map((e) => e.json).find((d) => d.bus === 'can0')!;
  assert.deepEqual(
    { link: s.link, state: s.state, tec: s.tec, rec: s.rec, bitrate: s.bitrate, src: s.bitrate_source, sp: s.sample_point, restart: s.restart_ms },
    { link: 'up', state: 'error-active', tec: 0, rec: 0, bitrate: 500000, src: 'kernel', sp: 0.875, restart: 100 },
  );
  assert.equal(typeof (s.counters as Record<string, number>).bus_errors, 'number');
  const m = (await getJson(gw.base + '/metrics')).text;
  assert.equal(metricValue(m, 'canrelay_bus_state', { bus: 'can0', state: 'error-active' }), 1);
  assert.equal(metricValue(m, 'canrelay_bus_state', { bus: 'can0', state: 'bus-off' }), 0);
  assert.equal(metricValue(m, 'canrelay_bus_bitrate_bps', { bus: 'can0' }), 500000);
  assert.equal(metricValue(m, 'canrelay_bus_error_counter', { bus: 'can0', direction: 'tx' }), 0);
  assert.equal(metricValue(m, 'canrelay_bus_error_counter', { bus: 'can0', direction: 'rx' }), 0);
  assert.equal(metricValue(m, 'canrelay_bus_bitrate_bps', { bus: 'vcan2' }), undefined, 'vcan: no bitrate without --bitrate');
  const n = c.ofType('bus_state').length;
  sh('ip', ['link', 'set', 'can0', 'down']);
  await c.waitFor((ev) => ev.slice(n).some((e) => e.event === 'bus_state' && e.json.bus === 'can0' && e.json.state === 'stopped'), 10_000, 'stopped');
  sh('ip', ['link', 'set', 'can0', 'up']);
  await c.waitFor((ev) => ev.slice(n).some((e) => e.event === 'bus_state' && e.json.bus === 'can0' && e.json.state === 'error-active' && e.json.link === 'up'), 10_000, 'error-active again');
  c.close();
});

test('error frames injected on vcan2 with cansend: every class in words and counted per class', { timeout: 120_000 }, async () => {
  progress('test: error frames injected on vcan2 with cansend: every class in ');
  const c = await SseClient.connect(gw.url);
  const cases: [string, string, RegExp][] = [
    ['20000001#', 'tx_timeout', /^transmit timeout$/],
    ['20000002#0C', 'lost_arbitration', /^lost arbitration at bit 12$/],
    ['20000004#0030', 'controller', /^controller: RX errors reached error-passive, TX errors reached error-passive$/],
    ['20000008#0000040A', 'protocol', /^protocol violation: bit stuffing error in the data field$/],
    ['20000010#0000000070', 'transceiver', /^transceiver: CAN-L shorted to ground$/],
    ['20000020#', 'no_ack', /^no ACK on transmission/],
    ['20000040#', 'bus_off', /^bus-off$/],
    ['20000080#', 'bus_error', /^bus error$/],
    ['20000100#', 'restarted', /^controller restarted$/],
  ];
  for (const [frame] of cases) sh('cansend', ['vcan2', frame]);
  await c.waitFor((ev) => ev.filter((e) => e.event === 'can_frame' && e.json.bus === 'vcan2').length >= cases.length, 20_000, 'the error frames');
  const frames = c.ofType('can_frame').map((e) => e.json).filter((f) => f.bus === 'vcan2');
  cases.forEach(([sent, cls, words], i) => {
    const f = frames[i]!;
    assert.equal(f.is_error, true, sent);
    assert.deepEqual(f.error_classes, [cls], sent);
    assert.match(String(f.error_text), words, sent);
  });
  await until(async () => metricValue((await getJson(gw.base + '/metrics')).text, 'canrelay_bus_errors_total', { bus: 'vcan2', class: 'restarted' }) === 1, 10_000, 'counted');
  const m = (await getJson(gw.base + '/metrics')).text;
  for (const [, cls] of cases) assert.equal(metricValue(m, 'canrelay_bus_errors_total', { bus: 'vcan2', class: cls }), 1, cls);
  c.close();
});

test('relay onto a real controller (one-frame transmit buffer, txqueuelen 10): ENOBUFS retried, every frame, in order', { timeout: 420_000 }, async () => {
  progress('test: relay onto a real controller (one-frame transmit buffer, txq');
  await gw?.proc.stop();
  // Emulation is slow (an agent takes a minute to start, a relayed frame seconds): the age limits on
  // the bridge and at B (--relay-max-age-ms) are raised so this checks completeness, not the clock.
  bridge = await startBridgeProcess(['--backlog-max-age-ms', '120000']);
  children.push({ stop: () => bridge.proc.stop() });
  const tokenA = await bridge.admin.register('bh-a');
  const tokenB = await bridge.admin.register('bh-b');
  await bridge.admin.group('bh', 'bh-a', 'bh-b', { can0: 'can2' });
  const a = await startAgentProcess(['--can', 'can0', '--bridge', bridge.base, '--token', tokenA, '--relay-max-age-ms', '120000'], { id: 'bh-a' });
  const b = await startAgentProcess(['--can', 'can2', '--bridge', bridge.base, '--token', tokenB, '--tx-retry-ms', '10000', '--relay-max-age-ms', '120000'], { id: 'bh-b' });
  children.push({ stop: () => a.proc.stop() }, { stop: () => b.proc.stop() });
  await a.proc.waitForLog((l) => l.msg === 'uplink connected', 60_000);
  await b.proc.waitForLog((l) => l.msg === 'uplink connected', 60_000);
  const onB = tool('candump', ['-L', 'can3']);
  const onA = tool('candump', ['-L', 'can0']);
  await new Promise((r) => setTimeout(r, 500));
  const N = Number(process.env.KVASER_RELAY_FRAMES ?? 2000);
  sh('cangen', ['can1', '-g', '0', '-p', '1000', '-n', String(N), '-I', '2A0', '-L', '8', '-D', 'i']);
  // What A's controller delivered (an overrun in the emulated controller is the kernel's, counted there)
  // must reach can3 complete and in the same order.
  try {
    await until(async () => {
      const rx = metricValue((await getJson(a.base + '/metrics')).text, 'canrelay_can_frames_total', { bus: 'can0', direction: 'rx' }) ?? 0;
      return rx >= N * 0.9 && onB.lines().length >= rx && onA.lines().length >= rx;
    }, 180_000, 'every frame A received on can3');
  } catch (err) {
    // Say where the frames stopped: each hop's counters.
    for (const [name, base] of [['A', a.base], ['bridge', bridge.base], ['B', b.base]] as const) {
      const m = (await getJson(base + '/metrics')).text;
      progress(`${name}: ${m.split('\n').filter((l) => /frames_total|uplink\{|relayed|dropped|rejected/.test(l) && !l.startsWith('#')).join(' | ')}`);
    }
    progress(`B warnings: ${b.proc.logs.filter((l) => l.level >= 40).map((l) => l.msg).slice(0, 5).join(' | ')}`);
    progress(`can0 saw ${onA.lines().length}, can3 saw ${onB.lines().length}`);
    throw err;
  }
  await new Promise((r) => setTimeout(r, 1000));
  await onA.stop();
  await onB.stop();
  const payload = (bus: string) => (l: { text: string }) => {
    const m = new RegExp(` ${bus} 2A0#([0-9A-F]{16})$`).exec(l.text);
    assert.ok(m, `a generated frame on ${bus}: ${l.text}`);
    return m[1]!;
  };
  const sentOnA = onA.lines().map(payload('can0'));
  const arrived = onB.lines().map(payload('can3'));
  assert.equal(arrived.length, sentOnA.length, 'every frame A received, none twice');
  assert.deepEqual(arrived, sentOnA, 'in the same order');
  const mb = (await getJson(b.base + '/metrics')).text;
  const retries = metricValue(mb, 'canrelay_uplink', { kind: 'tx_retries' }) ?? 0;
  figures.relay = { generated: N, received_by_a: sentOnA.length, arrived_on_can3: arrived.length, tx_retries: retries, tx_dropped_busy: metricValue(mb, 'canrelay_uplink', { kind: 'tx_dropped_busy' }) };
  console.log(JSON.stringify(figures.relay));
  progress(JSON.stringify(figures.relay));
  assert.ok(retries > 0, 'the full transmit queue (ENOBUFS) was met and retried');
  assert.equal(metricValue(mb, 'canrelay_uplink', { kind: 'tx_dropped_busy' }), 0);
  assert.equal(metricValue(mb, 'canrelay_uplink', { kind: 'tx_failed' }), 0);
  assert.equal(metricValue(mb, 'canrelay_uplink', { kind: 'relay_seq_gaps' }), 0);
  assert.equal(metricValue(mb, 'canrelay_can_frames_total', { bus: 'can2', direction: 'tx' }), arrived.length);
  const ma = (await getJson(a.base + '/metrics')).text;
  assert.equal(metricValue(ma, 'canrelay_can_frames_total', { bus: 'can0', direction: 'rx' }), sentOnA.length);
});
