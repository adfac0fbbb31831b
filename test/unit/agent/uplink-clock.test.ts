/** The clock pieces of the data plane (core/uplink/clock.ts) and agent B's age check, without processes. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CanFrame } from '../../../core/can/frame.js';
import {
  ClockEstimator,
  CLOCK_RESOLUTION_MS,
  type ClockFix,
  earliestOnBridgeMs,
  fixForWallClockNow,
  frameTimesProblem,
  noLaterThanArrival,
  RESTATE_MS,
  transmitDeadlineMs,
} from '../../../core/uplink/clock.js';
import { decodeBatch, encodeBatch, KIND_DOWN } from '../../../core/uplink/frame-codec.js';
import type { SendResult } from '../../../agent/sources/source.js';
import { TxQueue } from '../../../agent/tx-queue.js';
import { ClockSync } from '../../../agent/uplink/clock-sync.js';
import type { AgentMessage } from '../../../core/uplink/messages.js';
import { Downlink } from '../../../agent/uplink/downlink.js';
import { FrameUploader } from '../../../agent/uplink/frame-uploader.js';
import { testFrame } from '../../helpers/can-frames.js';

const frame = (tsMs: number, n = 0): CanFrame => testFrame({ data: Uint8Array.of(n), tsUs: tsMs * 1000 });

test('clock estimator: offset from the midpoint, error half the round trip; the best sample wins; a stepped clock starts over', () => {
  const e = new ClockEstimator();
  const fix = (): ClockFix | undefined => e.fix; // read afresh each time (no narrowing across adds)
  assert.equal(fix(), undefined);
  // Local clock 3,000 ms behind the bridge; a 40 ms round trip, then a 10 ms one.
  assert.equal(e.add(1000, 4020, 1040), true);
  assert.deepEqual(e.fix, { offsetMs: 3000, errorMs: 20 + CLOCK_RESOLUTION_MS });
  assert.equal(e.add(2000, 5006, 2010), true);
  assert.deepEqual(e.fix, { offsetMs: 3001, errorMs: 5 + CLOCK_RESOLUTION_MS });
  assert.equal(e.add(3000, 6000, 3100), true, 'a worse sample is kept but not used');
  assert.equal(fix()?.errorMs, 5 + CLOCK_RESOLUTION_MS + 1, 'its error grown by 1,090 ms of drift at 500 ppm, rounded up');
  assert.equal(e.add(4000, 4000, 3990), false, 'a negative round trip is unusable');
  // The local clock is stepped 10 s: the new sample contradicts the old ones, which are dropped.
  assert.equal(e.add(15_000, 8000, 15_020), true);
  assert.deepEqual(e.fix, { offsetMs: -7010, errorMs: 10 + CLOCK_RESOLUTION_MS });
});

test('clock estimator: drift between probes is counted: a gateway clock 100 ppm fast, probes 300 s apart over a slower link, the fix always holds the true offset', () => {
  const ppm = 100e-6;
  const local = (t: number): number => 1_700_000_000_000 + t * (1 + ppm); // the gateway's clock at bridge time t
  const e = new ClockEstimator();
  for (let k = 0; k < 8; k++) {
    const sentAt = k * 300_000;
    const rtt = k === 0 ? 10 : 400; // the first round trip on a quiet link, the others on a loaded cellular one
    const t1 = local(sentAt + rtt);
    assert.ok(e.add(local(sentAt), sentAt + rtt / 2, t1, 0));
    // Checked right after the probe and just before the next one (the fix is used all that time).
    for (const at of [sentAt + rtt, sentAt + 299_000]) {
      const fix = e.fixAt(local(at))!;
      const trueOffset = at - local(at);
      assert.ok(
        Math.abs(fix.offsetMs - trueOffset) <= fix.errorMs,
        `probe ${k}, ${at - sentAt} ms after: fix ${fix.offsetMs.toFixed(1)} ± ${fix.errorMs}, true ${trueOffset.toFixed(1)}`,
      );
    }
  }
  // A fix no probe renewed for days leaves no room for the widenings: none is given.
  assert.equal(e.fixAt(local(7 * 300_000) + 200_000_000), undefined);
});

test("clock estimator: the fix says which wall clock it is for (the wall-minus-monotonic offset of its sample's time)", () => {
  const e = new ClockEstimator();
  assert.equal(e.fixWallMinusMono, undefined);
  e.add(1000, 4020, 1040, 500);
  e.add(2000, 5006, 2010, 501); // the better sample: its offset's clock
  e.add(3000, 6000, 3100, 502);
  assert.equal(e.fixWallMinusMono, 501);
  e.reset();
  assert.equal(e.fixWallMinusMono, undefined);
});

test("clock estimator: a bridge that says its clock domain has every sample restated for the newest reply's domain: a step of its clock below two samples' errors moves the fix by the step, the better sample still used", () => {
  const e = new ClockEstimator();
  // A 400 ms round trip (error 202 ms), then after a 500 ms step forward of the bridge's clock a 600 ms one (302 ms).
  assert.equal(e.add(1000, 1200, 1400, 0, 7000), true);
  assert.deepEqual(e.fix, { offsetMs: 0, errorMs: 202 });
  assert.equal(e.add(5000, 5800, 5600, 0, 7500), true);
  assert.deepEqual(e.fix, { offsetMs: 500, errorMs: 206 }, 'the better sample, restated by the step (its error +1 ms for the two readings, +3 for 4.2 s of drift)');
  // Without the domain the same two samples leave the fix as measured before the step: off by 500 ms.
  const blind = new ClockEstimator();
  blind.add(1000, 1200, 1400);
  blind.add(5000, 5800, 5600);
  assert.deepEqual(blind.fix, { offsetMs: 0, errorMs: 205 }, 'as measured, +3 ms of drift');
  // A step far past the errors is explained by the domains: the samples are kept (no start over).
  assert.equal(e.add(9000, 19_010, 9010, 0, 17_500), true);
  assert.deepEqual(e.fix, { offsetMs: 10_005, errorMs: 7 }, 'the new, better sample');
  assert.equal(e.add(10_000, 20_300, 10_400, 0, 17_500), true);
  assert.equal(e.fix?.errorMs, 8, 'still the best of the kept ones (+1 ms for 1.4 s of drift)');
});

test('clock estimator: samples of no known bridge domain (replies before the welcome) give way to the first that has one; later ones without are refused', () => {
  const e = new ClockEstimator();
  e.add(1000, 1001, 1002); // a 2 ms round trip, no domain
  assert.equal(e.fix?.errorMs, 3);
  assert.equal(e.add(2000, 2500, 2200, 0, 40), true, 'a worse sample, with its domain');
  assert.deepEqual(e.fix, { offsetMs: 400, errorMs: 102 }, 'the sample of unknown domain is dropped: it could be from before a step');
  assert.equal(e.add(3000, 3001, 3002), false, 'a late reply to a probe that did not ask for the domain');
  assert.deepEqual(e.fix, { offsetMs: 400, errorMs: 102 });
});

test('clock sync: probes ask for the bridge\'s clock domain only once its welcome listed "clock_domain", then a few at once; a new connection asks again only after its welcome', () => {
  let now = 1000;
  const sync = new ClockSync(
    () => now,
    () => 0,
  );
  const sent: AgentMessage[] = [];
  sync.start((m) => sent.push(m));
  const answer = (bridgeWm?: number): void => {
    const p = sent.at(-1) as Extract<AgentMessage, { t: 'clock_probe' }>;
    now += 2;
    sync.reply({ t: 'clock_reply', t0: p.t0, bridge_ms: now + 499, ...(bridgeWm === undefined ? {} : { bridge_wm: bridgeWm }) });
  };
  for (let i = 0; i < 4; i++) answer();
  assert.equal(sent.length, 4);
  assert.ok(
    sent.every((m) => m.t === 'clock_probe' && m.domain === undefined),
    'before the welcome: plain probes (an older bridge refuses the field)',
  );
  sync.useBridgeDomains();
  assert.deepEqual(sent.at(-1), { t: 'clock_probe', t0: now, domain: true });
  for (let i = 0; i < 4; i++) answer(123);
  assert.equal(sent.length, 8, 'a few at once, to replace the samples of no known domain');
  assert.equal(sync.fix?.offsetMs, 500);
  sync.start((m) => sent.push(m));
  assert.equal((sent.at(-1) as { domain?: true }).domain, undefined, 'a new connection may reach an older bridge');
});

test('deadlines count every uncertainty against the frame; absurd times are refused', () => {
  const origin = { offsetMs: 500, errorMs: 10 }; // A's clock is 500 ms behind the bridge
  const local = { offsetMs: -200, errorMs: 5 }; // B's clock is 200 ms ahead of it
  assert.equal(earliestOnBridgeMs(1_000_000, origin), 1000 + 500 - 10);
  // On B's clock the frame was received at 1000 + 500 + 200 = 1700 at the earliest (minus both errors).
  assert.equal(transmitDeadlineMs(1_000_000, origin, local, 2000), 1700 - 15 + 2000);
  const now = 1_800_000_000_000;
  assert.equal(frameTimesProblem([{ frame: frame(now), seq: 1 }], { offsetMs: 0, errorMs: 0 }, now, { offsetMs: 0, errorMs: 0 }), null);
  assert.match(
    frameTimesProblem([{ frame: { ...frame(now), tsUs: 1e300 }, seq: 1 }], { offsetMs: 0, errorMs: 0 }, now, { offsetMs: 0, errorMs: 0 }) ?? '',
    /frame 0 has timestamp/,
  );
  assert.match(frameTimesProblem([{ frame: frame(now + 120_000), seq: 1 }], { offsetMs: 0, errorMs: 0 }, now, { offsetMs: 0, errorMs: 0 }) ?? '', /from now/);
  assert.equal(
    frameTimesProblem([{ frame: frame(now + 3000), seq: 1 }], { offsetMs: -3000, errorMs: 2 }, now, { offsetMs: 0, errorMs: 0 }),
    null,
    'a clock 3 s ahead is converted first',
  );
});

test('agent B: a relayed frame past its age is dropped and counted at the transmit, a fresh one goes out; a bad batch is refused whole', () => {
  const sent: CanFrame[] = [];
  const tx = new TxQueue((f): SendResult => (sent.push(f), { ok: true, tsUs: Date.now() * 1000 }), { retryMs: 10, maxQueued: 100 });
  const d = new Downlink(tx, 2000);
  const local = { offsetMs: 0, errorMs: 3 };
  const acks: number[] = [];
  d.onAck = (n) => acks.push(n);
  const now = Date.now();
  const batch = (n: number, frames: CanFrame[]) =>
    decodeBatch(encodeBatch({ kind: KIND_DOWN, batch: n, origin: 'gw-a', clock: { offsetMs: 0, errorMs: 2 }, frames: frames.map((frame, i) => ({ frame, seq: i + 1 })) }));
  assert.equal(d.apply(batch(1, [frame(now - 1996, 1), frame(now - 100, 2)]), local), undefined);
  assert.deepEqual(
    sent.map((f) => f.data[0]),
    [2],
    '1,996 ms plus 5 ms of uncertainty is too old for 2,000 ms',
  );
  assert.equal(tx.stats.droppedTooOld, 1);
  assert.deepEqual(acks, [1], 'acknowledged once every frame was transmitted or counted');
  const bad = { ...frame(now, 3), tsUs: 1e300 };
  assert.match(d.apply(batch(2, [frame(now, 4), bad]), local) ?? '', /timestamp/);
  assert.equal(sent.length, 1, 'none of the bad batch was transmitted');
  assert.deepEqual(acks, [1]);
  assert.equal(d.apply(batch(3, [frame(now, 5)]), undefined), undefined);
  assert.equal(tx.stats.droppedTooOld, 2, 'without a clock fix nothing can be proven fresh');
  tx.stop();
});

test('agent A: a frame whose time a receiver would refuse is left out and counted, the rest of its batch goes', async () => {
  const up = new FrameUploader({ maxBufferedFrames: 10_000, maxAgeMs: 2000 });
  const sent: Buffer[] = [];
  up.attach({ send: (b) => sent.push(b), bufferedAmount: () => 0, clock: () => ({ offsetMs: 0, errorMs: 2 }) });
  up.push(frame(Date.now(), 1));
  up.push({ ...frame(Date.now(), 2), tsUs: 1e300 });
  up.push(frame(Date.now(), 3));
  await new Promise((r) => setImmediate(r));
  assert.equal(sent.length, 1);
  assert.deepEqual(
    decodeBatch(sent[0]!).frames.map((f) => f.frame.data[0]),
    [1, 3],
  );
  assert.equal(up.stats.droppedBadTime, 1);
  up.ack(1);
  assert.equal(up.buffered, 0);
});

test('a batch whose frames would have been received after it arrived is moved back to its arrival; one that is not keeps its fix', () => {
  const arrival = 1_800_000_000_000;
  const origin = { offsetMs: 1000, errorMs: 5 }; // a stale offset: the origin's clock has since been stepped forward
  const sf = (tsMs: number) => ({ frame: frame(tsMs), seq: 1 });
  // Newest frame 30 s ahead of its arrival on the bridge's clock (earliest: ts + 1000 - 5).
  const moved = noLaterThanArrival([sf(arrival - 1000 + 30_000), sf(arrival - 1000 + 29_000)], origin, arrival);
  assert.equal(earliestOnBridgeMs((arrival - 1000 + 30_000) * 1000, moved), arrival, 'the newest frame ages from its arrival');
  assert.equal(moved.errorMs, 5);
  assert.equal(earliestOnBridgeMs((arrival - 1000 + 29_000) * 1000, moved), arrival - 1000, 'the others keep their spacing');
  const fine = { offsetMs: 0, errorMs: 2 };
  assert.equal(noLaterThanArrival([sf(arrival - 50)], fine, arrival), fine, 'a batch from the past is unchanged');
  assert.equal(noLaterThanArrival([sf(arrival + 1)], fine, arrival), fine, 'within its error bound: possible, unchanged');
});

test('agent B: a frame stamped in the future is transmitted no later than the age limit after it arrived, whatever its stamp says', async () => {
  // The origin's clock jumped 30 s ahead and no bridge moved it back: its frames look 30 s younger.
  let busy = true;
  const sent: CanFrame[] = [];
  const tx = new TxQueue((f): SendResult => (busy ? { ok: false, busy: true, error: 'ENOBUFS' } : (sent.push(f), { ok: true, tsUs: Date.now() * 1000 })), {
    retryMs: 60_000,
    maxQueued: 100,
  });
  const d = new Downlink(tx, 200);
  const acks: number[] = [];
  d.onAck = (n) => acks.push(n);
  const b = decodeBatch(encodeBatch({ kind: KIND_DOWN, batch: 1, origin: 'gw-a', clock: { offsetMs: 0, errorMs: 2 }, frames: [{ frame: frame(Date.now() + 30_000), seq: 1 }] }));
  assert.equal(d.apply(b, { offsetMs: 0, errorMs: 2 }), undefined);
  await new Promise((r) => setTimeout(r, 400)); // the bus stays busy past the 200 ms limit
  busy = false;
  for (const deadline = Date.now() + 5000; acks.length === 0; ) {
    assert.ok(Date.now() < deadline, 'the batch was handled');
    await new Promise((r) => setTimeout(r, 5));
  }
  tx.stop();
  assert.equal(sent.length, 0, 'never transmitted');
  assert.equal(tx.stats.droppedTooOld, 1, 'dropped and counted');
});

test('tx queue: a deadline is kept on a monotonic clock; the wall clock stepped back does not extend it', async (t) => {
  let busy = true;
  const results: SendResult[] = [];
  const tx = new TxQueue((): SendResult => (busy ? { ok: false, busy: true, error: 'ENOBUFS' } : { ok: true, tsUs: 0 }), { retryMs: 60_000, maxQueued: 10 });
  t.after(() => tx.stop());
  const realNow = Date.now;
  t.after(() => (Date.now = realNow));
  tx.enqueue(frame(0), (r) => results.push(r), Date.now() + 100);
  Date.now = () => realNow() - 3_600_000; // NTP steps the wall clock an hour back
  await new Promise((r) => setTimeout(r, 250));
  busy = false;
  for (const deadline = realNow() + 5000; results.length === 0; ) {
    assert.ok(realNow() < deadline, 'the frame was handled');
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.equal(results[0]!.ok, false, 'past its deadline: not transmitted');
  assert.equal(tx.stats.droppedTooOld, 1);
});

test('a fix restated for the wall clock as it reads now: a step moves the offset by as much; a change under RESTATE_MS widens the error', () => {
  const fix = { offsetMs: 250, errorMs: 4 };
  assert.equal(fixForWallClockNow(fix, 1000, 1000), fix, 'no step: the same fix');
  // The wall clock stepped 10 s back since the round trip: times read now are 10 s lower, the offset 10 s more.
  assert.deepEqual(fixForWallClockNow(fix, 1000, 1000 - 10_000), { offsetMs: 10_250, errorMs: 5 });
  assert.deepEqual(fixForWallClockNow(fix, 1000, 1000 + 10_000), { offsetMs: -9750, errorMs: 5 });
  assert.deepEqual(fixForWallClockNow(fix, 1000, 1000 - (RESTATE_MS - 3)), { offsetMs: 250, errorMs: 4 + RESTATE_MS - 3 });
});

/**
 * Agent B whose fix was measured while its wall clock was `aheadMs` off (the ClockSync's wall clock is the
 * real one plus that), then NTP steps it right (the wall clock reads the real time again, the bridge's time
 * here) before the next probe. A frame the origin received `ageMs` ago is relayed with a 2 s age limit and
 * waits `waitMs` on a busy bus. Returns what became of it.
 */
