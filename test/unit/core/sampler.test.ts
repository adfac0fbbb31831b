import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FrameSampler, type SamplerTransition } from '../../../core/console/sampler.js';

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
