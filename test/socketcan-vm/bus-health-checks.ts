/**
 * Bus health on real CAN controller drivers, INSIDE the qemu guest (agent-guest.sh): four emulated Kvaser
 * PCIcan boards (SJA1000, kvaser_pci driver) at 500 kbit/s — can0+can1 on one emulated bus, can2+can3 on
 * another — and vcan2 for error frames (vcan takes them from cansend; a controller only makes them).
 *  - load: the agent on can0 while cangen loads can1 at four rates (two steady, two bursty), with can-utils'
 *    `canbusload -e` and `candump -L` side by side: the exact bits of every frame = the bits canbusload
 *    counted; the agent's load of every second = the exact load of the frames the kernel stamped in that
 *    second, and its peak over the last minute the highest of those; on the steady loads the agent agrees
 *    with canbusload per window within 5 % (its windows found from the frames it counted), and so does the
 *    peak over the minute of the first steady load;
 *  - the kernel's bit timing and controller state reach bus_state and the metrics; a real transition
 *    (interface down: stopped, and back) is published at once;
 *  - each error class injected on vcan2 is decoded in words and counted per class;
 *  - the console page on the host (guest-run.test.ts drives Chromium through qemu's port forward, and
 *    acts on the buses through page-link.ts's control server): this file's agent, on the real driver;
 *  - the relay A (can0) → bridge → B (can2) with the driver's one-frame transmit buffer and a 4-frame
 *    queue paced like a real bus: ENOBUFS met on every run, each retried and counted exactly (= the
 *    kernel's count of refused frames), every frame on can3 in order.
 * Figures go to $SOCKETCAN_VM_RESULTS/bus-health.json.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { frameBits } from '../../core/can/bit-count.js';
import { parseCandumpLine } from '../../core/can/candump.js';
import { pace, qdiscCounts, unpace } from './paced-queue.js';
import { startBridgeProcess, type StartedBridge } from '../helpers/bridge-process.js';
import { startAgentProcess, type StartedAgent } from '../helpers/processes.js';
import { skipOrFail } from '../helpers/skips.js';
import { getJson, metricValue, SseClient } from '../helpers/sse-client.js';
import { GUEST_AGENT_PORT, PAGE_HOST_ENV, serveHostPageChecks } from './page-link.js';
import { guestTools } from './guest-tools.js';

const { progress, sh, until } = guestTools('bus-health', 120_000);

const children: { stop(): unknown }[] = [];
after(async () => {
  for (const c of children.reverse()) await c.stop();
});
const figures: Record<string, unknown> = {};
after(() => {
  const dir = process.env.SOCKETCAN_VM_RESULTS;
  if (dir) writeFileSync(join(dir, 'bus-health.json'), JSON.stringify(figures, null, 2));
});

/** Runs a command to its end without blocking the event loop. */
function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    const kill = setTimeout(() => p.kill('SIGKILL'), 120_000);
    p.on('exit', (code) => {
      clearTimeout(kill);
      if (code === 0) resolve();
      else reject(new Error(`${cmd} ${args.join(' ')} failed (${code}): ${err}`));
    });
  });
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

let bridge: StartedBridge;
let gw: StartedAgent | undefined;

/**
 * The agent on can0 (real driver) and vcan2, started by the first test that needs it (so a single test
 * runs alone with --test-name-pattern). It listens on 0.0.0.0: the host's page checks reach it through
 * qemu's forward (page-link.ts); inside the guest it is reached over loopback as before.
 */
async function gateway(): Promise<StartedAgent> {
  if (!gw) {
    // --bitrate for both: vcan has no bit timing, so vcan2's is the flag's; can0's kernel bitrate wins over it.
    const a = await startAgentProcess(['--can', 'can0,vcan2', '--bitrate', 'can0=250000,vcan2=125000', '--bus-state-interval', '1', '--listen', `0.0.0.0:${GUEST_AGENT_PORT}`], {
      id: 'bh-gw',
    });
    children.push({ stop: () => a.proc.stop() });
    gw = a;
  }
  return gw;
}