async function steppedAgentB(aheadMs: number, ageMs: number, waitMs: number): Promise<{ sent: number; tooOld: number }> {
  let ahead = aheadMs;
  const sync = new ClockSync(() => Date.now() + ahead);
  let probe: { t: string; t0: number } | undefined;
  sync.start((m) => {
    if (m.t === 'clock_probe') probe ??= m;
  });
  assert.ok(probe);
  assert.equal(sync.reply({ t: 'clock_reply', t0: probe.t0, bridge_ms: Date.now() }), true);
  ahead = 0; // NTP steps the wall clock
  let busy = true;
  let sent = 0;
  const tx = new TxQueue((): SendResult => (busy ? { ok: false, busy: true, error: 'ENOBUFS' } : (sent++, { ok: true, tsUs: Date.now() * 1000 })), {
    retryMs: 60_000,
    maxQueued: 10,
  });
  const d = new Downlink(tx, 2000);
  const acks: number[] = [];
  d.onAck = (n) => acks.push(n);
  const b = decodeBatch(encodeBatch({ kind: KIND_DOWN, batch: 1, origin: 'gw-a', clock: { offsetMs: 0, errorMs: 2 }, frames: [{ frame: frame(Date.now() - ageMs), seq: 1 }] }));
  assert.equal(d.apply(b, sync.fixNow()), undefined);
  await new Promise((r) => setTimeout(r, waitMs));
  busy = false;
  for (const deadline = Date.now() + 5000; acks.length === 0; ) {
    assert.ok(Date.now() < deadline, 'the batch was handled');
    await new Promise((r) => setTimeout(r, 5));
  }
  tx.stop();
  return { sent, tooOld: tx.stats.droppedTooOld };
}

