/**
 * SeqTracker (cloud-bridge/seq-tracker.ts), the bridge's per-dongle, per-bus sequence diagnostics, without
 * processes: gaps, late (reordered) and duplicate numbers per bus, a new agent run starting over with the
 * counts kept, unknown dongles ignored, forget(), and the bound on buses per dongle.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SeqTracker } from '../../../cloud-bridge/seq-tracker.js';
import type { CanFrame } from '../../../core/can/frame.js';
import type { SequencedFrame } from '../../../core/uplink/frame-codec.js';
import type { SeqCounts } from '../../../core/uplink/seq-checker.js';

function frames(bus: string, ...seqs: number[]): SequencedFrame[] {
  return seqs.map((seq) => {
    const frame: CanFrame = { bus, id: 0x10, ext: false, rtr: false, err: false, fd: false, brs: false, esi: false, dlc: 0, data: new Uint8Array(0), tsUs: 0, direction: 'rx' };
    return { frame, seq };
  });
}

function counts(t: SeqTracker): Record<string, SeqCounts> {
  const out: Record<string, SeqCounts> = {};
  for (const [dongle, bus, c] of t.entries()) out[`${dongle}/${bus}`] = { ...c };
  return out;
}

test('seq tracker: gaps, late arrivals and duplicates are counted per dongle and bus', () => {
  const t = new SeqTracker();
  t.startRun('gw-a', 'run-1');
  t.startRun('gw-b', 'run-1');
  t.track('gw-a', frames('can0', 1, 2, 3, 6, 4, 4, 7));
  t.track('gw-a', frames('can1', 10, 11, 12));
  t.track('gw-b', frames('can0', 5, 6, 6));
  assert.deepEqual(counts(t), {
    'gw-a/can0': { gaps: 2, reordered: 1, duplicates: 1 },
    'gw-a/can1': { gaps: 0, reordered: 0, duplicates: 0 },
    'gw-b/can0': { gaps: 0, reordered: 0, duplicates: 1 },
  });
});

test('seq tracker: a new run starts the numbers over and keeps the counts; the same run does not', () => {
  const t = new SeqTracker();
  t.startRun('gw-a', 'run-1');
  t.track('gw-a', frames('can0', 100, 101, 103));
  t.startRun('gw-a', 'run-1'); // a reconnect of the same run: numbering continues
  t.track('gw-a', frames('can0', 50));
  assert.deepEqual(counts(t)['gw-a/can0'], { gaps: 1, reordered: 0, duplicates: 1 });
  t.startRun('gw-a', 'run-2'); // the agent restarted: 7 is its new start, not a duplicate
  t.track('gw-a', frames('can0', 7, 8, 9));
  assert.deepEqual(counts(t)['gw-a/can0'], { gaps: 1, reordered: 0, duplicates: 1 });
});

test('seq tracker: frames of a dongle without a run are ignored; forget() drops its counts', () => {
  const t = new SeqTracker();
  t.track('gw-x', frames('can0', 1, 5));
  assert.deepEqual(counts(t), {});
  t.startRun('gw-a', 'r');
  t.track('gw-a', frames('can0', 1, 3));
  assert.equal(Object.keys(counts(t)).length, 1);
  t.forget('gw-a');
  assert.deepEqual(counts(t), {});
});

test('seq tracker: at most 64 buses are tracked per dongle (the metric labels stay bounded)', () => {
  const t = new SeqTracker();
  t.startRun('gw-a', 'r');
  for (let i = 0; i < 200; i++) t.track('gw-a', frames(`bus${i}`, 1, 3));
  const keys = Object.keys(counts(t));
  assert.equal(keys.length, 64);
  assert.ok(keys.every((k) => counts(t)[k]!.gaps === 1));
});
