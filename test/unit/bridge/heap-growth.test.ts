/**
 * The bridge's V8 heap growth limit (cloud-bridge/heap-growth.ts): set unless the operator set their own.
 * What it does to memory is measured, not asserted (GC heuristics differ between runs and Node versions):
 * make bench-fleet, docs/benchmarks.md.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HEAP_GROWING_PERCENT, limitHeapGrowth } from '../../../cloud-bridge/heap-growth.js';

test('heap growth: the bridge sets its growing factor, unless node was started with one', () => {
  assert.equal(limitHeapGrowth(['--max-semi-space-size=4']), `--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
  assert.equal(limitHeapGrowth(['--heap-growing-percent=20']), undefined);
  assert.equal(limitHeapGrowth(['--heap_growing_percent=20']), undefined);
});