test('agent B, its clock stepped back since its fix: a relayed frame 1.5 s old of a 2 s limit is not transmitted 0.9 s later (the fix as measured would have kept it for up to 2 s)', async () => {
  const r = await steppedAgentB(10_000, 1500, 900);
  assert.deepEqual(r, { sent: 0, tooOld: 1 });
});

test('agent B, its clock stepped forward since its fix: a relayed frame 0.1 s old is transmitted, not dropped as 10 s old', async () => {
  const r = await steppedAgentB(-10_000, 100, 50);
  assert.deepEqual(r, { sent: 1, tooOld: 0 });
});

/**
 * Agent A with the uplink down while NTP steps its wall clock: the uploader's clocks injected (the wall
 * clock `wall`, the monotonic `mono`); the bridge's clock is the true time, and after the step A's fresh
 * clock fix says A agrees with it. What the bridge would compute for each frame is computed with the
 * bridge's own functions (noLaterThanArrival, earliestOnBridgeMs).
 */
function steppedOutage(stepMs: number): {
  up: FrameUploader;
  sent: Buffer[];
  receive: (n: number) => void;
  hold: (ms: number) => void;
  reconnect: () => void;
  bridgeNow: () => number;
} {
  const T0 = 1_800_000_000_000;
  let mono = 1000;
  let wallAhead = -stepMs; // before the step the wall clock is off by this much (a step back of 10 s: it was 10 s fast)
  const bridgeNow = (): number => T0 + mono;
  const up = new FrameUploader({ maxBufferedFrames: 10_000, maxAgeMs: 2000, now: () => bridgeNow() + wallAhead, monoNow: () => mono });
  const sent: Buffer[] = [];
  let n = 0;
  return {
    up,
    sent,
    // The kernel stamps a received frame with the wall clock (CLOCK_REALTIME), fast or not.
    receive: (count) => {
      for (let i = 0; i < count; i++) up.push(frame(bridgeNow() + wallAhead, n++));
      up.flush(); // sealed (the uplink is down: held)
    },
    hold: (ms) => {
      wallAhead = 0; // NTP steps the clock (once the cellular link, and NTP with it, is back)
      mono += ms;
    },
    reconnect: () => up.attach({ send: (b) => sent.push(b), bufferedAmount: () => 0, clock: () => ({ offsetMs: 0, errorMs: 2 }) }),
    bridgeNow,
  };
}

