import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CanFrame } from '../../../core/can/frame.js';
import { FrameSampler, SamplerKeys, type SamplerTransition } from '../../../core/console/sampler.js';

/** Feeds `seconds` of traffic: each id at its rate, evenly interleaved in 1 ms steps. */
function drive(s: FrameSampler, rates: Record<string, number>, seconds: number, t0: number) {
  const passed: Record<string, number> = {};
  const represented: Record<string, number> = {};
  const offered: Record<string, number> = {};
  const next: Record<string, number> = {};
  for (const k of Object.keys(rates)) next[k] = t0;
  for (let t = t0; t < t0 + seconds * 1000; t++) {
    for (const [k, hz] of Object.entries(rates)) {
      while (next[k]! <= t) {
        next[k]! += 1000 / hz;
        offered[k] = (offered[k] ?? 0) + 1;
        const n = s.offer(k, t);
        if (n > 0) {
          passed[k] = (passed[k] ?? 0) + 1;
          represented[k] = (represented[k] ?? 0) + n;
        }
      }
    }
  }
  return { passed, represented, offered };
}

test('below the limit every frame passes and sampling stays off', () => {
  const tr: SamplerTransition[] = [];
  const s = new FrameSampler(200, (t) => tr.push(t), 0);
  const r = drive(s, { a: 100, b: 50 }, 3, 0);
  assert.deepEqual(r.passed, r.offered);
  assert.equal(tr.length, 0);
});

test('a flood is thinned to about the limit, a 1 Hz id is never starved, counts add up', () => {
  const tr: SamplerTransition[] = [];
  const s = new FrameSampler(200, (t) => tr.push(t), 0);
  const r = drive(s, { flood: 5000, mid: 100, slow: 1 }, 5, 0);
  assert.equal(tr[0]?.state, 'on');
  assert.ok(tr[0]!.inputRate > 1000, `on-transition reports the input rate (${tr[0]!.inputRate})`);
  const out = Object.values(r.passed).reduce((a, b) => a + b, 0);
  assert.ok(out < 5 * 200 * 1.5 + 200, `output ${out} frames in 5 s is near 200/s`);
  assert.equal(r.passed.slow, 5, 'the 1 Hz id shows every one of its frames');
  assert.ok(r.passed.mid! >= 5 * 60, `the 100 Hz id keeps a fair share (${r.passed.mid})`);
  // Every frame is accounted for by "represents", except those still pending since the last pass.
  for (const k of ['flood', 'mid', 'slow']) {
    assert.ok(r.offered[k]! - r.represented[k]! < r.offered[k]! / 5 + 60, `${k}: represented ${r.represented[k]} of ${r.offered[k]}`);
  }
});

test('sampling switches off once the input falls', () => {
  const tr: SamplerTransition[] = [];
  const s = new FrameSampler(200, (t) => tr.push(t), 0);
  drive(s, { flood: 3000 }, 2, 0);
  drive(s, { calm: 50 }, 3, 2000);
  assert.deepEqual(
    tr.map((t) => t.state),
    ['on', 'off'],
  );
  assert.ok(tr[1]!.inputRate <= 160);
});

test('the wall clock stepped back an hour: the console keeps showing about the limit, sampling keeps its windows', () => {
  const tr: SamplerTransition[] = [];
  const hour = 3_600_000;
  const s = new FrameSampler(200, (t) => tr.push(t), hour);
  drive(s, { a: 250, b: 250, c: 250, d: 250 }, 3, hour);
  // Stepped back (NTP, an RTC-less boot): the same traffic, times an hour earlier.
  const after = drive(s, { a: 250, b: 250, c: 250, d: 250 }, 5, 3000);
  const out = Object.values(after.passed).reduce((x, y) => x + y, 0);
  assert.ok(out >= 5 * 200 * 0.8, `${out} frames shown in 5 s after the step (the window never ended: about 200 in all)`);
  assert.ok(tr.every((t) => Number.isFinite(t.inputRate) && t.inputRate >= 0));
});

test('a quiet bus switches sampling off through tick()', () => {
  const tr: SamplerTransition[] = [];
  const s = new FrameSampler(100, (t) => tr.push(t), 0);
  drive(s, { flood: 2000 }, 1.5, 0);
  s.tick(5000);
  assert.deepEqual(
    tr.map((t) => t.state),
    ['on', 'off'],
  );
});

/** Passes per id and 1 s window, each id at its rate evenly spaced (1 ms steps), from t = 0. */
function perWindow(
  maxRate: number,
  rates: Record<string, number>,
  seconds: number,
): { passed: Record<string, number[]>; offered: Record<string, number[]>; represents: Record<string, number[]> } {
  const s = new FrameSampler(maxRate, () => {}, 0);
  const passed: Record<string, number[]> = {};
  const offered: Record<string, number[]> = {};
  const represents: Record<string, number[]> = {};
  const next: Record<string, number> = {};
  for (const k of Object.keys(rates)) {
    next[k] = 0;
    passed[k] = Array(seconds).fill(0);
    offered[k] = Array(seconds).fill(0);
    represents[k] = [];
  }
  for (let t = 0; t < seconds * 1000; t++) {
    const w = Math.floor(t / 1000);
    for (const [k, hz] of Object.entries(rates)) {
      while (next[k]! <= t) {
        next[k]! += 1000 / hz;
        offered[k]![w]!++;
        const n = s.offer(k, t);
        if (n > 0) {
          passed[k]![w]!++;
          represents[k]!.push(n);
        }
      }
    }
  }
  return { passed, offered, represents };
}