/** canbusload's rows: "can0@500000 <frames> <bits> <payload bits> <n>%", after a "canbusload <date> <time>" header (-t). */
function canbusloadRows(lines: { text: string }[]): { printed: string; frames: number; bits: number }[] {
  let printed = '';
  const rows: { printed: string; frames: number; bits: number }[] = [];
  for (const l of lines) {
    const time = /^canbusload (\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)/.exec(l.text.trim());
    if (time) printed = `${time[1]}T${time[2]}Z`; // the guest runs in UTC
    const m = /can0@500000\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)%/.exec(l.text);
    if (m) rows.push({ printed, frames: Number(m[1]), bits: Number(m[2]) });
  }
  return rows;
}

/** The agent's rounding of a load (bus-health-monitor.ts). */
const round4 = (x: number): number => Math.round(x * 10000) / 10000;
const pct = (x: number): string => `${(x * 100).toFixed(2)} %`;

test('bus load on a real controller: every second exact, agrees with canbusload -e per second on a steady load, peak over a minute', { timeout: 300_000 }, async () => {
  progress('test: bus load on a real controller');
  const gw = await gateway();
  const c = await SseClient.connect(gw.url);
  // candump -L prints each frame's kernel receive time: the same skb timestamp the agent's socket gets.
  const dump = tool('candump', ['-L', 'can0']);
  const cbl = tool('stdbuf', ['-oL', 'canbusload', '-t', '-e', 'can0@500000']);
  // canbusload's windows run from its start, re-armed with alarm(1) after each print (drifting some ms per
  // second); the agent's are whole seconds. canbusload prints from its SIGALRM handler: signalling it at
  // every whole second puts its windows on the same seconds (its own alarm, 1 s after a print, comes after
  // the next signal), so both tools measure the same seconds and can be compared second by second.
  // Only once canbusload has its handler installed: SIGALRM's default action would end it.
  const catchesAlarm = (): boolean => {
    const m = /^SigCgt:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/${cbl.proc.pid}/status`, 'utf8'));
    return m !== null && (BigInt('0x' + m[1]) & (1n << 13n)) !== 0n; // SIGALRM = 14
  };
  await until(catchesAlarm, 60_000, 'canbusload to catch SIGALRM');
  let aligning = true;
  const align = (): void => {
    if (!aligning) return;
    setTimeout(
      () => {
        if (aligning && cbl.proc.exitCode === null) cbl.proc.kill('SIGALRM');
        align();
      },
      1000 - (Date.now() % 1000),
    );
  };
  align();
  await new Promise((r) => setTimeout(r, 1500));
  // Steady loads first: the same frames every second (cangen, 20 frames 1 ms apart, started 0.25 s past
  // each whole second, so each second's frames lie inside it and canbusload's signal falls in the quiet
  // gap around the whole second: both tools measure the same frames in a second, unless the emulation
  // stretched a burst over the whole second). Then two
  // continuous loads at a fixed gap (under qemu's TCG the real rate is below 1000/gap and uneven): the
  // exact checks hold for them too; canbusload's figures are only reported.
  const BURST = 20;
  const burst = ['-g', '1', '-n', String(BURST)];
  const phases = [
    { name: 'steady, 20 frames each second, id 123, 8 counting bytes', steady: true, args: [...burst, '-I', '123', '-L', '8', '-D', 'i'] },
    { name: 'steady, 20 frames each second, id 7E8, 8 zero bytes (most stuff bits)', steady: true, args: [...burst, '-I', '7E8', '-L', '8', '-D', '0000000000000000'] },
    { name: 'continuous, gap 3 ms, random extended ids, lengths and data', steady: false, args: ['-g', '3', '-n', '1200', '-e'] },
    { name: 'continuous, gap 1 ms, id 7E8, 8 zero bytes', steady: false, args: ['-g', '1', '-n', '2000', '-I', '7E8', '-L', '8', '-D', '0000000000000000'] },
  ];
  const STEADY_SECONDS = 20;
  const spans: { name: string; steady: boolean; from: number; to: number }[] = [];
  let sent = 0;
  for (const p of phases) {
    const from = Date.now();
    progress(`phase ${p.name}: candump has ${dump.lines().length}, canbusload printed ${cbl.lines().length} lines`);
    // Not spawnSync: the test's event loop must stay free to signal canbusload on time.
    if (p.steady) {
      for (let i = 0; i < STEADY_SECONDS; i++) {
        await new Promise((r) => setTimeout(r, 1000 - ((Date.now() - 250) % 1000)));
        await run('cangen', ['can1', '-p', '1000', ...p.args]);
        sent += BURST;
      }
    } else {
      await run('cangen', ['can1', '-p', '1000', ...p.args]);
      sent += Number(p.args[p.args.indexOf('-n') + 1]);
    }
    spans.push({ name: p.name, steady: p.steady, from, to: Date.now() });
    await new Promise((r) => setTimeout(r, 2500));
  }
  // The emulated controller can overrun at the top rate (counted by the kernel as rx_overruns): wait
  // until candump's count stops growing, then compare what both tools received.
  let seen = -1;
  await until(
    async () => {
      const n = dump.lines().length;
      const stable = n === seen;
      seen = n;
      if (!stable) await new Promise((r) => setTimeout(r, 2500));
      return stable;
    },
    60_000,
    'candump to settle',
  );
  // canbusload (can-utils 2020.11) prints a window only when a frame arrives after its 1 s alarm (SIGALRM
  // is blocked while it waits in pselect): markers (id 7FF, no data) 1.2 s apart flush its last window.
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setTimeout(r, 1200));
    sh('cansend', ['can1', '7FF#']);
  }
  // The agent's bus_state for the markers' seconds (closed half a second after each second ends).
  const lastMarkerMs = Date.now();
  await c.waitFor(
    (ev) => ev.some((e) => e.event === 'bus_state' && e.json.bus === 'can0' && Date.parse(String(e.json.ts)) > lastMarkerMs + 1000),
    30_000,
    'bus_state after the markers',
  );
  aligning = false;
  await cbl.stop();
  await dump.stop();
  progress(`tools stopped: candump ${dump.lines().length} of ${sent} sent, canbusload ${cbl.lines().length} lines`);
  const isMarker = (text: string): boolean => / can0 7FF#$/.test(text);
  const frames = dump.lines().map((l) => {
    const r = parseCandumpLine(l.text);
    assert.ok(r.ok, `candump line ${l.text}`);
    return { tsUs: r.frame.tsUs, bits: frameBits(r.frame).nominal, marker: isMarker(l.text) };
  });
  const received = frames.filter((f) => !f.marker).length;

  // 1. Exact bits: every frame's bits (core/can/bit-count.ts) summed = every bit canbusload -e counted.
  const rows = canbusloadRows(cbl.lines());
  const cblFrames = rows.reduce((s, r) => s + r.frames, 0);
  const cblBits = rows.reduce((s, r) => s + r.bits, 0);
  const exactBits = frames.filter((f) => !f.marker).reduce((s, f) => s + f.bits, 0);
  // canbusload printed every real frame and 0-3 of the markers (the last may still be in an unprinted window).
  const markers = cblFrames - received;
  assert.ok(markers >= 0 && markers <= 3, `canbusload counted ${cblFrames} frames, candump ${received} (+3 markers)`);
  assert.ok(received >= sent * 0.9, `candump received ${received} of ${sent} frames`);
  const agentRx = metricValue((await getJson(gw.base + '/metrics')).text, 'canrelay_can_frames_total', { bus: 'can0', direction: 'rx' });
  assert.equal(agentRx, frames.length, 'the agent counted every frame the controller delivered (markers too)');
  const markerBits = frames.find((f) => f.marker)!.bits;
  assert.equal(exactBits + markers * markerBits, cblBits, 'the exact bits of every frame = the bits canbusload -e counted');

  // The agent's load per second: each bus_state's `load` is the second [ts - 1 s, ts); its load_history
  // fills seconds that closed together (a stalled event loop) or were not published.
  const states = c
    .ofType('bus_state')
    .map((e) => e.json)
    .filter((d) => d.bus === 'can0' && typeof d.load === 'number');
  const dir = process.env.SOCKETCAN_VM_RESULTS;
  // The raw material, for a look after a failure: every frame's kernel time and bits, canbusload's lines, the agent's bus_states.
  if (dir)
    writeFileSync(
      join(dir, 'bus-load-raw.json'),
      JSON.stringify({ spans, frames: frames.map((f) => [f.tsUs, f.bits]), canbusload: cbl.lines(), agent: states.map((d) => [d.ts, d.load, d.frame_rate, d.load_peak_1m]) }),
    );
  const agentSecond = new Map<number, number>(); // second's end (Unix ms) → load
  for (const d of states) {
    const end = Date.parse(String(d.ts));
    const hist = d.load_history as number[];
    hist.forEach((x, i) => agentSecond.set(end - (hist.length - 1 - i) * 1000, x));
  }

  // 2. Every second exact: the agent's load of each second = the bits of the frames the kernel stamped in
  //    that second / 500 kbit/s (the frames' own timestamps, not when the agent got to them).
  const exactSecond = new Map<number, number>();
  for (const f of frames) {
    const end = (Math.floor(f.tsUs / 1e6) + 1) * 1000;
    exactSecond.set(end, (exactSecond.get(end) ?? 0) + f.bits / 500_000);
  }
  const loaded = [...exactSecond.keys()].sort((a, b) => a - b);
  // Every second from the first loaded one to the last, quiet ones (exact 0) included.
  const allSeconds: number[] = [];
  for (let e = loaded[0]!; e <= loaded.at(-1)!; e += 1000) allSeconds.push(e);
  const missing = allSeconds.filter((e) => !agentSecond.has(e));
  assert.deepEqual(
    missing.map((e) => new Date(e).toISOString()),
    [],
    'the agent reported every second',
  );
  const mismatches = allSeconds.filter((e) => agentSecond.get(e) !== round4(exactSecond.get(e) ?? 0));
  progress(
    `per-second exact: ${allSeconds.length} seconds (${loaded.length} loaded), mismatches ${mismatches.map((e) => `${new Date(e).toISOString()} agent ${agentSecond.get(e)} exact ${exactSecond.get(e) ?? 0}`).join('; ')}`,
  );
  // The one exception the agent allows by design (bus-load.ts): a frame that reaches it after its second
  // was closed on a quiet bus (seen once, for the very first frames of a run under emulation, over 1.5 s
  // late) counts in the next open second. Then its bits move to a later second, never to an earlier one,
  // and none are lost: the running sum of (agent - exact) never goes above 0 and ends at 0 (each within
  // the 4-decimal rounding of the seconds involved), and what moved stays small.
  let running = 0;
  let moved = 0;
  for (const e of allSeconds) {
    running += agentSecond.get(e)! - round4(exactSecond.get(e) ?? 0);
    assert.ok(
      running <= 0.0001 * (mismatches.length + 1),
      `second ${new Date(e).toISOString()}: the agent counted bits before the kernel stamped them (running difference ${running})`,
    );
    moved = Math.max(moved, -running);
  }
  const totalLoad = allSeconds.reduce((n, e) => n + (exactSecond.get(e) ?? 0), 0);
  assert.ok(Math.abs(running) <= 0.0001 * (mismatches.length + 1), `bits lost or gained over the run: ${running}`);
  assert.ok(mismatches.length <= 4 && moved <= 0.01 * totalLoad, `${mismatches.length} seconds differ from the exact load, ${moved} moved: more than late first frames`);
  figures.late_frames = { seconds_differing: mismatches.length, load_moved_to_a_later_second: round4(moved), seconds: allSeconds.length };

  // 3. Per second against canbusload -e. canbusload's window i holds exactly the frames it counted after
  //    those of the windows before (it and candump see the same frames in the same order): their kernel
  //    timestamps give its start and end, and its bits must be exactly theirs. Each window (aligned to a
  //    whole second, see above) is compared with the agent's load of the second that holds most of its frames:
  //    a) exactly: the agent's bits = canbusload's, minus the frames in the window but not in that second,
  //       plus the frames in the second but not in the window (the signal reaches canbusload a few ms
  //       after the whole second, with the next frame);
  //    b) within 5 % on the steady loads (reported on the bursty ones).
  const windows: { printed: string; start: number; end: number; cbl: number; agent: number; second: number; edgeFrames: number; displaced: boolean }[] = [];
  let k = 0;
  const exactMismatch: string[] = [];
  let displacedWindows = 0;
  for (const r of rows) {
    if (r.frames > 0 && k + r.frames < frames.length) {
      const start = frames[k]!.tsUs / 1000;
      const end = frames[k + r.frames]!.tsUs / 1000;
      const inWindow = frames.slice(k, k + r.frames);
      const bitsInWindow = inWindow.reduce((n, f) => n + f.bits, 0);
      // When the signal lands between canbusload's read() of a frame and its adding it up, that frame
      // counts in the next window: then a window is off by exactly one frame at its start or end.
      const boundary = [frames[k - 1], frames[k], frames[k + r.frames - 1], frames[k + r.frames]].filter((f) => f !== undefined).map((f) => f.bits);
      const off = r.bits - bitsInWindow;
      const displaced = off !== 0;
      if (displaced) displacedWindows++;
      if (displaced && !boundary.includes(Math.abs(off))) exactMismatch.push(`window printed ${r.printed}: canbusload ${r.bits} bits, its frames ${bitsInWindow}`);
      // The second that holds most of the window's frames (the window runs until the next window's first frame).
      const second = Math.floor(inWindow[inWindow.length >> 1]!.tsUs / 1e6) * 1000;
      const inSecond = frames.filter((f) => f.tsUs / 1000 >= second && f.tsUs / 1000 < second + 1000);
      const onlyWindow = inWindow.filter((f) => f.tsUs / 1000 < second || f.tsUs / 1000 >= second + 1000);
      const onlySecond = inSecond.filter((f) => f.tsUs / 1000 < start || f.tsUs / 1000 >= end);
      const agent = agentSecond.get(second + 1000);
      const reconciled = r.bits - off - onlyWindow.reduce((n, f) => n + f.bits, 0) + onlySecond.reduce((n, f) => n + f.bits, 0);
      // The agent's load is rounded to 4 decimals: 25 bits at 500 kbit/s.
      if (agent === undefined || Math.abs(agent * 500_000 - reconciled) > 25) {
        exactMismatch.push(
          `window printed ${r.printed} vs second ${new Date(second + 1000).toISOString()}: agent ${agent === undefined ? 'none' : agent * 500_000} bits, canbusload ${r.bits} ${-off} - ${onlyWindow.length} frames + ${onlySecond.length} frames = ${reconciled}`,
        );
      }
      windows.push({ printed: r.printed, start, end, cbl: r.bits / 500_000, agent: agent ?? NaN, second, edgeFrames: onlyWindow.length + onlySecond.length, displaced });
    }
    k += r.frames;
  }
  /** canbusload's window held exactly the frames of the agent's second. */
  const sameFrames = (w: (typeof windows)[number]): boolean => w.edgeFrames === 0 && !w.displaced;
  progress(`windows: ${windows.length} (${displacedWindows} with one frame across the boundary), exact mismatches: ${exactMismatch.join('; ')}`);
  assert.deepEqual(
    exactMismatch,
    [],
    "every canbusload window: its bits = its frames' bits (± one frame at its boundary), and the agent's second = those bits - the frames only in the window + the frames only in the second",
  );
  // Each phase's windows: the seconds between the phase's first and last frame (not the partial ones at its ends).
  const phaseFrames = spans.map((s, i) => frames.filter((f) => !f.marker && f.tsUs / 1000 >= s.from - 500 && f.tsUs / 1000 < (spans[i + 1]?.from ?? Infinity)));
  const perPhase = spans.map((s, i) => {
    const fs = phaseFrames[i]!;
    const first = fs[0]!.tsUs / 1000;
    const last = fs.at(-1)!.tsUs / 1000;
    const inside = windows.filter((w) => w.second >= first && w.second + 1000 <= last);
    const diffs = inside.map((w) => (w.agent - w.cbl) / w.cbl);
    const perSecond = inside.map((w) => w.agent);
    return {
      phase: s.name,
      steady_load: s.steady,
      frames: fs.length,
      frames_per_s: Math.round((fs.length - 1) / ((last - first) / 1000)),
      load_min: Math.min(...perSecond),
      load_max: Math.max(...perSecond),
      compared_seconds: inside.length,
      worst_difference: diffs.length ? Math.round(diffs.reduce((a, b) => (Math.abs(b) > Math.abs(a) ? b : a)) * 10000) / 10000 : null,
      seconds_same_frames: inside.filter(sameFrames).length,
      seconds_within_5_percent: diffs.filter((d) => Math.abs(d) <= 0.05).length,
      windows: inside.map(
        (w) =>
          `${w.printed} ${((w.end - w.start) / 1000).toFixed(3)} s: canbusload ${pct(w.cbl)}, agent ${pct(w.agent)}${w.edgeFrames ? ` (${w.edgeFrames} edge frames)` : ''}${w.displaced ? ' (one frame across its boundary)' : ''}`,
      ),
      agent_peak_1m: null as number | null,
      canbusload_peak: null as number | null,
      _inside: inside,
    };
  });
  const last = states.at(-1)?.counters as Record<string, number> | undefined;
  figures.load = {
    sent,
    received,
    rx_overruns: last?.rx_overruns,
    rx_dropped: last?.rx_dropped,
    exact_bits: exactBits,
    canbusload_bits: cblBits,
    exact_seconds: loaded.length,
    phases: perPhase.map(({ _inside, ...p }) => p),
  };
  progress(JSON.stringify(figures.load));
  // On the steady loads, per second: where canbusload's window and the agent's second hold the same
  // frames (the signal fell in the quiet gap — most seconds), the two loads agree within 5 %. Which
  // frames a window holds comes from candump, not from either tool's figure, so this fails when the
  // agent counts other bits (stuff bits dropped) or puts frames into other seconds.
  for (const p of perPhase.filter((x) => x.steady_load)) {
    const same = p._inside.filter(sameFrames);
    assert.ok(same.length >= 5, `${p.phase}: ${same.length} seconds where canbusload's window held the same frames as the agent's second (need 5)`);
    for (const w of same) {
      const d = (w.agent - w.cbl) / w.cbl;
      assert.ok(
        Math.abs(d) <= 0.05,
        `${p.phase}, canbusload window printed ${w.printed}: agent ${pct(w.agent)}, canbusload -e ${pct(w.cbl)} (${(d * 100).toFixed(1)} %, bound 5 %)`,
      );
    }
  }

  // 4. Peak over the last minute: every bus_state's load_peak_1m = the highest exact second among the 60
  //    ending at its ts; at the end of each steady phase the agent's peak over the minute agrees with
  //    canbusload's highest window in that minute within the same bound.
  for (const d of states) {
    const end = Date.parse(String(d.ts));
    const minute = [...exactSecond.entries()].filter(([e]) => e > end - 60_000 && e <= end).map(([, x]) => round4(x));
    assert.equal(d.load_peak_1m, Math.max(0, ...minute), `load_peak_1m at ${String(d.ts)}`);
  }
  perPhase.forEach((p, i) => {
    const endMs = phaseFrames[i]!.at(-1)!.tsUs / 1000;
    const atEnd = states.find((d) => Date.parse(String(d.ts)) > endMs);
    if (!atEnd) return;
    const end = Date.parse(String(atEnd.ts));
    p.agent_peak_1m = atEnd.load_peak_1m as number;
    const minute = windows.filter((w) => w.second + 1000 > end - 60_000 && w.second + 1000 <= end);
    // What a user sees: canbusload's highest printed window in that minute (a window after a late signal
    // can hold two bursts, and canbusload still divides by one second) — reported.
    p.canbusload_peak = Math.max(...minute.map((w) => w.cbl));
    // Compared: the highest second among those both tools measured over the same frames.
    const same = minute.filter(sameFrames);
    const agentPeakSame = Math.max(...same.map((w) => w.agent));
    const cblPeakSame = Math.max(...same.map((w) => w.cbl));
    const ph = (figures.load as { phases: Record<string, unknown>[] }).phases[i]!;
    Object.assign(ph, { agent_peak_1m: p.agent_peak_1m, canbusload_peak: p.canbusload_peak, agent_peak_same_frames: agentPeakSame, canbusload_peak_same_frames: cblPeakSame });
    progress(
      `peak over the minute to ${String(atEnd.ts)}: agent ${p.agent_peak_1m}, canbusload ${p.canbusload_peak}; over the ${same.length} seconds with the same frames: agent ${agentPeakSame}, canbusload ${cblPeakSame}`,
    );
    if (p.steady_load) {
      const d = (agentPeakSame - cblPeakSame) / cblPeakSame;
      assert.ok(
        Math.abs(d) <= 0.05,
        `peak over the minute to ${String(atEnd.ts)}, seconds with the same frames: agent ${pct(agentPeakSame)}, canbusload ${pct(cblPeakSame)} (bound 5 %)`,
      );
    }
  });
  console.log(JSON.stringify(figures.load, null, 1));
  c.close();
});

test("the kernel's bit timing and controller state reach bus_state and the metrics; a real transition at once", { timeout: 120_000 }, async () => {
  progress("test: the kernel's bit timing and controller state reach bus_state");
  const gw = await gateway();
  const c = await SseClient.connect(gw.url);
  await c.waitFor((ev) => ['can0', 'vcan2'].every((bus) => ev.some((e) => e.event === 'bus_state' && e.json.bus === bus)), 10_000, 'bus_state of can0 and vcan2');
  const s = c
    .ofType('bus_state')
    .map((e) => e.json)
    .find((d) => d.bus === 'can0')!;
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
  assert.equal(
    metricValue(m, 'canrelay_bus_bitrate_bps', { bus: 'vcan2' }),
    125000,
    "vcan has no bit timing: --bitrate's (can0's kernel 500 kbit/s won over --bitrate can0=250000, above)",
  );
  const v = c
    .ofType('bus_state')
    .map((e) => e.json)
    .find((d) => d.bus === 'vcan2')!;
  assert.deepEqual(
    { state: v.state, tec: v.tec, bitrate: v.bitrate, src: v.bitrate_source, sp: v.sample_point },
    { state: null, tec: null, bitrate: 125000, src: 'flag', sp: null },
  );
  const n = c.ofType('bus_state').length;
  sh('ip', ['link', 'set', 'can0', 'down']);
  await c.waitFor((ev) => ev.slice(n).some((e) => e.event === 'bus_state' && e.json.bus === 'can0' && e.json.state === 'stopped'), 10_000, 'stopped');
  sh('ip', ['link', 'set', 'can0', 'up']);
  await c.waitFor(
    (ev) => ev.slice(n).some((e) => e.event === 'bus_state' && e.json.bus === 'can0' && e.json.state === 'error-active' && e.json.link === 'up'),
    10_000,
    'error-active again',
  );
  c.close();
});

test('error frames injected on vcan2 with cansend: every class in words and counted per class', { timeout: 120_000 }, async () => {
  progress('test: error frames injected on vcan2 with cansend: every class in ');
  const gw = await gateway();
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
  const frames = c
    .ofType('can_frame')
    .map((e) => e.json)
    .filter((f) => f.bus === 'vcan2');
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

test("the console page on the host (Chromium, through qemu's port forward) shows this agent on the real driver: guest-run.test.ts drives it", { timeout: 1_200_000 }, async (t) => {
  progress('test: the console page on the host');
  if (process.env[PAGE_HOST_ENV] !== '1')
    return skipOrFail(t, `no host drives the page checks (${PAGE_HOST_ENV} unset): run the guest through make test-socketcan (build/test/socketcan-vm/guest-run.test.js)`);
  await gateway();
  // The host acts on the buses through the control server (ip, cansend, bursts on can1) and checks the
  // page; its verdict is this test's. It leaves can0 and can1 as it found them (500 kbit/s, up).
  const v = await serveHostPageChecks(1_100_000, progress);
  progress(`the host's page checks: ${JSON.stringify(v)}`);
  assert.equal(v.error, undefined, `the host's page checks failed: ${v.error}`);
  assert.equal(v.ok, true);
});

test('relay onto a real controller paced like a real bus (txqueuelen 10): ENOBUFS met on every run, each retried and counted exactly; every frame, in order, none dropped', {
  timeout: 420_000,
}, async () => {
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
  // can2's queue paced like a real bus, so that B meets ENOBUFS on every run (paced-queue.ts says why).
  pace('can2');
  children.push({ stop: () => unpace('can2') });
  const q0 = qdiscCounts('can2');
  assert.deepEqual(q0, { sent: 0, dropped: 0 }, 'a fresh qdisc');
  const N = Number(process.env.KVASER_RELAY_FRAMES ?? 2000);
  sh('cangen', ['can1', '-g', '0', '-p', '1000', '-n', String(N), '-I', '2A0', '-L', '8', '-D', 'i']);
  // What A's controller delivered (an overrun in the emulated controller is the kernel's, counted there:
  // one idle run delivered 1,455 of 2,000, a CI run on a busy host 927) must reach can3 complete and in
  // the same order. cangen has ended: what can0 delivers is there once candump on can0 has seen nothing
  // new for 3 s. How much that is does not matter here, as long as B met a full queue (asserted below).
  let seenOnA = -1;
  let quietSince = Date.now();
  try {
    await until(
      async () => {
        const rx = metricValue((await getJson(a.base + '/metrics')).text, 'canrelay_can_frames_total', { bus: 'can0', direction: 'rx' }) ?? 0;
        const onCan0 = onA.lines().length;
        if (onCan0 !== seenOnA) [seenOnA, quietSince] = [onCan0, Date.now()];
        return rx > 0 && Date.now() - quietSince >= 3000 && rx >= onCan0 && onB.lines().length >= rx;
      },
      180_000,
      'every frame A received on can3',
    );
  } catch (err) {
    // Say where the frames stopped: each hop's counters.
    for (const [name, base] of [
      ['A', a.base],
      ['bridge', bridge.base],
      ['B', b.base],
    ] as const) {
      const m = (await getJson(base + '/metrics')).text;
      progress(
        `${name}: ${m
          .split('\n')
          .filter((l) => /frames_total|uplink\{|relayed|dropped|rejected/.test(l) && !l.startsWith('#'))
          .join(' | ')}`,
      );
    }
    progress(
      `B warnings: ${b.proc.logs
        .filter((l) => l.level >= 40)
        .map((l) => l.msg)
        .slice(0, 5)
        .join(' | ')}`,
    );
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
  const q = qdiscCounts('can2');
  figures.relay = {
    generated: N,
    received_by_a: sentOnA.length,
    arrived_on_can3: arrived.length,
    tx_retries: retries,
    qdisc_sent: q.sent,
    qdisc_refused: q.dropped,
    tx_dropped_busy: metricValue(mb, 'canrelay_uplink', { kind: 'tx_dropped_busy' }),
  };
  console.log(JSON.stringify(figures.relay));
  progress(JSON.stringify(figures.relay));
  // Every ENOBUFS the kernel gave B (a frame the qdisc refused, its own count) is one retry in B's count,
  // and the frames the qdisc passed to the driver are the frames on can3.
  assert.ok(q.dropped > 0, `the paced transmit queue was full (ENOBUFS) at least once: ${JSON.stringify(q)}`);
  assert.equal(retries, q.dropped, "B's tx_retries = the ENOBUFS the kernel returned (frames its qdisc refused)");
  assert.equal(q.sent, arrived.length, 'the frames the qdisc handed to the driver = the frames on can3');
  assert.equal(metricValue(mb, 'canrelay_uplink', { kind: 'tx_dropped_busy' }), 0);
  assert.equal(metricValue(mb, 'canrelay_uplink', { kind: 'tx_failed' }), 0);
  assert.equal(metricValue(mb, 'canrelay_uplink', { kind: 'relay_seq_gaps' }), 0);
  assert.equal(metricValue(mb, 'canrelay_can_frames_total', { bus: 'can2', direction: 'tx' }), arrived.length);
  const ma = (await getJson(a.base + '/metrics')).text;
  assert.equal(metricValue(ma, 'canrelay_can_frames_total', { bus: 'can0', direction: 'rx' }), sentOnA.length);
  unpace('can2');
});