/** The age the bridge gives each frame of the sent batches on their arrival now (ms), after its own future check. */
function agesAtBridge(sent: Buffer[], arrival: number): number[] {
  return sent.flatMap((buf) => {
    const b = decodeBatch(buf);
    const fix = noLaterThanArrival(b.frames, b.clock!, arrival);
    return b.frames.map((f) => arrival - earliestOnBridgeMs(f.frame.tsUs, fix));
  });
}

test('agent A: frames held while the uplink is down, the clock 10 s fast then stepped back: a frame held 1 s is sent 1 s old (its time restated), not fresh', () => {
  const o = steppedOutage(-10_000);
  o.receive(5);
  o.hold(1000);
  o.reconnect();
  assert.equal(o.sent.length, 1);
  const ages = agesAtBridge(o.sent, o.bridgeNow());
  assert.equal(ages.length, 5);
  for (const age of ages) assert.ok(age >= 1000 && age <= 1000 + 10, `age at the bridge ${age} ms: held 1 s (before: 0, the frames 9 s in the future moved back to their arrival)`);
  const b = decodeBatch(o.sent[0]!);
  assert.ok(Math.abs(b.frames[0]!.frame.tsUs / 1000 - (o.bridgeNow() - 1000)) < 1, 'the time restated: the moment of receipt on the corrected clock');
  assert.equal(o.up.stats.batchesRestated, 1);
});