// From the first whole window of sampling on: in the window it switches on in, maxRate frames had
// already passed before the input was known to be too high (README, Sampling).
test('an id whose whole rate fits its fair share keeps every frame, each standing for itself', () => {
  // 200/s among 3 ids: a fair share is 66; the 50 Hz id fits, the 1 Hz one too.
  const r = perWindow(200, { flood: 5000, mid: 50, slow: 1 }, 6);
  for (let w = 1; w < 6; w++) {
    assert.equal(r.passed.mid![w], r.offered.mid![w], `window ${w}: every frame of the 50 Hz id`);
    assert.equal(r.passed.slow![w], r.offered.slow![w], `window ${w}: every frame of the 1 Hz id`);
  }
  assert.ok(
    r.represents.mid!.slice(10).every((n) => n === 1),
    'nothing of it left out, so each stands for 1',
  );
  // A negative control of the check: the flood does not fit and is cut.
  assert.ok(r.passed.flood![3]! < r.offered.flood![3]! / 10);
});

test('max-min fair share: ids above the share are cut to it, capacity an id leaves free goes to the others', () => {
  // 200/s: the 30 Hz id takes 30 (it fits), the remaining 170 are shared by the two bigger ones: 85 each —
  // the 150 Hz id is cut to 85, the 5 kHz flood gets the same 85, not more.
  const r = perWindow(200, { flood: 5000, b: 150, c: 30 }, 6);
  for (let w = 1; w < 6; w++) {
    assert.equal(r.passed.c![w], 30, `window ${w}: the id within its share keeps all 30`);
    assert.ok(Math.abs(r.passed.b![w]! - 85) <= 1, `window ${w}: 150 Hz id cut to the share 85 (got ${r.passed.b![w]})`);
    assert.ok(Math.abs(r.passed.flood![w]! - 85) <= 1, `window ${w}: the flood gets the same share 85 (got ${r.passed.flood![w]})`);
    assert.ok(r.passed.flood![w]! + r.passed.b![w]! + r.passed.c![w]! <= 200, `window ${w}: within the budget`);
  }
  // Equal floods split what a small id leaves: 300/s, a 100 Hz id keeps its 100, the two floods 100 each.
  const e = perWindow(300, { a: 5000, b: 5000, c: 100 }, 6);
  for (let w = 1; w < 6; w++) {
    assert.equal(e.passed.c![w], 100, `window ${w}: the 100 Hz id keeps everything`);
    for (const k of ['a', 'b']) assert.ok(Math.abs(e.passed[k]![w]! - 100) <= 1, `window ${w}: flood ${k} gets 100 (got ${e.passed[k]![w]})`);
  }
  // represents keeps rates right under the cut: the 150 Hz id's passing frames stand for all of its frames.
  const sum = r.represents.b!.reduce((a, n) => a + n, 0);
  const offered = r.offered.b!.reduce((a, n) => a + n, 0);
  assert.ok(offered - sum <= 2 && sum <= offered, `150 Hz id: represents add up to ${sum} of ${offered}`);
});

test('sampler keys: one key per dongle, bus, id and kind, whatever order the frames come in and after the cache starts over', () => {
  const f = (bus: string, id: number, kind: 'std' | 'ext' | 'err' = 'std'): CanFrame => ({
    bus,
    id,
    ext: kind === 'ext',
    rtr: false,
    err: kind === 'err',
    fd: false,
    brs: false,
    esi: false,
    dlc: 0,
    data: new Uint8Array(0),
    tsUs: 0,
    direction: 'rx',
  });
  const keys = new SamplerKeys();
  const frames: [CanFrame, string | undefined, string][] = [
    [f('can0', 0x10), undefined, '/can0:16'],
    [f('can0', 0x10), 'gw-a', 'gw-a/can0:16'],
    [f('can0', 0x10), 'gw-b', 'gw-b/can0:16'],
    [f('can1', 0x10), 'gw-b', 'gw-b/can1:16'],
    [f('can1', 0x10, 'ext'), 'gw-b', 'gw-b/can1:x16'],
    [f('can1', 0x10, 'err'), 'gw-b', 'gw-b/can1:e16'],
    [f('can0', 0x10), 'gw-a', 'gw-a/can0:16'],
  ];
  for (let round = 0; round < 3; round++) for (const [frame, dongle, want] of frames) assert.equal(keys.key(frame, dongle), want);
  // Past its bound (8,192 distinct keys, an id flood) the cache starts over; keys stay right.
  for (let id = 0; id < 9000; id++) assert.equal(keys.key(f('can2', id), 'gw-a'), `gw-a/can2:${id}`);
  for (const [frame, dongle, want] of frames) assert.equal(keys.key(frame, dongle), want);
});