test('agent A: the same, held 3 s (past the 2 s limit): dropped and counted as too old, never sent', () => {
  const o = steppedOutage(-10_000);
  o.receive(5);
  o.hold(3000);
  o.reconnect();
  assert.equal(o.sent.length, 0, 'nothing sent (before: all five, looking 7 s in the future, then fresh)');
  assert.equal(o.up.stats.droppedTooOld, 5);
});

test('agent A: the clock 10 s slow then stepped forward: a frame held 1 s is still sent, 1 s old, not dropped as 11 s old', () => {
  const o = steppedOutage(10_000);
  o.receive(3);
  o.hold(1000);
  o.reconnect();
  assert.equal(o.up.stats.droppedTooOld, 0);
  const ages = agesAtBridge(o.sent, o.bridgeNow());
  assert.equal(ages.length, 3);
  for (const age of ages) assert.ok(age >= 1000 && age <= 1000 + 10, `age ${age} ms`);
});

test('agent A: without a step a held frame keeps its own time; a small backward change is counted in the clock error, not restated', () => {
  const o = steppedOutage(0);
  o.receive(2);
  o.hold(500);
  o.reconnect();
  const b = decodeBatch(o.sent[0]!);
  assert.equal(b.frames[0]!.frame.tsUs / 1000, o.bridgeNow() - 500, 'the stamp as received');
  assert.equal(o.up.stats.batchesRestated, 0);
  // A change of the offset under RESTATE_MS (slewing), backwards: the frames may be that much older.
  const p = steppedOutage(-(RESTATE_MS - 4));
  p.receive(1);
  p.hold(500);
  p.reconnect();
  const c = decodeBatch(p.sent[0]!);
  assert.equal(p.up.stats.batchesRestated, 0);
  assert.ok(Math.abs(c.clock!.errorMs - (2 + RESTATE_MS - 4)) < 1e-6, `clock error ${c.clock!.errorMs}`);
  for (const age of agesAtBridge(p.sent, p.bridgeNow())) assert.ok(age >= 500, `age ${age} ms: never younger than held`);
});

test("agent A: the clock stepped forward between a batch's first frame and its sealing: its frames are taken as the older, never the younger", () => {
  const T0 = 1_800_000_000_000;
  const mono = 1000;
  let wall = T0 + mono - 10_000; // 10 s slow
  const up = new FrameUploader({ maxBufferedFrames: 100, maxAgeMs: 2000, now: () => wall, monoNow: () => mono });
  const sent: Buffer[] = [];
  up.push(frame(wall, 1)); // stamped by the slow clock
  wall = T0 + mono; // stepped forward before the batch is sealed
  up.push(frame(wall, 2));
  up.attach({ send: (b) => sent.push(b), bufferedAmount: () => 0, clock: () => ({ offsetMs: 0, errorMs: 2 }) });
  // Which frame was stamped before the step is not known: both take the later offset, so frame 1 looks
  // 10 s old (dropped as too old, counted) rather than frame 2 looking 10 s younger than it is.
  assert.equal(up.stats.droppedTooOld, 1);
  assert.deepEqual(
    sent.flatMap((b) => decodeBatch(b).frames.map((f) => f.frame.data[0])),
    [2],
  );
});

test('agent A, link up, its clock fix measured before the step: frames held meanwhile (a full socket) are sent in the clock the fix is for, so each is as old as it is', () => {
  const T0 = 1_800_000_000_000;
  let mono = 1000;
  let fast = 10_000; // the wall clock is 10 s fast until NTP steps it
  const bridgeNow = (): number => T0 + mono;
  const up = new FrameUploader({ maxBufferedFrames: 100, maxAgeMs: 2000, now: () => bridgeNow() + fast, monoNow: () => mono });
  const sent: Buffer[] = [];
  let socketFull = true;
  // The fix was measured with the fast clock (offset -10 s), in that clock's domain, and not since.
  const fixWm = T0 + fast;
  up.attach({
    send: (b) => sent.push(b),
    bufferedAmount: () => (socketFull ? 1e9 : 0),
    clock: () => ({ offsetMs: -10_000, errorMs: 2 }),
    clockWallMinusMono: () => fixWm,
  });
  up.push(frame(bridgeNow() + fast, 1)); // received before the step, stamped by the fast clock
  up.flush();
  mono += 300;
  fast = 0; // stepped back
  up.push(frame(bridgeNow() + fast, 2)); // received after it, stamped by the corrected clock
  up.flush();
  mono += 700;
  socketFull = false;
  up.flush();
  const ages = agesAtBridge(sent, bridgeNow());
  assert.equal(ages.length, 2);
  assert.ok(ages[0]! >= 1000 && ages[0]! <= 1010, `frame 1: ${ages[0]} ms, held 1 s`);
  assert.ok(ages[1]! >= 700 && ages[1]! <= 710, `frame 2: ${ages[1]} ms, held 0.7 s`);
});

test('clock estimator: a round trip whose error leaves no room for the widenings senders add is refused; the largest accepted one still encodes when restated', () => {
  const e = new ClockEstimator();
  // A round trip of ~2 minutes (a clock stepped during the first probe): error 59,999 ms, at the limit.
  assert.equal(e.add(0, 1_000_000, 119_994), false, 'within a second of the 60 s limit: refused');
  assert.equal(e.fix, undefined);
  assert.equal(e.add(0, 1_000_000, 117_996), true, 'error 59,000 ms: kept');
  const fix = e.fix!;
  // What senders do with it: restate it for a wall clock stepped since (+1 ms or + a small step), then encode.
  const restated = fixForWallClockNow(fix, 0, RESTATE_MS - 1);
  assert.doesNotThrow(() => encodeBatch({ kind: KIND_DOWN, batch: 1, origin: 'gw-a', clock: { offsetMs: restated.offsetMs, errorMs: restated.errorMs + 1 }, frames: [] }));
});
